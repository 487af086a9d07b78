"""Global normalised cross-correlation (NCC), invariant to a linear intensity change.

Same modality only (``multimodal = False``).

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.ncc import NCC
    >>> image = torch.rand(1, 1, 8, 8, 8)
    >>> round(float(NCC()(image, 2 * image + 5)), 5)
    -1.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import InputError
from .base import SimilarityMetric, Spacing, check_float


class NCC(SimilarityMetric):
    """Global normalised cross-correlation; the loss is ``-NCC`` averaged over the batch.

    ``eps`` floors each (two-pass, weighted) variance so that a flat image gives 0, not NaN.
    """

    name = "ncc"
    multimodal = False

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = check_float("eps", eps, 0.0, self.name)

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        dims = (1, 2, 3, 4)
        if mask is None:
            weights = torch.full((1, 1, 1, 1, 1), 1.0 / fixed[0].numel(), dtype=warped.dtype, device=warped.device)
        else:
            total = mask.sum(dim=dims, keepdim=True)
            if bool((total <= 0).any()):
                raise InputError("similarity measure: the mask gives zero weight to every voxel of an image")
            weights = mask.to(warped.dtype) / total
        centred_f = fixed - (weights * fixed).sum(dim=dims, keepdim=True)
        centred_w = warped - (weights * warped).sum(dim=dims, keepdim=True)
        var_f = (weights * centred_f.square()).sum(dim=dims)
        var_w = (weights * centred_w.square()).sum(dim=dims)
        cov = (weights * centred_f * centred_w).sum(dim=dims)
        ncc = cov * torch.rsqrt(var_f.clamp_min(self.eps) * var_w.clamp_min(self.eps))
        return -ncc.mean()
