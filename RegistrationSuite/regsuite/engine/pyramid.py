"""Multi-resolution image pyramid: intensity normalisation, smoothing, shrinking, tensors.

Each level keeps both images on their *own* grids (shrunk by the level's factor); nothing is
resampled across images, so the registration always happens in world coordinates.

Example:
    >>> import SimpleITK as sitk
    >>> image = sitk.GaussianSource(sitk.sitkFloat32, [32, 32, 32], [6, 6, 6], [16, 16, 16])
    >>> pyramid = Pyramid(image, image, device="cpu")
    >>> level = pyramid.level(shrink=2, smoothing=1.0)
    >>> level.fixed_grid.size, tuple(level.fixed.shape)
    ((16, 16, 16), (1, 1, 16, 16, 16))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from .grid import Grid


#: Fewest voxels along any axis of an input image and of a pyramid level (an axis of a smaller
#: image keeps all of its voxels): ITK's recursive Gaussian smoothing needs 4, and finite
#: differences and local windows need a few voxels to mean anything.
MIN_LEVEL_VOXELS = 4


def check_thickness(image: sitk.Image, role: str) -> None:
    """Raise :class:`InputError` when ``image`` has fewer than :data:`MIN_LEVEL_VOXELS` voxels
    along an axis (a slab 2 or 3 voxels thick cannot be registered in 3D)."""
    size = image.GetSize()
    thin = [axis for axis, n in zip("xyz", size) if n < MIN_LEVEL_VOXELS]
    if thin:
        raise InputError(f"{role} has {size['xyz'.index(thin[0])]} voxel(s) along {thin[0]} "
                         f"(size {'x'.join(str(n) for n in size)}); registration needs at least "
                         f"{MIN_LEVEL_VOXELS} voxels along every axis")


def normalize_intensity(image: sitk.Image, options: Mapping[str, Any], mask: sitk.Image | None = None) -> sitk.Image:
    """Map intensities linearly to about [0, 1] (float32).

    ``mode='percentile'`` maps the ``low``/``high`` percentiles (inside ``mask`` when given,
    else over voxels above the minimum) to 0 and 1; ``mode='window'`` maps ``window=[a, b]``;
    ``mode='none'`` only casts. Values are clipped to [0, 1] when ``clip`` is true (default).
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    mode = options.get("mode", "percentile")
    if mode == "none":
        return image
    if mode == "window":
        low, high = (float(v) for v in options["window"])
    else:
        values = sitk.GetArrayViewFromImage(image)
        if mask is not None:
            selected = values[sitk.GetArrayViewFromImage(mask) > 0]
        else:
            selected = values[values > values.min()]
        if selected.size == 0:
            selected = values.ravel()
        step = max(1, selected.size // 2_000_000)
        low, high = np.percentile(selected[::step], [float(options.get("low", 0.5)), float(options.get("high", 99.5))])
    if not high > low:
        raise InputError("an image has constant intensity in the region used for registration")
    out = (image - float(low)) / float(high - low)
    if options.get("clip", True):
        out = sitk.Clamp(out, sitk.sitkFloat32, 0.0, 1.0)
    return out


def _level_image(image: sitk.Image, grid: Grid, smoothing: float, interpolator: int = sitk.sitkLinear) -> sitk.Image:
    if smoothing > 0:
        sigma = [smoothing * s for s in image.GetSpacing()]
        image = sitk.SmoothingRecursiveGaussian(image, sigma)
    if grid.is_same(Grid.from_sitk(image)):
        return image
    return sitk.Resample(image, grid.reference_image(), sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)


def to_tensor(image: sitk.Image, device: torch.device | str) -> torch.Tensor:
    """A scalar SimpleITK image as a ``(1, 1, D, H, W)`` float32 tensor."""
    array = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)[None, None]


@dataclass
class LevelImages:
    """The images of one pyramid level as tensors, with their grids."""

    fixed_grid: Grid
    moving_grid: Grid
    fixed: torch.Tensor
    moving: torch.Tensor
    fixed_mask: torch.Tensor | None
    moving_mask: torch.Tensor | None
    _points: torch.Tensor | None = None

    @property
    def fixed_points(self) -> torch.Tensor:
        """World coordinates of the fixed level voxels ``(1, D, H, W, 3)`` (computed once)."""
        if self._points is None:
            self._points = self.fixed_grid.world_points(self.fixed.device)
        return self._points

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.fixed_grid.spacing


