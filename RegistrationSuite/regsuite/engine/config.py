"""Registration settings: stages, pyramid levels and named presets stored as JSON.

A :class:`RegistrationConfig` is a list of :class:`StageConfig` run in order (linear stages
first, then at most one deformable stage), each with its own pyramid of :class:`LevelConfig`.
Presets are JSON files in ``regsuite/presets``; a user copies one, edits it and passes the file.

Example:
    >>> config = load_preset("rigid")
    >>> config.stages[0].model
    'rigid'
    >>> [name for name in sorted(list_presets()) if name.startswith("affine")]
    ['affine', 'affine-fast']
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import PresetError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

LINEAR_MODELS = ("rigid", "affine", "affine-matrix")
DEFORMABLE_MODELS = ("bspline", "displacement", "svf")
#: learned stages: a network from ``regsuite/models`` predicts a stationary velocity field
NETWORK_MODELS = ("network",)
#: a learned affine: a network from ``regsuite/models`` refines the linear transform so far
AFFINE_NETWORK_MODELS = ("affine-network",)
MODEL_DIR = PRESET_DIR.parent / "models"
#: models whose result has an inverse (``RegistrationResult.inverse``): linear maps, and a
#: stationary velocity field ``exp(v)`` (inverse ``exp(-v)``); a B-spline or displacement field has none
INVERTIBLE_MODELS = LINEAR_MODELS + AFFINE_NETWORK_MODELS + ("svf", "network")
MODEL_ALIASES = {"dense": "displacement", "diffeomorphic": "svf", "ffd": "bspline", "matrix": "affine-matrix"}
OPTIMIZERS = ("adam", "lbfgs", "gaussian", "one-plus-one", "cma-es")
INITIALIZATIONS = ("none", "geometry", "moments", "principal-axes")
REGULARIZERS = ("diffusion", "bending", "folding")


@dataclass
class LevelConfig:
    """One pyramid level: image shrink factor, Gaussian smoothing (sigma in each image's own
    voxels) and iteration count; optional per-level learning rate and B-spline control spacing."""

    shrink: float = 1.0
    smoothing: float = 0.0
    iterations: int = 100
    learning_rate: float | None = None
    control_spacing: float | None = None
    #: Dense and velocity fields only: the field lives on the level grid shrunk by this factor
    #: (cheaper integration and updates) while the similarity gradient is still computed at the
    #: level's full resolution.
    field_shrink: float | None = None
    #: gaussian optimizer: this level's sigmas (voxels), overriding the stage's
    gradient_smoothing: float | None = None
    field_smoothing: float | None = None
    #: svf with the gaussian optimizer: this level's exact_every, overriding the stage's
    #: (exact integration is cheap on coarse levels and costly at full resolution)
    exact_every: int | None = None
    #: this level's similarity options, laid over the stage's ``metric_options`` key by key
    #: (e.g. a larger local NCC window at full resolution only)
    metric_options: dict[str, Any] | None = None


@dataclass
class StageConfig:
    """One stage: a transform model optimised for a similarity measure over a pyramid."""

    model: str
    metric: str = "ncc"
    metric_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    learning_rate: float = 1.0
    levels: list[LevelConfig] = field(default_factory=lambda: [LevelConfig(4, 2, 100), LevelConfig(2, 1, 50)])
    regularization: dict[str, float] = field(default_factory=dict)
    control_spacing: float = 10.0
    integration_steps: int = 7
    #: svf with the gaussian optimizer: integrate exp(v) exactly every this many iterations and
    #: update it by one composition in between (1: always exact).
    exact_every: int = 1
    #: gaussian optimizer: add each step to the field ("additive"), compose it with the map
    #: ("compositive", as Greedy does; avoids folding) or, svf only, move both images halfway
    #: ("symmetric": F o exp(-v/2) is compared with M o exp(v/2))
    update: str = "additive"
    gradient_smoothing: float = 1.5
    field_smoothing: float = 0.7
    tolerance: float = 1e-5
    window: int = 10
    use_masks: bool = True
    #: network stages: the learned model's name (a folder of ``regsuite/models``) or folder path
    network: str | None = None
    #: HyperMorph networks: the regularization weight lambda in [0, 1] (JSON key ``"lambda"``)
    hyper_lambda: float | None = None
    #: network stages: how many times the network runs, each run registering the fixed image to
    #: the moving image warped by the runs before (a recursive cascade; the maps compose)
    cascade: int = 1
    #: svf stages after a network or svf stage: ``"previous"`` starts from that stage's velocity
    #: field (instance optimization), ``"zero"`` (default) from the identity
    initial_field: str = "zero"

    @property
    def is_linear(self) -> bool:
        """True when the stage's result is a linear transform (rigid/affine, or a learned affine)."""
        return self.model in LINEAR_MODELS or self.model in AFFINE_NETWORK_MODELS

    @property
    def is_network(self) -> bool:
        """True for a learned deformable stage (a network predicting a velocity field)."""
        return self.model in NETWORK_MODELS

    def metric_options_at(self, index: int) -> dict[str, Any]:
        """The similarity options of level ``index``: the stage's, with the level's own
        ``metric_options`` (if any) replacing the keys it names."""
        override = self.levels[index].metric_options if 0 <= index < len(self.levels) else None
        return {**self.metric_options, **(override or {})}

    @property
    def is_invertible(self) -> bool:
        """True when this stage's model has an inverse (:data:`INVERTIBLE_MODELS`)."""
        return self.model in INVERTIBLE_MODELS


