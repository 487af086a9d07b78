"""Mean squared intensity difference (MSE, the SSD measure normalised by the voxel count).

Same modality only (``multimodal = False``).

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.mse import MeanSquaredError
    >>> fixed = torch.zeros(1, 1, 4, 4, 4)
    >>> float(MeanSquaredError()(fixed, fixed + 2))
    4.0
"""

from __future__ import annotations

from torch import Tensor

from .base import SimilarityMetric, Spacing, weighted_mean


class MeanSquaredError(SimilarityMetric):
    """Weighted mean of ``(fixed - warped)^2`` over the voxels (sum of squared differences / count)."""

    name = "mse"
    multimodal = False

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        return weighted_mean((warped - fixed).square(), mask)