class Pyramid:
    """Smoothed and shrunk copies of (already normalised) fixed and moving images.

    Pass images cropped to their foreground (:func:`crop_to_foreground`) so that every level
    covers only the region where there is something to match.
    """

    def __init__(
        self,
        fixed: sitk.Image,
        moving: sitk.Image,
        fixed_mask: sitk.Image | None = None,
        moving_mask: sitk.Image | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.fixed, self.moving = fixed, moving
        self.fixed_mask = None if fixed_mask is None else sitk.Cast(fixed_mask > 0, sitk.sitkFloat32)
        self.moving_mask = None if moving_mask is None else sitk.Cast(moving_mask > 0, sitk.sitkFloat32)
        self.device = torch.device(device)
        self.fixed_grid = Grid.from_sitk(fixed)
        self.moving_grid = Grid.from_sitk(moving)
        self._cache: dict[tuple[float, float], LevelImages] = {}

    def fixed_level_grid(self, shrink: float) -> Grid:
        """The fixed image's grid at ``shrink`` (at least :data:`MIN_LEVEL_VOXELS` per axis)."""
        return self.fixed_grid.shrink(shrink, MIN_LEVEL_VOXELS)

    def level(self, shrink: float, smoothing: float) -> LevelImages:
        key = (float(shrink), float(smoothing))
        if key not in self._cache:
            fixed_grid, moving_grid = self.fixed_level_grid(shrink), self.moving_grid.shrink(shrink, MIN_LEVEL_VOXELS)
            masks = [
                None if mask is None else to_tensor(_level_image(mask, grid, 0.0), self.device)
                for mask, grid in ((self.fixed_mask, fixed_grid), (self.moving_mask, moving_grid))
            ]
            self._cache[key] = LevelImages(
                fixed_grid,
                moving_grid,
                to_tensor(_level_image(self.fixed, fixed_grid, smoothing), self.device),
                to_tensor(_level_image(self.moving, moving_grid, smoothing), self.device),
                masks[0],
                masks[1],
            )
        return self._cache[key]


def crop_to_foreground(image: sitk.Image, mask: sitk.Image | None = None,
                       margin_mm: float = 12.0) -> tuple[sitk.Image, sitk.Image | None]:
    """Crop ``image`` (and ``mask``) to the box holding the mask, or the voxels above the
    image's minimum intensity, grown by ``margin_mm``; physical geometry is kept.

    Example:
        >>> image = sitk.Image([50, 50, 50], sitk.sitkFloat32)
        >>> image[10, 20, 30] = 1.0
        >>> crop_to_foreground(image, margin_mm=2.0)[0].GetSize()
        (5, 5, 5)
    """
    index, size = foreground_box(image, mask, margin_mm)
    if tuple(size) == image.GetSize():
        return image, mask
    crop = lambda volume: sitk.RegionOfInterest(volume, [int(v) for v in size], [int(v) for v in index])
    return crop(image), None if mask is None else crop(mask)


def foreground_box(image: sitk.Image, mask: sitk.Image | None = None, margin_mm: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """``(start index, size)`` (x, y, z) of the foreground box used by :func:`crop_to_foreground`."""
    grid = Grid.from_sitk(image)
    values = sitk.GetArrayViewFromImage(mask if mask is not None else image)
    inside = values > 0 if mask is not None else values > values.min()
    if not inside.any():
        return np.zeros(3, dtype=int), np.array(grid.size)
    lower_zyx, upper_zyx = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(inside.any(axis=other))
        lower_zyx.append(hit[0])
        upper_zyx.append(hit[-1])
    lower = np.array(lower_zyx[::-1], dtype=float)
    upper = np.array(upper_zyx[::-1], dtype=float)
    pad = np.ceil(margin_mm / np.array(grid.spacing))
    lower = np.maximum(lower - pad, 0)
    upper = np.minimum(upper + pad, np.array(grid.size) - 1)
    # a box thinner than MIN_LEVEL_VOXELS (coarse voxels, thin foreground) grows on both sides,
    # within the image
    need = np.minimum(np.array(grid.size), MIN_LEVEL_VOXELS)
    short = np.maximum(need - (upper - lower + 1), 0)
    lower = np.clip(lower - np.ceil(short / 2.0), 0, np.array(grid.size) - need)
    upper = np.maximum(upper, lower + need - 1)
    return lower.astype(int), (upper - lower + 1).astype(int)
