"""The built-in stage kinds: linear (rigid/affine), deformable (B-spline, dense, svf), network and
affine-network."""

from __future__ import annotations

import math
import time

import torch

from ...errors import RegistrationFailed
from ..config import DEFORMABLE_MODELS, LINEAR_MODELS
from ..transforms.bspline import BSplineField
from ..transforms.linear import LinearTransform
from .deformable import DeformableLoss, run_deformable_stage
from .linear import evaluate_linear, run_linear_stage
from .affine_network import AffineNetworkKind
from .network import NetworkKind
from .registry import StageContext, StageKind, StageOutcome, register_kind


def check_finite(index: int, model: str, values: dict[str, torch.Tensor | float]) -> None:
    """:class:`RegistrationFailed` when a stage's result holds NaN or Inf."""
    for name, value in values.items():
        finite = bool(torch.isfinite(value).all()) if isinstance(value, torch.Tensor) else math.isfinite(value)
        if not finite:
            raise RegistrationFailed(f"stage {index + 1} ({model}) diverged: its {name} is not finite; "
                                     "lower the learning rate or check the inputs")


def scored_level(context: StageContext):
    """The level the before/after metric is measured on: the finest level at least 2x shrunk
    (cheap; the summary compares the two, it does not need full resolution), else the finest."""
    stage = context.stage
    coarse_enough = [level for level in stage.levels if level.shrink >= 2.0]
    scored = coarse_enough[-1] if coarse_enough else stage.levels[-1]
    return context.pyramid.level(scored.shrink, scored.smoothing)


class LinearKind(StageKind):
    name = "linear"
    models = LINEAR_MODELS

    def run(self, context: StageContext) -> StageOutcome:
        stage, started = context.stage, time.perf_counter()
        finest = scored_level(context)
        a, b = context.linear.matrix_offset()
        linear = LinearTransform(stage.model, context.center, context.radius)
        linear.set_affine(a.detach().numpy(), b.detach().numpy())
        before = evaluate_linear(linear, finest, stage)
        run_linear_stage(stage, context.pyramid, linear, context.report, context.seed)
        after = evaluate_linear(linear, finest, stage)
        matrix, offset = linear.matrix_offset()
        check_finite(context.index, stage.model, {"matrix": matrix.detach(), "offset": offset.detach(),
                                                  "final metric": after})
        return StageOutcome(linear, None, self.summary(stage, before, after, started))


class DeformableKind(StageKind):
    name = "deformable"
    models = DEFORMABLE_MODELS

    def run(self, context: StageContext) -> StageOutcome:
        stage, started = context.stage, time.perf_counter()
        finest = scored_level(context)
        a, b = context.linear.matrix_offset()
        initial = context.deformable if stage.initial_field == "previous" else None
        with torch.no_grad():
            if initial is not None:
                start = initial.displacement_on(finest.fixed_grid)
            else:
                start = torch.zeros((1, 3) + finest.fixed_grid.shape_zyx, device=context.pyramid.device)
            before = float(DeformableLoss(stage, finest, a, b)(start)[1])
        deformable = run_deformable_stage(stage, context.pyramid, context.fixed_grid, a, b, context.report, initial)
        with torch.no_grad():
            u = deformable.displacement(finest.fixed_grid) if isinstance(deformable, BSplineField) \
                else deformable.displacement_on(finest.fixed_grid)
            after = float(DeformableLoss(stage, finest, a, b)(u)[1])
        check_finite(context.index, stage.model, {"displacement": u, "final metric": after})
        return StageOutcome(context.linear, deformable, self.summary(stage, before, after, started))


register_kind(LinearKind())
register_kind(DeformableKind())
register_kind(NetworkKind())
register_kind(AffineNetworkKind())
