"""Local (windowed) normalised cross-correlation (LNCC), invariant to linear intensity changes.

Same modality only (``multimodal = False``). Local means come from :func:`box_mean` (separable
sums of shifted slices with a box-filter backward pass), the fastest of the box filters measured
(cumulative sums, ``avg_pool3d`` and ``conv3d`` 1D passes) on a 96x112x96 volume.

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.lncc import LocalNCC
    >>> image = torch.rand(1, 1, 16, 16, 16)
    >>> round(float(LocalNCC(radius=2)(image, 3 * image + 1)), 4)
    -1.0
"""

from __future__ import annotations

from torch import Tensor

from .base import SimilarityMetric, Spacing, box_mean, check_bool, check_float, check_int, standardized, weighted_mean


class LocalNCC(SimilarityMetric):
    """Windowed (local) NCC: mean of the per-voxel correlation in ``(2 radius + 1)^3`` windows.

    Both images are first standardised (global mean 0, std 1, which LNCC does not notice), local
    means come from :func:`box_mean`, and each local variance is floored at ``eps`` (relative to
    the global variance, i.e. windows with a standard deviation under 1 % of the image's count as
    flat) so flat regions contribute about 0 instead of NaN or float32 rounding noise. The mask
    weights each voxel's local correlation. The fixed image's local statistics are cached.
    """

    name = "lncc"
    multimodal = False

    def __init__(self, radius: int = 2, eps: float = 1e-4, squared: bool = False) -> None:
        super().__init__()
        # windows of at most 65^3 voxels: wider ones are global NCC at a higher cost
        self.radius = check_int("radius", radius, 1, self.name, high=32)
        self.eps = check_float("eps", eps, 0.0, self.name)
        self.squared = check_bool("squared", squared, self.name)

    def _fixed_stats(self, fixed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = standardized(fixed)
        mean_f = box_mean(f, self.radius)
        var_f = (box_mean(f.square(), self.radius) - mean_f.square()).clamp_min(self.eps)
        return f, mean_f, var_f.rsqrt()

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        f, mean_f, inv_std_f = self.fixed_cached(fixed, ("lncc", self.radius, self.eps),
                                                 lambda: self._fixed_stats(fixed))
        w = standardized(warped)
        mean_w, mean_ww, mean_fw = (box_mean(x, self.radius) for x in (w, w.square(), f * w))
        var_w = (mean_ww - mean_w.square()).clamp_min(self.eps)
        local = (mean_fw - mean_f * mean_w) * inv_std_f * var_w.rsqrt()
        if self.squared:
            local = local * local.abs()
        return -weighted_mean(local, mask)
