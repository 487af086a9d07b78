"""MIND-SSC: modality independent neighbourhood descriptors (self-similarity context).

For each voxel, 12 patch distances ``D_p`` between pairs of the 6 neighbours at ``dilation``
voxels along +-x, +-y, +-z that lie ``sqrt(2) * dilation`` apart (patches are
``(2 radius + 1)^3`` box means of squared differences). The descriptor is
``exp(-(D_p - min_p D_p) / V)`` with ``V`` the mean of the 12 distances (floored relative to
its image mean), so it is unchanged by linear intensity changes and comparable across
modalities (``multimodal = True``). Offsets and patches are in voxels (``spacing`` is not
used). The loss is the weighted mean over voxels of the mean
squared (``norm="l2"``, default) or absolute (``norm="l1"``) descriptor difference.

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.mind import MINDSSC
    >>> image = torch.rand(1, 1, 12, 12, 12)
    >>> metric = MINDSSC()
    >>> bool(metric(image, 5 - image) < metric(image, image.roll(2, dims=3)))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import PresetError
from .base import SimilarityMetric, Spacing, box_mean, check_int, weighted_mean

# The six neighbours as (dz, dy, dx) unit offsets and the 12 pairs of them sqrt(2) apart.
_NEIGHBOURS = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
_PAIRS = tuple((p, q) for p in range(6) for q in range(p + 1, 6) if p // 2 != q // 2)
# The pair differences p - q up to sign: 6 diagonal directions.
_DIAGONALS = ((1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1))


def _pair_reads() -> tuple[tuple[int, tuple[int, int, int]], ...]:
    """For each pair (p, q): the diagonal channel r and the offset s with
    ``(I(x + p) - I(x + q))^2 = Q_r(x + s)``, where ``Q_r(y) = (I(y + r) - I(y))^2``."""
    reads = []
    for p, q in _PAIRS:
        a, b = _NEIGHBOURS[p], _NEIGHBOURS[q]
        r = tuple(x - y for x, y in zip(a, b))
        if r in _DIAGONALS:
            reads.append((_DIAGONALS.index(r), b))
        else:
            reads.append((_DIAGONALS.index(tuple(-x for x in r)), a))
    return tuple(reads)


_READS = _pair_reads()


def _window(volume: Tensor, start: tuple[int, ...], shape: tuple[int, ...]) -> Tensor:
    return volume[:, :, start[0]:start[0] + shape[0], start[1]:start[1] + shape[1], start[2]:start[2] + shape[2]]


class _Reads(torch.autograd.Function):
    """``(N, 12, D, H, W)``: channel ``i`` is the window of ``size`` at ``reads[i][1]`` in channel
    ``reads[i][0]`` of ``boxed``; the backward pass adds each gradient back into its window."""

    @staticmethod
    def forward(ctx, boxed: Tensor, reads: tuple, size: tuple[int, ...]) -> Tensor:  # type: ignore[override]
        ctx.reads, ctx.size, ctx.boxed_shape = reads, size, boxed.shape
        return torch.cat([_window(boxed[:, c:c + 1], start, size) for c, start in reads], dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        result = grad.new_zeros(ctx.boxed_shape)
        for i, (c, start) in enumerate(ctx.reads):
            _window(result[:, c:c + 1], start, ctx.size).add_(grad[:, i:i + 1])
        return result, None, None


class _Descriptor(torch.autograd.Function):
    """``exp((min_c D - D) / V)`` with ``V = max(mean_c D, floor)`` and an explicit backward."""

    @staticmethod
    def forward(ctx, distances: Tensor, floor: Tensor) -> Tensor:  # type: ignore[override]
        lowest = distances.amin(dim=1, keepdim=True)
        mean = distances.mean(dim=1, keepdim=True)
        active = mean > floor
        variance = torch.where(active, mean, floor)
        exponent = (lowest - distances).div_(variance)
        descriptor = exponent.exp()
        ctx.save_for_backward(descriptor, exponent, variance, active)
        return descriptor

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        descriptor, exponent, variance, active = ctx.saved_tensors
        g = grad * descriptor
        total = g.sum(dim=1, keepdim=True)
        weighted = (g * exponent).sum(dim=1, keepdim=True) * (active / descriptor.shape[1])
        result = g.neg_().sub_(weighted)
        result.addcmul_(exponent == 0, total)  # d min / d D: the channel(s) at the minimum
        return result.div_(variance), None


def mind_ssc(image: Tensor, radius: int = 1, dilation: int = 2) -> Tensor:
    """MIND-SSC descriptor ``(N, 12, D, H, W)`` of ``image (N, 1, D, H, W)`` (values in (0, 1]).

    The image is extended by replicating its border. Each of the 12 patch distances is a shifted
    copy of one of 6 box-filtered squared differences along the diagonals ``p - q``.
    """
    d, rho = dilation, radius
    size = tuple(image.shape[2:])
    padded = F.pad(image, (2 * d + rho,) * 6, mode="replicate")
    extent = tuple(n + 2 * (d + rho) for n in size)  # grid of Q: offsets -(d + rho) .. n - 1 + d + rho
    base = _window(padded, (d, d, d), extent)
    squared = torch.cat([(_window(padded, tuple(d + d * o for o in r), extent) - base).square()
                         for r in _DIAGONALS], dim=1)
    boxed = box_mean(squared, rho) if rho > 0 else squared
    reads = tuple((c, tuple(rho + d + d * o for o in s)) for c, s in _READS)
    distances = _Reads.apply(boxed, reads, size)
    with torch.no_grad():
        floor = (1e-3 * distances.mean(dim=(1, 2, 3, 4), keepdim=True)).clamp_min(torch.finfo(image.dtype).tiny)
    return _Descriptor.apply(distances, floor)


class MINDSSC(SimilarityMetric):
    """Mean difference of MIND-SSC descriptors (options ``radius``, ``dilation``, ``norm``)."""

    name = "mind"
    multimodal = True

    def __init__(self, radius: int = 1, dilation: int = 2, norm: str = "l2") -> None:
        super().__init__()
        # patches and neighbours of at most 16 voxels: wider ones describe no local structure
        # and pad every image by 2 dilation + radius voxels per side
        self.radius = check_int("radius", radius, 0, self.name, high=16)
        self.dilation = check_int("dilation", dilation, 1, self.name, high=16)
        if norm not in ("l1", "l2"):
            raise PresetError(f"metric 'mind': option norm must be 'l1' or 'l2', got {norm!r}")
        self.norm = norm

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        key = ("mind", self.radius, self.dilation)
        mind_fixed = self.fixed_cached(fixed, key, lambda: mind_ssc(fixed, self.radius, self.dilation))
        difference = mind_ssc(warped, self.radius, self.dilation) - mind_fixed
        local = difference.square() if self.norm == "l2" else difference.abs()
        return weighted_mean(local.mean(dim=1, keepdim=True), mask)
