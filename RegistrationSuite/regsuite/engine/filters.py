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
    """
    sigmas = [float(sigma)] * 3 if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
    channels = volume.shape[1]
    out = volume
    for axis, s in zip((4, 3, 2), sigmas):  # x -> W, y -> H, z -> D
        if s <= 0 or volume.shape[axis] == 1:
            continue
        kernel = gaussian_kernel1d(s, volume.device, volume.dtype)
        radius = kernel.numel() // 2
        size = volume.shape[axis]
        if radius >= size:  # replicate padding needs a pad smaller than the axis: truncate
            kernel = kernel[radius - (size - 1): radius + size]
            kernel = kernel / kernel.sum()
            radius = size - 1
        shape = [1, 1, 1]
        shape[axis - 2] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        pad = [0, 0, 0, 0, 0, 0]
        position = (4 - axis) * 2  # F.pad order: W, H, D
        pad[position] = pad[position + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), weight, groups=channels)
    return out
