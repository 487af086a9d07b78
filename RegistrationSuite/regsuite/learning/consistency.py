"""Inverse consistency of two maps predicted for one pair, as a loss and as a measurement.

A network run on ``(A, B)`` predicts ``phi_AB`` (points of A -> points of B) and run on
``(B, A)`` predicts ``phi_BA``. They are inverse-consistent when ``phi_AB(phi_BA(x)) = x`` and
``phi_BA(phi_AB(x)) = x``. On a canonical grid both maps are displacements ``u`` (world mm) on
the same grid (the moving image was brought onto the fixed image's grid by the affine), so
the composition is :func:`~regsuite.engine.transforms.dense.compose_on_grid`.

The loss (in the manner of ICNet and ICON) is the mean squared residual of both compositions;
the measurement is the mean residual length (mm), optionally inside a mask (the brain).

Example (a translation and its inverse are exactly consistent):
    >>> import torch
    >>> from regsuite.engine.grid import Grid
    >>> grid = Grid((8, 8, 8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    >>> shift = torch.zeros(1, 3, 8, 8, 8); shift[:, 1] = 1.0
    >>> round(float(inverse_consistency_loss(shift, -shift, grid)), 9)
    0.0
"""

from __future__ import annotations

import torch

from ..engine.grid import Grid
from ..engine.transforms.dense import compose_on_grid


def residuals(forward: torch.Tensor, backward: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Displacements of ``phi_AB o phi_BA`` and ``phi_BA o phi_AB`` (identity: zero), world mm."""
    # compose_on_grid(first, second): x -> y + second(y), y = x + first(x), i.e. second o first
    return compose_on_grid(backward, forward, grid), compose_on_grid(forward, backward, grid)


def inverse_consistency_loss(forward: torch.Tensor, backward: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Mean over voxels of ``|phi_AB(phi_BA(x)) - x|^2 + |phi_BA(phi_AB(x)) - x|^2`` (mm^2), halved."""
    ab_ba, ba_ab = residuals(forward, backward, grid)
    return 0.5 * (ab_ba.square().sum(dim=1).mean() + ba_ab.square().sum(dim=1).mean())


@torch.no_grad()
def inverse_consistency_error(forward: torch.Tensor, backward: torch.Tensor, grid: Grid,
                              mask: torch.Tensor | None = None) -> float:
    """Mean ``|phi_AB(phi_BA(x)) - x|`` in mm over ``mask`` (``(1, 1, D, H, W)``, default all voxels)."""
    # phi_AB(phi_BA(x)) - x alone: compose_on_grid(first, second) is second o first
    residual = compose_on_grid(backward, forward, grid).square().sum(dim=1, keepdim=True).sqrt()
    if mask is None:
        return float(residual.mean())
    inside = mask.to(residual.device) > 0
    return float(residual[inside].mean()) if bool(inside.any()) else float("nan")
