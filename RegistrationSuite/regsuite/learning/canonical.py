"""The network's canonical grid and what goes onto it.

A learned model sees both images on its own grid: ``size`` voxels (x, y, z) at ``spacing`` mm,
axis-aligned in world space (LPS) and centred on the fixed image's foreground box. The moving
image reaches it through the affine found before (fixed world -> moving world), so nothing in
the user's files has to be cropped, resized or reoriented. Frames:

* **world**: ITK physical space (LPS, mm);
* **canonical**: the index space of the canonical grid; a network's velocity components are
  mm along the canonical grid's axes and become world vectors through its direction matrix.

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> array = np.zeros((50, 70, 60), np.float32)          # z, y, x
    >>> array[20:31, 30:41, 25:36] = 1.0                   # a box centred on voxel (30, 35, 25)
    >>> image = sitk.GetImageFromArray(array)
    >>> image.SetSpacing((1.5, 1.0, 2.0))
    >>> grid = canonical_grid(image, size=(8, 8, 8), spacing=2.0)
    >>> [round(float(v), 3) for v in grid.center_world()]
    [45.0, 35.0, 50.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..engine.grid import Grid
from ..engine.pyramid import foreground_box, normalize_intensity, to_tensor

#: intensity normalisation of every learned model: percentiles 0.5 / 99.5 of the voxels above
#: the image's minimum (the brain of a skull-stripped image) mapped to 0 / 1, clipped
NORMALIZATION = {"mode": "percentile", "low": 0.5, "high": 99.5, "clip": True}


def foreground_center(image: sitk.Image, mask: sitk.Image | None = None) -> np.ndarray:
    """World centre of the box holding the mask (or the voxels above the image's minimum)."""
    index, size = foreground_box(image, mask, margin_mm=0.0)
    grid = Grid.from_sitk(image)
    return grid.index_to_world_points(index + (size - 1) / 2.0)


def canonical_grid(fixed: sitk.Image, mask: sitk.Image | None = None, size: Sequence[int] = (80, 96, 80),
                   spacing: float | Sequence[float] = 2.0, center: np.ndarray | None = None,
                   direction: np.ndarray | None = None) -> Grid:
    """The canonical grid of a model, centred on ``fixed``'s foreground (or on ``center``);
    ``direction`` (default identity: world axes) and per-axis ``spacing`` are for training-time
    augmentation."""
    center = foreground_center(fixed, mask) if center is None else np.asarray(center, dtype=np.float64)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    origin = center - direction @ ((np.asarray(size, dtype=np.float64) - 1) * spacing / 2.0)
    return Grid(tuple(int(n) for n in size), tuple(spacing), tuple(origin), direction)


def velocity_grid(grid: Grid, level: int) -> Grid:
    """The grid of a network's velocity output: ``grid`` itself (level 0) or twice coarser (level 1),
    matching the network's stride-2 output size ``ceil(n / 2)``."""
    if level == 0:
        return grid
    coarse = grid.shrink(2.0)
    expected = tuple(-(-n // 2) for n in grid.size)
    if coarse.size != expected:
        raise ValueError(f"canonical size {grid.size} must be even along every axis for a half-resolution velocity")
    return coarse


def prepare_intensity(image: sitk.Image, mask: sitk.Image | None = None, spacing: float = 2.0) -> sitk.Image:
    """``image`` normalised (:data:`NORMALIZATION`) and smoothed against aliasing at ``spacing``:
    a Gaussian of sigma ``0.5 sqrt(spacing^2 - s^2)`` mm along each axis of voxel size ``s``."""
    normalized = normalize_intensity(image, NORMALIZATION, mask)
    sigma = [0.5 * float(np.sqrt(max(spacing ** 2 - s ** 2, 0.0))) for s in image.GetSpacing()]
    if max(sigma) > 0:
        normalized = sitk.SmoothingRecursiveGaussian(normalized, [max(s, 1e-3) for s in sigma])
    return normalized


def on_grid(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None, labels: bool = False,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """``image`` sampled at ``grid``'s voxels through ``transform`` (grid world -> image world),
    as a ``(1, 1, D, H, W)`` tensor: linear for intensities, nearest neighbour for ``labels``."""
    transform = transform if transform is not None else sitk.Transform()
    if labels:
        resampled = sitk.Resample(image, grid.reference_image(), transform, sitk.sitkNearestNeighbor, 0,
                                  image.GetPixelID())
        array = sitk.GetArrayFromImage(resampled).astype(np.int64)
        return torch.from_numpy(array)[None, None].to(device)
    resampled = sitk.Resample(image, grid.reference_image(), transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return to_tensor(resampled, device)
