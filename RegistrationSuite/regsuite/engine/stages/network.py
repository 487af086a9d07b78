"""The network stage kind: a learned model predicts a stationary velocity field in one pass.

Both images go onto the model's canonical grid (the moving one through the linear transform
found by earlier stages), the network's velocity becomes the engine's
:class:`~regsuite.engine.transforms.dense.VelocityField` on the model's velocity grid, and the
result composes and exports like an svf stage's: ``x -> A (x + exp(v)(x)) + b``, inverse
``exp(-v)``. A following svf stage with ``"initial_field": "previous"`` starts from it
(instance optimization). ``"cascade": k`` runs the network k times, each run registering the
fixed image to the moving image warped so far; the maps compose into a
:class:`~regsuite.engine.transforms.cascade.VelocityChain` (inverse: the inverse steps in reverse).
"""

from __future__ import annotations

import time

import torch

from ..config import NETWORK_MODELS
from ..metrics import make_metric
from ..transforms.dense import resample_field
from .registry import StageContext, StageKind, StageOutcome


class NetworkKind(StageKind):
    name = "network"
    models = NETWORK_MODELS

    def run(self, context: StageContext) -> StageOutcome:
        from ...learning.field import NetworkField
        from ...learning.inference import CanonicalPair, predict_cascade
        from ...learning.models import load_model

        stage, started = context.stage, time.perf_counter()
        model = load_model(stage.network, context.device)
        pair = CanonicalPair.build(model, context.fixed, context.moving, context.linear.to_sitk(),
                                   context.fixed_mask, context.moving_mask, context.device)
        for message in pair.unusual(model):
            context.warn(message)
        velocity = predict_cascade(model, pair, stage.cascade, stage.hyper_lambda)
        # the stage's similarity before and after, on the canonical grid
        metric = make_metric(stage.metric, **stage.metric_options)
        field = NetworkField(pair.grid, model.network.velocity_level, velocity.steps)
        with torch.no_grad():
            u = resample_field(velocity.displacement(), velocity.grid, pair.grid)
            before = float(metric(pair.fixed, pair.moving, None, pair.grid.spacing))
            after = float(metric(pair.fixed, field.warp(pair.moving, u), None, pair.grid.spacing))
        context.report(0, 1, 1, after)
        extra = {"network": model.name}
        if stage.hyper_lambda is not None:
            extra["lambda"] = stage.hyper_lambda
        if stage.cascade > 1:
            extra["cascade"] = stage.cascade
        return StageOutcome(context.linear, velocity, self.summary(stage, before, after, started, **extra))
