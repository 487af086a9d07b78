"""Stage kinds: what each kind of stage checks, runs and hands on.

A preset's stage names a ``model``; :func:`stage_kind` finds the :class:`StageKind` that runs
it. A kind validates its options before any image is read (:meth:`StageKind.check`), runs on a
:class:`StageContext` (the pyramid, the transforms found so far, the raw images for kinds that
resample them themselves) and returns a :class:`StageOutcome`: the linear transform, the
deformable model (or ``None``) and the stage's summary (metric before/after, seconds). Export is
the deformable model's own (``to_sitk``), so a new kind costs one module and one
:func:`register_kind` call.

Example:
    >>> stage_kind("affine").name, stage_kind("svf").name, stage_kind("network").name
    ('linear', 'deformable', 'network')
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
import torch

from ...errors import PresetError
from ..config import DEFORMABLE_MODELS, LINEAR_MODELS, StageConfig
from ..grid import Grid
from ..pyramid import Pyramid
from ..transforms.bspline import BSplineField
from ..transforms.dense import DenseField
from ..transforms.linear import LinearTransform
from .common import Reporter


@dataclass
class StageContext:
    """What a stage may read: the recipe's position, the images, the transforms so far."""

    index: int
    stage: StageConfig
    pyramid: Pyramid
    linear: LinearTransform
    center: np.ndarray
    radius: float
    fixed_grid: Grid
    report: Reporter
    seed: int
    #: the deformable model of the previous deformable stage, if any
    deformable: BSplineField | DenseField | None = None
    #: the whole fixed and moving images as given (before cropping and normalisation) and masks
    fixed: sitk.Image | None = None
    moving: sitk.Image | None = None
    fixed_mask: sitk.Image | None = None
    moving_mask: sitk.Image | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: warnings for the user (e.g. an input unlike a learned model's training data)
    warn: Callable[[str], None] = lambda message: None


@dataclass
class StageOutcome:
    linear: LinearTransform
    deformable: BSplineField | DenseField | None
    summary: dict[str, Any]


class StageKind:
    """Base of the stage kinds; subclasses set ``name`` and ``models`` and implement :meth:`run`."""

    name = "stage"
    models: tuple[str, ...] = ()

    def check(self, stage: StageConfig, where: str) -> None:
        """Raise :class:`PresetError` naming ``where`` (e.g. ``stages[1]``, or ``stages[1].levels[2]``
        for a level's option) for a bad option: by default the metric and the regularizers."""
        from ..metrics import make_metric
        from ..regularizers import make_regularizer
        place = where
        try:
            make_metric(stage.metric, **stage.metric_options)
            for level_index, level in enumerate(stage.levels):
                if level.metric_options:
                    place = f"{where}.levels[{level_index}]"
                    make_metric(stage.metric, **stage.metric_options_at(level_index))
            place = where
            for name in stage.regularization:
                make_regularizer(name)
        except PresetError as error:
            raise PresetError(f"{place}: {error}") from None

    def run(self, context: StageContext) -> StageOutcome:
        raise NotImplementedError

    @staticmethod
    def summary(stage: StageConfig, before: float, after: float, started: float, **extra: Any) -> dict[str, Any]:
        return {"model": stage.model, "metric": stage.metric, "metric_before": before, "metric_after": after,
                "seconds": round(time.perf_counter() - started, 3), **extra}


_KINDS: dict[str, StageKind] = {}


def register_kind(kind: StageKind) -> StageKind:
    """Make ``kind`` run the stages whose model is one of ``kind.models``."""
    for model in kind.models:
        _KINDS[model] = kind
    return kind


def stage_kind(model: str) -> StageKind:
    """The kind that runs ``model`` (the built-in kinds are registered on first use)."""
    if not _KINDS:
        from . import kinds  # noqa: F401  (registers linear, deformable, network)
    if model not in _KINDS:
        raise PresetError(f"no stage kind runs model '{model}'; known: {', '.join(sorted(_KINDS))}")
    return _KINDS[model]


__all__ = ["StageContext", "StageOutcome", "StageKind", "register_kind", "stage_kind",
           "LINEAR_MODELS", "DEFORMABLE_MODELS"]
