"""Trilinear sampling (``grid_sample``) spread over the CPU's threads.

On the CPU, PyTorch's 3D ``grid_sample`` divides its work between threads by batch item only, so
the engine's single-image warps and field compositions (batch 1) ran on one core however many
torch had. :func:`grid_sample` cuts the output points into as many equal slabs along their
first axis as torch has threads, samples them as one batch of views of the same input (no copy of
the input or of the points), and puts the slabs back together. Every output value, and the
gradient with respect to the points, is computed by the same arithmetic as in one call, so the
result is bit for bit the same; only the thread that computes it changes.

Example:
    >>> import torch
    >>> image = torch.arange(24.0).reshape(1, 1, 2, 3, 4)
    >>> points = torch.rand(1, 5, 2, 3, 3) * 2 - 1
    >>> expected = torch.nn.functional.grid_sample(image, points, align_corners=True)
    >>> bool(torch.equal(grid_sample(image, points, slabs=2), expected))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Output points below which one call is used (slabs would cost more than they save).
MIN_SPLIT_POINTS = 262_144


def grid_sample(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear", padding: str = "zeros",
                slabs: int | None = None) -> torch.Tensor:
    """``F.grid_sample(image, points, mode, padding, align_corners=True)``, on all CPU threads.

    ``image`` is ``(1, C, D, H, W)`` and ``points`` ``(1, d, h, w, 3)``. The points are cut into
    ``slabs`` (default: torch's thread count) along ``d``; a remainder of fewer than ``slabs``
    planes is sampled by one more call. Falls back to a single call for a batch above 1, CUDA
    tensors, small outputs, and an ``image`` whose gradient autograd will compute (it would be
    summed over the slabs in another order, and training must stay bit for bit reproducible); a
    parameter sampled under ``torch.no_grad()`` (an export, a resampling) still gets slabs.
    """
    count = torch.get_num_threads() if slabs is None else slabs
    depth = points.shape[1]
    thick = depth // count if count > 1 else 0
    image_gradient = image.requires_grad and torch.is_grad_enabled()
    if (thick == 0 or image.shape[0] != 1 or points.shape[0] != 1 or image.is_cuda or image_gradient
            or (slabs is None and points[0, ..., 0].numel() < MIN_SPLIT_POINTS)):
        return F.grid_sample(image, points, mode=mode, padding_mode=padding, align_corners=True)
    body = count * thick
    batch = points[:, :body].reshape(count, thick, *points.shape[2:])  # a view of contiguous points
    sampled = F.grid_sample(image.expand(count, *image.shape[1:]), batch, mode=mode, padding_mode=padding,
                            align_corners=True)  # (count, C, thick, h, w)
    channels, (height, width) = image.shape[1], points.shape[2:4]
    slabs_first = sampled.transpose(0, 1)  # (C, count, thick, h, w)
    if body == depth:
        return slabs_first.reshape(1, channels, depth, height, width)  # a view for one channel
    # one copy of each part into the output (reshape and then cat would copy the slabs twice)
    output = sampled.new_empty(1, channels, depth, height, width)
    output[0, :, :body].view(channels, count, thick, height, width).copy_(slabs_first)
    output[:, :, body:] = F.grid_sample(image, points[:, body:], mode=mode, padding_mode=padding, align_corners=True)
    return output
