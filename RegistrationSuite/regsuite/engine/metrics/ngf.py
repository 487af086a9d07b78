"""Normalised gradient fields (NGF, Haber and Modersitzki): alignment of image edges.

Per voxel ``1 - (n_f . n_w)^2`` with ``n = grad I / sqrt(|grad I|^2 + eps_I^2)``; it is 0 where
the edges of both images are parallel or anti-parallel, so the measure suits different
modalities (``multimodal = True``). Gradients are central differences (one-sided at the
borders) scaled by the grid ``spacing`` (mm). ``epsilon`` is the edge parameter of each image
as a fraction of that image's mean gradient norm over the (weighted) mask, which keeps NGF
unchanged by a rescaling of either image's intensities.

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.ngf import NormalizedGradientFields
    >>> image = torch.rand(1, 1, 12, 12, 12)
    >>> metric = NormalizedGradientFields()
    >>> bool(metric(image, 1 - 2 * image) < metric(image, image.roll(3, dims=2)))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..regularizers import central_difference
from .base import SimilarityMetric, Spacing, check_float, weighted_mean


def image_gradient(image: Tensor, spacing: Spacing) -> tuple[Tensor, Tensor]:
    """Gradient ``(N, 3, D, H, W)`` (index axes x, y, z, per mm) and its squared norm ``(N, 1, D, H, W)``."""
    gradient = torch.cat([central_difference(image, 4 - axis) * (1.0 / spacing[axis]) for axis in range(3)], dim=1)
    return gradient, gradient.square().sum(dim=1, keepdim=True)


def normalized_gradient(gradient: Tensor, squared: Tensor, mask: Tensor | None, epsilon: float) -> Tensor:
    """``grad I / sqrt(|grad I|^2 + eps^2)``, ``eps = epsilon *`` (weighted) mean gradient norm."""
    norm = squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt()  # finite gradient where flat
    if mask is None:
        level = norm.mean(dim=(1, 2, 3, 4), keepdim=True)
    else:
        weights = mask.to(norm.dtype)
        level = (norm * weights).sum(dim=(1, 2, 3, 4), keepdim=True) / weights.sum(dim=(1, 2, 3, 4), keepdim=True)
    scale = (level * epsilon).clamp_min(torch.finfo(norm.dtype).tiny ** 0.25)
    return gradient * torch.rsqrt(squared + scale.square())


class NormalizedGradientFields(SimilarityMetric):
    """NGF loss: weighted mean of ``1 - (n_f . n_w)^2`` (0 = all edges aligned, 1 = none)."""

    name = "ngf"
    multimodal = True

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = check_float("epsilon", epsilon, 0.0, self.name)

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        gradient_f, squared_f = self.fixed_cached(fixed, ("ngf", spacing), lambda: image_gradient(fixed, spacing))
        n_fixed = normalized_gradient(gradient_f, squared_f, mask, self.epsilon)
        n_warped = normalized_gradient(*image_gradient(warped, spacing), mask, self.epsilon)
        alignment = (n_fixed * n_warped).sum(dim=1, keepdim=True)
        return weighted_mean(1.0 - alignment.square(), mask)
