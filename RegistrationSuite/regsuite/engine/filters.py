"""Small differentiable filters on ``(N, C, D, H, W)`` tensors.

Example:
    >>> import torch
    >>> volume = torch.zeros(1, 1, 9, 9, 9); volume[..., 4, 4, 4] = 1.0
    >>> round(float(gaussian_blur(volume, 1.0).sum()), 4)
    1.0
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised sampled Gaussian with radius ``round(2.5 sigma)`` (at least 1)."""
    radius = max(1, int(2.5 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(volume: torch.Tensor, sigma: float | Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing of every channel; ``sigma`` in voxels, per axis ``(x, y, z)``.

    Borders are handled by replicating the edge voxels, so a constant field stays constant.
    Each 1D pass is a weighted sum of shifted views of the padded volume (differentiable); for
    these short kernels that is cheaper on CPU than a grouped ``conv3d``.
    """
    sigmas = [float(sigma)] * 3 if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
    out = volume
    for axis, s in zip((4, 3, 2), sigmas):  # x -> W, y -> H, z -> D
        size = volume.shape[axis]
        if s <= 0 or size == 1:
            continue
        kernel = gaussian_kernel1d(s, "cpu", torch.float64)
        radius = kernel.numel() // 2
        if radius >= size:  # replicate padding needs a pad smaller than the axis: truncate
            kernel = kernel[radius - (size - 1): radius + size]
            kernel = kernel / kernel.sum()
            radius = size - 1
        pad = [0, 0, 0, 0, 0, 0]
        position = (4 - axis) * 2  # F.pad order: W, H, D
        pad[position] = pad[position + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        weights = kernel.tolist()
        out = padded.narrow(axis, 0, size) * weights[0]
        for shift in range(1, len(weights)):
            out = out.add_(padded.narrow(axis, shift, size), alpha=weights[shift])
    return out


def halve(volume: torch.Tensor) -> torch.Tensor:
    """2x2x2 average pooling (sizes rounded up by edge replication)."""
    pad = [0, volume.shape[4] % 2, 0, volume.shape[3] % 2, 0, volume.shape[2] % 2]
    if any(pad):
        volume = F.pad(volume, pad, mode="replicate")
    return F.avg_pool3d(volume, 2)


def double_to(volume: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Linear upsampling of a :func:`halve`-d volume back to the spatial ``shape`` (D, H, W)."""
    doubled = F.interpolate(volume, scale_factor=2.0, mode="trilinear", align_corners=False)
    return doubled[..., : shape[0], : shape[1], : shape[2]]


def gaussian_blur_fast(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`gaussian_blur` for wide kernels on large volumes, through a 2x coarser volume.

    ``sigma >= 1.5`` voxels: average-pool by 2, blur with the remaining width at half resolution,
    upsample linearly (the three widths add up in quadrature to about ``sigma``); several times
    cheaper than the full-resolution filter. Narrower kernels use :func:`gaussian_blur`.
    """
    if sigma < 1.5 or min(volume.shape[2:]) < 8:
        return gaussian_blur(volume, sigma)
    # pooling by 2 ~ sigma^2 += 1/4 (fine voxels^2), linear upsampling ~ += 1/2: keep the rest
    rest = max(sigma ** 2 - 0.75, 0.25) ** 0.5 / 2.0
    return double_to(gaussian_blur(halve(volume), rest), volume.shape[2:])
