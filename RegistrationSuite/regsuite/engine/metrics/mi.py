"""Mutual information (MI) and normalised mutual information (NMI) from a Parzen joint histogram.

The joint histogram has ``bins x bins`` cells. The fixed image is binned with a zero-order
(box) window and the warped image with a cubic B-spline window (as in Mattes et al.), so the
histogram, and hence the measure, is a smooth function of the warped intensities. The intensity
range of each image is the min/max of its voxels with non-zero mask weight; every voxel (or a
random subset of ``samples`` voxels, drawn once from a ``torch.Generator`` seeded with
``seed``) adds its mask weight. Gradients flow to the warped image only.

Example:
    >>> import torch
    >>> from regsuite.engine.metrics.mi import MutualInformation
    >>> image = torch.rand(1, 1, 16, 16, 16)
    >>> metric = MutualInformation(bins=16)
    >>> bool(metric(image, image.exp()) < metric(image, image.flip(2)))
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import InputError
from .base import SimilarityMetric, Spacing, check_int

_LOG_FLOOR = 1e-12


class _JointHistogram(torch.autograd.Function):
    """Joint histogram ``(bins, bins)``: rows = fixed bins, columns = cubic B-spline of ``t``.

    ``t`` holds the warped intensities in column units (within ``[2, bins - 3]``), ``row`` the
    flat index ``fixed_bin * bins`` of each sample and ``weight`` each sample's weight.
    """

    @staticmethod
    def forward(ctx, t: Tensor, row: Tensor, weight: Tensor, bins: int) -> Tensor:  # type: ignore[override]
        start = torch.floor(t)
        u = t - start
        base = row + start.long() - 1
        u2 = u * u
        u3 = u2 * u
        v = 1.0 - u
        histogram = torch.zeros(bins * bins, dtype=t.dtype, device=t.device)
        histogram.index_add_(0, base, v * v * v * (weight / 6.0))
        histogram.index_add_(0, base + 1, (3.0 * u3 - 6.0 * u2 + 4.0) * (weight / 6.0))
        histogram.index_add_(0, base + 2, (-3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0) * (weight / 6.0))
        histogram.index_add_(0, base + 3, u3 * (weight / 6.0))
        ctx.save_for_backward(u, base, weight)
        return histogram.view(bins, bins)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        u, base, weight = ctx.saved_tensors
        g = grad.reshape(-1)
        u2 = u * u
        dt = (-0.5 * (1.0 - u).square() * g[base] + (1.5 * u2 - 2.0 * u) * g[base + 1]
              + (-1.5 * u2 + u + 0.5) * g[base + 2] + 0.5 * u2 * g[base + 3])
        return dt * weight, None, None, None


def _entropy(p: Tensor) -> Tensor:
    return -(p * torch.log(p + _LOG_FLOOR)).sum()


class MutualInformation(SimilarityMetric):
    """Parzen-window mutual information; the loss is ``-MI`` (nats) averaged over the batch.

    Options: ``bins`` (joint histogram size, default 32), ``samples`` (``None`` = every voxel,
    else about that many randomly chosen voxels with non-zero weight), ``seed`` of the sampling.
    """

    name = "mi"
    multimodal = True
    normalized = False

    def __init__(self, bins: int = 32, samples: int | None = None, seed: int = 0) -> None:
        super().__init__()
        # at most 1024 bins: a 1024 x 1024 joint histogram already needs ~10^8 samples to fill
        self.bins = check_int("bins", bins, 8, self.name, high=1024)
        self.samples = None if samples is None else check_int("samples", samples, 16, self.name)
        self.seed = check_int("seed", seed, 0, self.name, high=2 ** 63 - 1)  # torch.Generator's range
        self._order: Tensor | None = None

    def _subset(self, count: int, device: torch.device) -> Tensor:
        """A fixed random permutation of ``range(count)`` (drawn once per volume size)."""
        if self._order is None or self._order.numel() != count or self._order.device != device:
            generator = torch.Generator().manual_seed(self.seed)
            self._order = torch.randperm(count, generator=generator).to(device)
        return self._order

    def histogram(self, fixed: Tensor, warped: Tensor, mask: Tensor | None) -> Tensor:
        """Joint histogram ``(bins, bins)`` of one image pair ``(1, D, H, W)`` (sums to the weights)."""
        f, w = fixed.reshape(-1), warped.reshape(-1)
        weight = None if mask is None else mask.reshape(-1).to(w.dtype)
        if weight is not None:
            inside = weight > 0
            selected = int(inside.sum())
            if selected == 0:
                raise InputError(f"metric '{self.name}': the mask gives zero weight to every voxel")
            f_in = f.detach()
            f_low = torch.where(inside, f_in, math.inf).amin()
            f_high = torch.where(inside, f_in, -math.inf).amax()
            w_low = torch.where(inside, w, math.inf).amin()
            w_high = torch.where(inside, w, -math.inf).amax()
        else:
            selected = f.numel()
            f_low, f_high = f.detach().aminmax()
            w_low, w_high = w.amin(), w.amax()
        if self.samples is not None and self.samples < selected:
            take = min(f.numel(), math.ceil(self.samples * f.numel() / selected))
            index = self._subset(f.numel(), f.device)[:take]
            f, w = f[index], w[index]
            weight = None if weight is None else weight[index]
        if weight is None:
            weight = torch.ones_like(w)
        bins = self.bins
        with torch.no_grad():
            f_span = float(f_high - f_low)
            row = ((f.detach() - f_low) * (bins / f_span if f_span > 0 else 0.0)).long().clamp_(0, bins - 1) * bins
        span = w_high - w_low
        if not float(span.detach()) > 0:
            span = torch.ones_like(span)
        t = ((w - w_low) * ((bins - 5) / span) + 2.0).clamp(2.0, bins - 3.0)
        return _JointHistogram.apply(t, row, weight.detach(), bins)

    def _value(self, joint: Tensor) -> Tensor:
        p = joint / joint.sum().clamp_min(torch.finfo(joint.dtype).tiny)
        h_fixed, h_warped, h_joint = _entropy(p.sum(dim=1)), _entropy(p.sum(dim=0)), _entropy(p)
        if self.normalized:
            return (h_fixed + h_warped) / h_joint.clamp_min(_LOG_FLOOR)
        return h_fixed + h_warped - h_joint

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        values = []
        for item in range(fixed.shape[0]):
            item_mask = None if mask is None else mask[item if mask.shape[0] > 1 else 0]
            values.append(self._value(self.histogram(fixed[item], warped[item], item_mask)))
        return -torch.stack(values).mean()


class NormalizedMutualInformation(MutualInformation):
    """Normalised MI ``(H(F) + H(W)) / H(F, W)`` in ``[1, 2]``; the loss is ``-NMI``."""

    name = "nmi"
    normalized = True
