"""The learned affine stage kind (``"model": "affine-network"``): one forward pass of an affine
network (:mod:`regsuite.learning.affine`) refines the linear transform found so far.

Both images go onto the model's canonical grid, the moving one through the current linear
transform (e.g. the preset's centres-of-mass initialization); the network's affine ``N`` about
the grid's centre is composed after it: ``x -> L(N(x))``. The result is an ordinary affine
transform (the engine's ``affine`` parametrisation), so a following classical ``affine`` stage
starts from it (learned initialization) and the result exports and inverts like any linear one.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..config import AFFINE_NETWORK_MODELS
from ..metrics import make_metric
from ..transforms.linear import LinearTransform
from .registry import StageContext, StageKind, StageOutcome


class AffineNetworkKind(StageKind):
    name = "affine-network"
    models = AFFINE_NETWORK_MODELS

    def run(self, context: StageContext) -> StageOutcome:
        from ...learning.affine import AffineNet, world_affine
        from ...learning.canonical import canonical_grid, on_grid, prepare_intensity
        from ...learning.models import load_model

        stage, started = context.stage, time.perf_counter()
        model = load_model(stage.network, context.device)
        card = model.card["grid"]
        spacing = float(card["spacing_mm"])
        grid = canonical_grid(context.fixed, context.fixed_mask, card["size_xyz"], spacing)
        current = context.linear.to_sitk()
        fixed = on_grid(prepare_intensity(context.fixed, context.fixed_mask, spacing), grid, device=context.device)
        moving_prepared = prepare_intensity(context.moving, context.moving_mask, spacing)
        before_image = on_grid(moving_prepared, grid, current, device=context.device)
        with torch.no_grad():
            matrix, translation = AffineNet.affine(model.network(torch.cat([fixed, before_image], dim=1)))
        network_matrix, network_offset = world_affine(matrix, translation, grid.direction, grid.center_world())
        a0, b0 = (v.detach().cpu().double().numpy() for v in context.linear.matrix_offset())
        linear = LinearTransform("affine", context.center, context.radius)
        linear.set_affine(a0 @ network_matrix, a0 @ network_offset + b0)
        metric = make_metric(stage.metric, **stage.metric_options)
        with torch.no_grad():
            after_image = on_grid(moving_prepared, grid, linear.to_sitk(), device=context.device)
            before = float(metric(fixed, before_image, None, grid.spacing))
            after = float(metric(fixed, after_image, None, grid.spacing))
        if not np.all(np.isfinite(a0 @ network_matrix)):
            from ...errors import RegistrationFailed
            raise RegistrationFailed(f"stage {context.index + 1} (affine-network) gave a non-finite matrix")
        context.report(0, 1, 1, after)
        return StageOutcome(linear, None, self.summary(stage, before, after, started, network=model.name))