@dataclass
class RegistrationConfig:
    """A full registration recipe (what a preset file holds)."""

    name: str = "custom"
    description: str = ""
    initialization: str = "moments"
    intensity: dict[str, Any] = field(default_factory=lambda: {"mode": "percentile", "low": 0.5, "high": 99.5})
    stages: list[StageConfig] = field(default_factory=list)

    @property
    def is_linear(self) -> bool:
        """True when every stage is rigid/affine (the result is one linear transform)."""
        return all(stage.is_linear for stage in self.stages)

    @property
    def is_invertible(self) -> bool:
        """True when every stage has an inverse, so the result has one (unless a non-linear
        initial transform was given)."""
        return all(stage.is_invertible for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for stage in data["stages"]:  # JSON spelling of the HyperMorph weight
            stage["lambda"] = stage.pop("hyper_lambda")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# ---------------------------------------------------------------------- bounds
#: Iterations per level (and ``window``, ``exact_every``): far beyond any useful run (the shipped
#: presets use at most 150) but finite, so a typo such as ``1e30`` or ``Infinity`` is refused.
MAX_ITERATIONS = 10_000_000
#: Scaling and squaring divides the velocity by ``2**steps`` and squares ``steps`` times. With
#: 20 steps a velocity of 500 000 voxels still starts below half a voxel (the usual accuracy
#: condition), and each further step only costs one more full-field resampling while the scaled
#: increment sinks under float32 resolution (2**-23 of the grid coordinates); 4 to 8 is typical.
MAX_INTEGRATION_STEPS = 20
#: the most network runs of a recursive cascade (each costs a forward pass)
MAX_CASCADE = 5
#: Names of the similarity measures (``engine.metrics.METRICS``, listed here so that validating a
#: preset does not import torch; a test keeps the two lists equal).
METRICS = ("mse", "ssd", "ncc", "lncc", "mi", "nmi", "ngf", "mind")


# ---------------------------------------------------------------------- parsing
def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise PresetError(f"{where} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(data) - names)
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    return data


def _number(value: Any, where: str, minimum: float | None = None, integer: bool = False,
            maximum: float | None = None, positive: bool = False) -> Any:
    """``value`` as a finite float (or int) in range, else a one-line :class:`PresetError`.

    ``positive`` excludes ``minimum`` itself (``value > minimum``). JSON booleans are refused
    although Python counts them as numbers, and so are NaN and Infinity, which Python's json
    module reads from the non-standard literals ``NaN`` and ``Infinity``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PresetError(f"{where} must be a finite number, got {value!r}")
    if integer and int(value) != value:
        raise PresetError(f"{where} must be an integer, got {value!r}")
    if minimum is not None and (value <= minimum if positive else value < minimum):
        raise PresetError(f"{where} must be {'>' if positive else '>='} {_bound(minimum)}, got {value!r}")
    if maximum is not None and value > maximum:
        raise PresetError(f"{where} must be <= {_bound(maximum)}, got {value!r}")
    return int(value) if integer else float(value)


def _bound(value: float) -> str:
    """A bound as written in a preset: ``10000000`` rather than ``1e+07``, ``0.5`` as is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _text(value: Any, where: str, choices: tuple[str, ...] | None = None, what: str = "value") -> str:
    """``value`` as a string (one of ``choices`` when given), else a one-line :class:`PresetError`."""
    if not isinstance(value, str):
        expected = f"one of {', '.join(choices)}" if choices else "a string"
        raise PresetError(f"{where} must be {expected}, got {type(value).__name__} {_short(value)}")
    if choices is not None and value not in choices:
        raise PresetError(f"{where}: unknown {what} '{_short(value)}'; expected one of {', '.join(choices)}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    """``repr``-like text of ``value`` on one line, cut to ``limit`` characters."""
    text = " ".join((value if isinstance(value, str) else repr(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _level(data: Any, where: str) -> LevelConfig:
    if isinstance(data, (list, tuple)):
        if len(data) != 3:
            raise PresetError(f"{where} must be [shrink, smoothing, iterations] or an object, got a list of {len(data)}")
        data = {"shrink": data[0], "smoothing": data[1], "iterations": data[2]}
    _build(LevelConfig, data, where)
    level = LevelConfig(**data)
    level.shrink = _number(level.shrink, f"{where}.shrink", 1.0)
    level.smoothing = _number(level.smoothing, f"{where}.smoothing", 0.0)
    level.iterations = _number(level.iterations, f"{where}.iterations", 0, integer=True, maximum=MAX_ITERATIONS)
    if level.learning_rate is not None:
        level.learning_rate = _number(level.learning_rate, f"{where}.learning_rate", 0.0, positive=True)
    if level.control_spacing is not None:
        level.control_spacing = _number(level.control_spacing, f"{where}.control_spacing", 0.0, positive=True)
    if level.field_shrink is not None:
        level.field_shrink = _number(level.field_shrink, f"{where}.field_shrink", 1.0)
    for key in ("gradient_smoothing", "field_smoothing"):
        if getattr(level, key) is not None:
            setattr(level, key, _number(getattr(level, key), f"{where}.{key}", 0.0))
    if level.exact_every is not None:
        level.exact_every = _number(level.exact_every, f"{where}.exact_every", 1, integer=True, maximum=MAX_ITERATIONS)
    if level.metric_options is not None and (not isinstance(level.metric_options, dict)
                                             or not all(isinstance(name, str) for name in level.metric_options)):
        raise PresetError(f"{where}.metric_options must be a JSON object, got {_short(level.metric_options)}")
    return level


def model_card(name: str) -> dict[str, Any] | None:
    """The card of a learned model (a shipped name or a folder holding ``card.json``), or None."""
    for folder in (Path(name), MODEL_DIR / name):
        card = folder / "card.json"
        if card.is_file():
            try:
                return json.loads(card.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise PresetError(f"model card '{card}' cannot be read") from None
    return None


def list_models() -> list[str]:
    """Names of the learned models shipped in ``regsuite/models``."""
    return sorted(path.parent.name for path in MODEL_DIR.glob("*/card.json"))


def check_lambda(value: Any, where: str) -> float:
    """A HyperMorph lambda: a number in [0, 1]."""
    return _number(value, where, 0.0, maximum=1.0)


def _network_stage(stage: StageConfig, where: str) -> None:
    if not isinstance(stage.network, str) or not stage.network:
        raise PresetError(f"{where}: a network stage needs \"network\": the name of a learned model "
                          f"({', '.join(list_models()) or 'none shipped'})")
    card = model_card(stage.network)
    if card is None:
        raise PresetError(f"{where}: unknown learned model '{_short(stage.network)}'; shipped models: "
                          f"{', '.join(list_models()) or 'none'}")
    affine = card.get("architecture") == "affine"
    if affine != (stage.model in AFFINE_NETWORK_MODELS):
        raise PresetError(f"{where}: '{stage.network}' is {'an affine' if affine else 'a deformable'} model; "
                          f"use it in {'an affine-network' if affine else 'a network'} stage")
    hyper = card.get("architecture") == "hypermorph"
    if stage.hyper_lambda is not None:
        if not hyper:
            raise PresetError(f"{where}: 'lambda' is for HyperMorph models; '{stage.network}' is a "
                              f"{card.get('architecture')} model")
        stage.hyper_lambda = check_lambda(stage.hyper_lambda, f"{where}.lambda")
    elif hyper:
        stage.hyper_lambda = float(card.get("default_lambda", 0.5))


def _stage(data: Any, where: str) -> StageConfig:
    if isinstance(data, Mapping) and "lambda" in data:
        data = {**{k: v for k, v in data.items() if k != "lambda"}, "hyper_lambda": data["lambda"]}
    _build(StageConfig, data, where)
    models = LINEAR_MODELS + AFFINE_NETWORK_MODELS + DEFORMABLE_MODELS + NETWORK_MODELS
    if "model" not in data:
        raise PresetError(f"{where} has no 'model'; expected one of {', '.join(models)}")
    values = dict(data)
    name = _text(values["model"], f"{where}.model", what="model")
    values["model"] = MODEL_ALIASES.get(name, name)
    if values["model"] not in models:
        raise PresetError(f"{where}: unknown model '{_short(name)}'; expected one of {', '.join(models)}")
    levels = values.pop("levels", None)
    stage = StageConfig(**values)
    if levels is not None:
        if not isinstance(levels, list) or not levels:
            raise PresetError(f"{where}.levels must be a non-empty list of levels")
        stage.levels = [_level(level, f"{where}.levels[{i}]") for i, level in enumerate(levels)]
    _text(stage.optimizer, f"{where}.optimizer", OPTIMIZERS, "optimizer")
    _text(stage.metric, f"{where}.metric", METRICS, "metric")
    _text(stage.update, f"{where}.update", ("additive", "compositive", "symmetric"), "update")
    if not isinstance(stage.use_masks, bool):
        raise PresetError(f"{where}.use_masks must be true or false, got {_short(stage.use_masks)}")
    if stage.optimizer in ("one-plus-one", "cma-es") and not stage.is_linear:
        raise PresetError(f"{where}: optimizer '{stage.optimizer}' is for rigid/affine stages only")
    if stage.model not in ("displacement", "svf") and any(level.field_shrink for level in stage.levels):
        raise PresetError(f"{where}: field_shrink is for 'displacement' and 'svf' stages only")
    if stage.optimizer == "gaussian" and stage.model not in ("displacement", "svf"):
        raise PresetError(f"{where}: optimizer 'gaussian' is for 'displacement' and 'svf' stages only")
    for key in ("metric_options", "regularization"):
        options = getattr(stage, key)
        if not isinstance(options, dict) or not all(isinstance(name, str) for name in options):
            raise PresetError(f"{where}.{key} must be a JSON object, got {_short(options)}")
    for name, weight in stage.regularization.items():
        _text(name, f"{where}.regularization", REGULARIZERS, "regularizer")
        stage.regularization[name] = _number(weight, f"{where}.regularization.{name}", 0.0)
    for key, minimum, positive in (("learning_rate", 0.0, True), ("control_spacing", 0.0, True),
                                   ("gradient_smoothing", 0.0, False), ("field_smoothing", 0.0, False),
                                   ("tolerance", 0.0, False)):
        setattr(stage, key, _number(getattr(stage, key), f"{where}.{key}", minimum, positive=positive))
    stage.integration_steps = _number(stage.integration_steps, f"{where}.integration_steps", 0, integer=True,
                                      maximum=MAX_INTEGRATION_STEPS)
    stage.exact_every = _number(stage.exact_every, f"{where}.exact_every", 1, integer=True, maximum=MAX_ITERATIONS)
    if stage.update == "symmetric" and (stage.model != "svf" or stage.optimizer != "gaussian"):
        raise PresetError(f"{where}: update 'symmetric' needs model 'svf' with optimizer 'gaussian'")
    stage.window = _number(stage.window, f"{where}.window", 1, integer=True, maximum=MAX_ITERATIONS)
    _text(stage.initial_field, f"{where}.initial_field", ("zero", "previous"), "initial field")
    if stage.initial_field == "previous" and stage.model != "svf":
        raise PresetError(f"{where}: initial_field 'previous' is for 'svf' stages only")
    stage.cascade = _number(stage.cascade, f"{where}.cascade", 1, integer=True, maximum=MAX_CASCADE)
    if stage.is_network or stage.model in AFFINE_NETWORK_MODELS:
        _network_stage(stage, where)
        # one forward pass: one level of one iteration (what the progress reports)
        stage.levels = [LevelConfig(shrink=1.0, smoothing=0.0, iterations=1)]
    elif stage.network is not None:
        raise PresetError(f"{where}: 'network' is for network and affine-network stages only")
    if not stage.is_network and (stage.hyper_lambda is not None or stage.cascade != 1):
        raise PresetError(f"{where}: 'lambda' and 'cascade' are for network stages only")
    return stage


_INTENSITY_KEYS = {"percentile": {"mode", "low", "high", "clip"}, "window": {"mode", "window", "clip"},
                   "none": {"mode"}}


def _check_intensity(options: Any, source: str) -> dict[str, Any]:
    """Every key known for the mode; a window is two increasing finite numbers; percentiles
    ``0 <= low < high <= 100``; ``clip`` a boolean."""
    where = f"{source}: intensity"
    if not isinstance(options, dict):
        raise PresetError(f"{where} must be an object with mode 'percentile', 'window' or 'none', got {_short(options)}")
    mode = _text(options.get("mode", "percentile"), f"{where}.mode", tuple(_INTENSITY_KEYS), "intensity mode")
    unknown = sorted(str(key) for key in set(options) - _INTENSITY_KEYS[mode])
    if unknown:
        raise PresetError(f"{source}: intensity mode '{mode}' does not take {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(_INTENSITY_KEYS[mode] - {'mode'})) or 'nothing else'}")
    if not isinstance(options.get("clip", True), bool):
        raise PresetError(f"{where}.clip must be true or false, got {_short(options['clip'])}")
    if mode == "window":
        window = options.get("window")
        if (not isinstance(window, (list, tuple)) or len(window) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in window)
                or not window[0] < window[1]):
            raise PresetError(f"{source}: intensity mode 'window' needs \"window\": [low, high] with low < high "
                              f"(finite numbers), got {_short(window)}")
    if mode == "percentile":
        low, high = (options.get(key, default) for key, default in (("low", 0.5), ("high", 99.5)))
        for key, value in (("low", low), ("high", high)):
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not 0 <= value <= 100):
                raise PresetError(f"{source}: intensity '{key}' must be a percentile between 0 and 100, got {_short(value)}")
        if not low < high:
            raise PresetError(f"{source}: intensity 'low' ({low}) must be below 'high' ({high})")
    return options


def config_from_dict(data: Mapping[str, Any], source: str = "preset") -> RegistrationConfig:
    """Validate a preset dictionary; every problem is a one-line :class:`PresetError`."""
    _build(RegistrationConfig, data, source)
    values = dict(data)
    stages = values.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise PresetError(f"{source} needs a non-empty 'stages' list")
    config = RegistrationConfig(**values)
    for key in ("name", "description"):
        _text(getattr(config, key), f"{source}: {key}")
    config.stages = [_stage(stage, f"{source}: stages[{i}]") for i, stage in enumerate(stages)]
    _text(config.initialization, f"{source}: initialization", INITIALIZATIONS, "initialization")
    _check_intensity(config.intensity, source)
    previous: StageConfig | None = None
    for i, stage in enumerate(config.stages):
        refines = (stage.initial_field == "previous" and previous is not None
                   and previous.model in ("svf", "network"))
        if previous is not None and not previous.is_linear and not refines:
            raise PresetError(f"{source}: stages[{i}] follows a deformable stage; put rigid/affine stages first and "
                              "use one deformable stage, or refine a network/svf stage with an svf stage whose "
                              "initial_field is 'previous'")
        if stage.initial_field == "previous" and (previous is None or previous.model not in ("svf", "network")):
            raise PresetError(f"{source}: stages[{i}] has initial_field 'previous' but does not follow a network or "
                              "svf stage")
        if stage.initial_field == "previous" and previous.cascade > 1:
            raise PresetError(f"{source}: stages[{i}] has initial_field 'previous' but stages[{i - 1}] is a cascade "
                              f"of {previous.cascade} network runs, whose map is no single velocity field")
        previous = stage
    return config


def with_lambda(config: RegistrationConfig, value: Any, source: str = "--lambda") -> RegistrationConfig:
    """``config`` with the HyperMorph lambda of its network stages set to ``value`` (in [0, 1]);
    a :class:`PresetError` when no stage takes a lambda."""
    value = check_lambda(value, source)
    stages = [stage for stage in config.stages if stage.is_network and stage.hyper_lambda is not None]
    if not stages:
        raise PresetError(f"{source}: preset '{config.name}' has no HyperMorph network stage to take a lambda "
                          "(use e.g. brain-mri-hypermorph)")
    copy = config_from_dict(config.to_dict(), config.name)
    for stage in copy.stages:
        if stage.is_network and stage.hyper_lambda is not None:
            stage.hyper_lambda = value
    return copy


def list_presets() -> list[str]:
    """Names of the presets shipped with the engine."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def preset_path(name: str) -> Path:
    """Path of a shipped preset JSON file."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise PresetError(f"unknown preset '{name}'; available presets: {', '.join(list_presets())} (or give a JSON file path)")
    return path


def preset_file(preset: str) -> str | None:
    """The file a preset value (a JSON file path or a shipped preset's name) reads, if it exists:
    what a command's outputs must not overwrite."""
    if Path(preset).is_file():
        return preset
    found = PRESET_DIR / f"{preset}.json"
    return str(found) if found.is_file() else None


def load_preset(preset: str | os.PathLike[str] | Mapping[str, Any] | RegistrationConfig) -> RegistrationConfig:
    """A :class:`RegistrationConfig` from a preset name, a JSON file path, a dict or a config."""
    if isinstance(preset, RegistrationConfig):
        return config_from_dict(preset.to_dict(), preset.name)
    if isinstance(preset, Mapping):
        return config_from_dict(preset, "preset")
    if not isinstance(preset, (str, os.PathLike)):
        raise PresetError(f"a preset must be a name, a JSON file path, a mapping or a RegistrationConfig, "
                          f"got {type(preset).__name__}")
    text = str(preset)
    path = Path(text)
    looks_like_file = text.lower().endswith(".json") or os.sep in text or path.is_file()
    if not looks_like_file:
        path = preset_path(text)
    elif not path.is_file():
        raise PresetError(f"preset file '{text}' does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"preset file '{path}' cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise PresetError(f"preset file '{path}' is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return config_from_dict(data, f"preset '{path.name}'")
