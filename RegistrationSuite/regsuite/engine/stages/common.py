"""Pieces shared by the stage runners: sampling the moving image, progress, convergence.

The moving image is always sampled at *world* points (fixed voxels mapped by the current
transform) converted to the moving level grid's ``grid_sample`` frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ...errors import RegistrationCancelled, RegistrationFailed
from ..pyramid import LevelImages
from ..sampling import grid_sample


@dataclass(frozen=True)
class ProgressEvent:
    """One optimiser iteration, as reported to a ``progress`` callback."""

    stage: int
    stages: int
    stage_name: str
    level: int
    levels: int
    iteration: int
    iterations: int
    metric: float
    elapsed: float


class Reporter:
    """Builds :class:`ProgressEvent`s, keeps the history, honours ``cancel``, detects divergence."""

    def __init__(self, progress: Callable[[ProgressEvent], None] | None, cancel: Callable[[], bool] | None, stages: int) -> None:
        self.progress, self.cancel, self.stages = progress, cancel, stages
        self.start = time.perf_counter()
        self.history: list[dict] = []
        self.stage, self.stage_name, self.level, self.levels = 0, "", 0, 1

    def begin(self, stage: int, stage_name: str, levels: int) -> None:
        self.stage, self.stage_name, self.levels = stage, stage_name, levels

    def __call__(self, level: int, iteration: int, iterations: int, metric: float) -> None:
        if not math.isfinite(metric):
            raise RegistrationFailed(
                f"registration diverged in stage {self.stage + 1} ({self.stage_name}), level {level + 1}: "
                "the metric became NaN/Inf; lower the learning rate or check the inputs"
            )
        elapsed = time.perf_counter() - self.start
        event = ProgressEvent(self.stage + 1, self.stages, self.stage_name, level + 1, self.levels,
                              iteration, iterations, float(metric), elapsed)
        self.history.append({"stage": event.stage, "model": self.stage_name, "level": event.level,
                             "iteration": iteration, "metric": event.metric, "elapsed": round(elapsed, 4)})
        if self.progress is not None:
            self.progress(event)
        self.check_cancel()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise RegistrationCancelled("registration cancelled by the user")


class Convergence:
    """Stops when the best metric improved by less than ``tolerance`` (relative) over ``window``."""

    def __init__(self, tolerance: float, window: int) -> None:
        self.tolerance, self.window = tolerance, window
        self.values: list[float] = []

    def update(self, value: float) -> bool:
        self.values.append(value)
        if self.tolerance <= 0 or len(self.values) <= self.window:
            return False
        before = min(self.values[: -self.window])
        now = min(self.values[-self.window:])
        return before - now < self.tolerance * max(abs(before), 1e-12)


def sample_image(image: torch.Tensor, normalized: torch.Tensor, mask: torch.Tensor | None = None,
                 padding: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` at ``grid_sample`` points ``(N, D, H, W, 3)`` and each point's weight: 1 inside
    the image (0 outside), times ``mask`` sampled at the same points."""
    values = grid_sample(image, normalized, padding=padding)
    with torch.no_grad():
        limit = 1.0 + 1e-6
        weight = ((normalized >= -limit) & (normalized <= limit)).all(dim=-1).unsqueeze(1).to(values.dtype)
        if mask is not None:
            weight = weight * grid_sample(mask, normalized)
    return values, weight


def sample_moving(level: LevelImages, normalized: torch.Tensor, use_masks: bool = True,
                  fixed_mask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped moving image and voxel weights (fixed mask x moving mask x overlap).

    ``fixed_mask=False`` leaves the fixed mask out (symmetric registration warps it itself).
    """
    warped, weight = sample_image(level.moving, normalized, level.moving_mask if use_masks else None)
    if use_masks and fixed_mask and level.fixed_mask is not None:
        weight = weight * level.fixed_mask
    if float(weight.sum()) < 1.0:
        raise RegistrationFailed("the images no longer overlap (no fixed voxel maps inside the moving image); "
                                 "check the initialization or lower the learning rate")
    return warped, weight
