"""Training configuration of a learned model (a JSON file), validated into one-line errors.

Example:
    >>> config = TrainingConfig.from_dict({"name": "tiny", "data": {"subjects": [1, 2]}})
    >>> config.architecture, config.grid_size, config.iterations
    ('voxelmorph', (80, 96, 80), 3000)
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from .networks import ARCHITECTURES

#: where the Dice term may compare the label maps (``TrainingConfig.dice_grid``)
DICE_GRIDS = ("velocity", "canonical")


@dataclass
class TrainingConfig:
    """What ``regsuite train --config`` reads; every field is documented in ``docs/LEARNING.md``."""

    name: str
    architecture: str = "voxelmorph"
    network: dict[str, Any] = field(default_factory=lambda: {"width": 1.0, "velocity_level": 1})
    grid_size: tuple[int, int, int] = (80, 96, 80)
    grid_spacing: float = 2.0
    integration_steps: int = 7
    data: dict[str, Any] = field(default_factory=dict)
    affine: Any = "affine-fast"
    metric: str = "lncc"
    metric_options: dict[str, Any] = field(default_factory=lambda: {"radius": 2})
    regularization: float = 0.1
    dice: float = 1.0
    #: where the soft Dice term compares the label maps: ``velocity`` (class fractions on the
    #: network's velocity grid, cheap) or ``canonical`` (one-hot maps on the canonical grid, warped
    #: by the full map: the cortical parcels' boundaries at the grid's resolution)
    dice_grid: str = "velocity"
    #: ``canonical`` Dice term: the number of label classes it compares per step, drawn at random
    #: from those in the fixed map (0: all; fewer cost less: each class is one warped map)
    dice_labels: int = 0
    #: weight of the similarity measure; 0 (a synthesized-image model) leaves the loss to the
    #: label maps (Dice term), the regularizer and the teacher
    similarity_weight: float = 1.0
    #: train on images synthesized from the label maps (options: ``learning/synthesis.py``);
    #: None: on the subjects' own images
    synthesis: dict[str, float] | None = None
    #: HyperMorph: the loss is (1 - lambda) (similarity + dice term) + lambda * hyper_scale * diffusion,
    #: lambda drawn as u ** lambda_power for u uniform in [0, 1] (more draws at small lambda)
    hyper_scale: float = 1.0
    lambda_power: float = 2.0
    learning_rate: float = 1e-3
    #: HyperMorph: the hypernetwork's own learning rate (default: ``learning_rate``); a warm-started
    #: model needs its modulation to move much faster than its shared convolutions
    hyper_learning_rate: float | None = None
    iterations: int = 3000
    augmentation: dict[str, float] = field(default_factory=lambda: {
        "rotation_degrees": 8.0, "scale": 0.06, "translation_mm": 6.0, "gamma": 0.25, "noise": 0.02})
    checkpoint_every: int = 25
    validate_every: int = 250
    seed: int = 0
    initial_weights: str | None = None
    #: distillation: a classical preset (name, file or dict; its svf stage runs after the pair's
    #: affine) whose velocity field the network also regresses, weighted per mm^2 by
    #: ``teacher_weight``; 0 turns it off
    teacher: Any = None
    teacher_weight: float = 0.0
    #: inverse-consistent training: the network also registers each pair the other way round;
    #: weight of the mm^2 inverse-consistency loss of the two maps, and of the folding penalty
    inverse_consistency: float = 0.0
    folding: float = 0.0
    #: recursive cascade at training: the network runs this many times per pair, each run on the
    #: moving image warped by the maps before, the loss on the composed map (1 to MAX_CASCADE)
    cascade: int = 1
    #: affine networks: weights of VTN's orthogonality and determinant losses on the matrix
    orthogonality: float = 0.0
    determinant: float = 0.0
    licence: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "training config") -> "TrainingConfig":
        if not isinstance(data, Mapping):
            raise InputError(f"{source} must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        if "name" not in data or not isinstance(data["name"], str) or not data["name"]:
            raise InputError(f"{source} needs a 'name' (a non-empty string)")
        values = dict(data)
        if "grid_size" in values:
            size = values["grid_size"]
            if (not isinstance(size, list) or len(size) != 3
                    or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 16 and n % 16 == 0 for n in size)):
                raise InputError(f"{source}: grid_size must be three multiples of 16 (x, y, z), got {size!r}")
            values["grid_size"] = tuple(size)
        config = cls(**values)
        if config.architecture not in ARCHITECTURES:
            raise InputError(f"{source}: unknown architecture '{config.architecture}'; expected one of "
                             f"{', '.join(ARCHITECTURES)}")
        for key, minimum in (("grid_spacing", 0.0), ("regularization", None), ("dice", None),
                             ("similarity_weight", None), ("hyper_scale", None),
                             ("learning_rate", 0.0), ("lambda_power", 0.0),
                             ("teacher_weight", None), ("orthogonality", None), ("determinant", None),
                             ("inverse_consistency", None), ("folding", None)):
            value = getattr(config, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (minimum is not None and value <= minimum):
                raise InputError(f"{source}: {key} must be a {'positive' if minimum is not None else 'non-negative'} "
                                 f"number, got {value!r}")
        for key in ("iterations", "checkpoint_every", "validate_every", "integration_steps", "seed", "dice_labels"):
            value = getattr(config, key)
            zero = key in ("seed", "dice_labels")
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
                raise InputError(f"{source}: {key} must be a {'non-negative' if zero else 'positive'} integer, "
                                 f"got {value!r}")
        if config.dice_grid not in DICE_GRIDS:
            raise InputError(f"{source}: dice_grid must be one of {', '.join(DICE_GRIDS)}, got {config.dice_grid!r}")
        if not isinstance(config.network, Mapping):
            raise InputError(f"{source}: network must be a JSON object of the architecture's options")
        try:  # a few hundred thousand parameters: cheap, and names a wrong option before any data is read
            from .networks import build_network
            build_network(config.architecture, dict(config.network))
        except (TypeError, ValueError) as error:
            raise InputError(f"{source}: network options for '{config.architecture}': {error}") from None
        from ..engine.config import MAX_CASCADE
        if isinstance(config.cascade, bool) or not isinstance(config.cascade, int) \
                or not 1 <= config.cascade <= MAX_CASCADE:
            raise InputError(f"{source}: cascade must be an integer from 1 to {MAX_CASCADE}, got {config.cascade!r}")
        if config.cascade > 1:
            if config.architecture == "affine":
                raise InputError(f"{source}: cascade is for deformable networks, not '{config.architecture}'")
            if config.inverse_consistency > 0 or config.folding > 0:
                raise InputError(f"{source}: cascade training cannot be combined with inverse_consistency or folding")
            if config.teacher_weight > 0 and config.teacher is not None:
                raise InputError(f"{source}: cascade training cannot use a teacher (it compares one velocity "
                                 f"field, a cascade predicts {config.cascade}); set teacher_weight to 0")
        if config.synthesis is not None:
            from .synthesis import synthesis_options
            if not isinstance(config.synthesis, Mapping):
                raise InputError(f"{source}: synthesis must be a JSON object of options")
            try:
                config.synthesis = synthesis_options(config.synthesis, f"{source}: synthesis")
            except ValueError as error:
                raise InputError(str(error)) from None
            if config.data.get("labels") is False:
                raise InputError(f"{source}: synthesis needs label maps (data.labels)")
        subjects = config.data.get("subjects")
        if not isinstance(subjects, list) or len(subjects) < 2:
            raise InputError(f"{source}: data.subjects must list at least 2 training subjects")
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainingConfig":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"training config '{path}' does not exist")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"training config '{path}' cannot be read as JSON: {error}") from None
        return cls.from_dict(data, f"training config '{path.name}'")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["grid_size"] = list(self.grid_size)
        return data
