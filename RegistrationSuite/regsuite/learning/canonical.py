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


def prepare_intensity(image: sitk.Image, mask: sitk.Image | None = None, spacing: float = 2.0,
                      region: tuple[Grid, sitk.Transform | None] | None = None) -> sitk.Image:
    """``image`` normalised (:data:`NORMALIZATION`) and smoothed against aliasing at ``spacing``:
    a Gaussian of sigma ``0.5 sqrt(spacing^2 - s^2)`` mm along each axis of voxel size ``s``.

    ``region`` (a grid and the transform from its world to the image's, as :func:`on_grid` takes
    them) smooths and returns only the part of the image that grid samples, with a margin of
    :data:`SMOOTHING_MARGIN_SIGMAS` sigmas; the normalisation still sees the whole image. A
    brain's canonical grid covers about half of a 1 mm head volume, so this halves the smoothing.
    """
    normalized = normalize_intensity(image, NORMALIZATION, mask)
    sigma = _smoothing_sigma(image, spacing)
    if max(sigma) > 0:
        if region is not None:
            normalized = _footprint(normalized, *region, SMOOTHING_MARGIN_SIGMAS * max(sigma))
        normalized = sitk.SmoothingRecursiveGaussian(normalized, [max(s, 1e-3) for s in sigma])
    return normalized


def prepared_on_grid(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None,
                     mask: sitk.Image | None = None, spacing: float = 2.0,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``image`` prepared (:func:`prepare_intensity`, only the part ``grid`` samples) and sampled
    at ``grid``'s voxels through ``transform``: the network's input.

    Example:
        >>> image = sitk.GetImageFromArray(np.random.default_rng(0).random((40, 50, 60)).astype(np.float32))
        >>> grid = canonical_grid(image, size=(8, 8, 8), spacing=2.0)
        >>> whole = on_grid(prepare_intensity(image), grid)
        >>> bool(torch.allclose(prepared_on_grid(image, grid), whole, atol=1e-6))
        True
    """
    return on_grid(prepare_intensity(image, mask, spacing, (grid, transform)), grid, transform, device=device)


#: Margin (in smoothing sigmas) kept around the sampled part of an image before smoothing it:
#: ITK's recursive Gaussian treats a border by extending it; on uniform noise in [0, 1] the sampled
#: values change by 1e-4 with a 4-sigma margin, 5e-7 with 6 and 2e-7 with 8 (float32 rounding).
SMOOTHING_MARGIN_SIGMAS = 8.0


def _smoothing_sigma(image: sitk.Image, spacing: float) -> list[float]:
    """Per-axis Gaussian sigma (mm) against aliasing when ``image`` is sampled at ``spacing`` mm."""
    return [0.5 * float(np.sqrt(max(spacing ** 2 - s ** 2, 0.0))) for s in image.GetSpacing()]


def _footprint(image: sitk.Image, grid: Grid, transform: sitk.Transform | None, margin_mm: float) -> sitk.Image:
    """The box of ``image`` holding ``grid``'s voxels mapped through a linear ``transform`` (grid
    world -> image world), ``margin_mm`` and a voxel wider on every side; the whole image for a
    non-linear transform, when the box is the whole image or thinner than 4 voxels."""
    if transform is not None and not transform.IsLinear():  # (a composite: linear when all its pieces are)
        return image
    corners = grid.corners_world()
    if transform is not None:
        corners = np.array([transform.TransformPoint(tuple(float(v) for v in point)) for point in corners])
    own = Grid.from_sitk(image)
    box = own.index_box(corners, margin_mm / np.asarray(own.spacing) + 1.0)
    if box is None or own.is_whole(box) or np.any(box[1] - box[0] < 3):
        return image  # (a grid far outside the image: ITK's recursive Gaussian needs 4 voxels an axis)
    return sitk.RegionOfInterest(image, (box[1] - box[0] + 1).tolist(), box[0].tolist())


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
