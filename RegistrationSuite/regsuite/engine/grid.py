"""Image grids in physical space.

A :class:`Grid` is the geometry of a 3D image: ``size``, ``spacing`` and ``origin`` in ITK
order ``(x, y, z)`` and ``direction``, a 3x3 matrix whose columns are the world directions of
the index axes. Three coordinate frames are used (see ``docs/ARCHITECTURE.md``):

* **world**: ITK physical space (LPS, mm);
* **index**: continuous voxel index ``(i, j, k)``;
* **normalized**: ``grid_sample`` coordinates with ``align_corners=True``.

Every conversion is an explicit 4x4 homogeneous matrix named ``<from>_to_<to>``.

Example:
    >>> import SimpleITK as sitk
    >>> image = sitk.Image(10, 20, 30, sitk.sitkFloat32)
    >>> image.SetSpacing((1.0, 2.0, 3.0))
    >>> grid = Grid.from_sitk(image)
    >>> grid.shape_zyx
    (30, 20, 10)
    >>> (grid.index_to_world() @ [9, 19, 29, 1])[:3].tolist()
    [9.0, 38.0, 87.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..geometry import same_grid


@dataclass(frozen=True)
class Grid:
    """Geometry of a 3D image (ITK conventions, world = LPS mm)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Grid":
        """Geometry of a SimpleITK image."""
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), np.array(image.GetDirection()))

    def reference_image(self, pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
        """An empty SimpleITK image with this geometry (a resampling reference)."""
        image = sitk.Image(list(self.size), pixel_type)
        self.copy_to(image)
        return image

    def copy_to(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on ``image`` (same size required) and return it."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.flatten().tolist())
        return image

    # ------------------------------------------------------------------ properties
    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Tensor shape ``(D, H, W)`` of an image on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.size))

    @property
    def extent(self) -> np.ndarray:
        """Physical length covered by the voxel centres along each index axis (mm)."""
        return (np.array(self.size) - 1) * np.array(self.spacing)

    def center_world(self) -> np.ndarray:
        """World position of the centre of the grid."""
        return self.index_to_world_points((np.array(self.size) - 1) / 2.0)

    # ------------------------------------------------------------------ frames
    def index_to_world(self) -> np.ndarray:
        """4x4 matrix: continuous index -> world."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def world_to_index(self) -> np.ndarray:
        """4x4 matrix: world -> continuous index."""
        return np.linalg.inv(self.index_to_world())

    def index_to_normalized(self) -> np.ndarray:
        """4x4 matrix: continuous index -> ``grid_sample`` coordinates (align_corners=True)."""
        matrix = np.eye(4)
        for axis, n in enumerate(self.size):
            if n > 1:
                matrix[axis, axis] = 2.0 / (n - 1)
                matrix[axis, 3] = -1.0
            else:
                matrix[axis, axis] = 1.0
                matrix[axis, 3] = 0.0
        return matrix

    def world_to_normalized(self) -> np.ndarray:
        """4x4 matrix: world -> ``grid_sample`` coordinates."""
        return self.index_to_normalized() @ self.world_to_index()

    def normalized_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_normalized())

    def index_to_world_points(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.float64)
        matrix = self.index_to_world()
        return index @ matrix[:3, :3].T + matrix[:3, 3]

    def world_to_index_points(self, world: np.ndarray) -> np.ndarray:
        world = np.asarray(world, dtype=np.float64)
        matrix = self.world_to_index()
        return world @ matrix[:3, :3].T + matrix[:3, 3]

    def corners_world(self, pad: float = 0.0) -> np.ndarray:
        """World points ``(8, 3)`` of the corners of the index box from ``-pad`` to ``n - 1 + pad``
        along each axis (``pad`` 0: the corner voxel centres)."""
        index = [[(-pad, n - 1 + pad)[bit] for n, bit in zip(self.size, bits)] for bits in np.ndindex(2, 2, 2)]
        return self.index_to_world_points(np.array(index, dtype=np.float64))

    def index_box(self, world: np.ndarray, margin: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
        """First and last index (x y z, inclusive) of this grid's voxels inside the box that holds
        the ``world`` points in this grid's index space, widened by ``margin`` voxels (per axis or
        one for all); None when no voxel is inside.

        Example:
            >>> grid = Grid((10, 10, 10), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
            >>> [b.tolist() for b in grid.index_box(np.array([[3.0, 4.0, 5.0], [7.0, 4.0, 30.0]]), 1.0)]
            [[0, 1, 1], [5, 3, 9]]
        """
        index = self.world_to_index_points(world)
        first = np.maximum(np.floor(index.min(axis=0) - margin).astype(int), 0)
        last = np.minimum(np.ceil(index.max(axis=0) + margin).astype(int), np.asarray(self.size) - 1)
        return None if np.any(last < first) else (first, last)

    def is_whole(self, box: tuple[np.ndarray, np.ndarray]) -> bool:
        """True when ``box`` (first and last index, as :meth:`index_box` gives) is every voxel."""
        return not np.any(box[0]) and np.array_equal(box[1], np.asarray(self.size) - 1)

    # ------------------------------------------------------------------ tensors
    def world_points(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """World coordinates of every voxel centre, shape ``(1, D, H, W, 3)`` (x, y, z)."""
        return self.mapped_index_points(self.index_to_world(), device, dtype)

    def mapped_index_points(self, index_to_target: np.ndarray, device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float32,
                            box: tuple[Sequence[int], Sequence[int]] | None = None) -> torch.Tensor:
        """``index_to_target @ index`` for every voxel, ``(1, D, H, W, 3)``; with ``box`` (first
        and last index, x y z, inclusive) for the voxels of that box only, the same values.

        Built by broadcasting one vector per index axis (the map is affine), which is much
        cheaper than a matrix product over all voxels.
        """
        matrix = torch.as_tensor(np.asarray(index_to_target)[:3], device=device, dtype=torch.float64)
        first, last = box if box is not None else ((0, 0, 0), tuple(n - 1 for n in self.size))
        i, j, k = (torch.arange(int(a), int(b) + 1, device=device, dtype=torch.float64) for a, b in zip(first, last))
        along_i = (i[:, None] * matrix[:, 0]).to(dtype)[None, None, :, :]
        along_j = (j[:, None] * matrix[:, 1] + matrix[:, 3]).to(dtype)[None, :, None, :]
        along_k = (k[:, None] * matrix[:, 2]).to(dtype)[:, None, None, :]
        return (along_k + along_j + along_i).unsqueeze(0)

    # ------------------------------------------------------------------ derived grids
    def shrink(self, factor: float, minimum_size: int = 1) -> "Grid":
        """A coarser grid covering the same physical box (voxel size multiplied by ``factor``).

        The new voxel centres stay inside the original extent and are centred on it, so the
        result is nested in the original box for any factor >= 1. An axis that would keep fewer
        than ``minimum_size`` voxels keeps ``min(minimum_size, size)`` voxels spanning the
        whole extent instead (a smaller factor along that axis only).
        """
        if factor <= 1.0:
            return self
        original = np.array(self.size)
        size = np.maximum(1, np.floor((original - 1) / factor).astype(int) + 1)
        spacing = np.array(self.spacing) * factor
        clamped = size < np.minimum(original, minimum_size)
        if clamped.any():
            size = np.where(clamped, np.minimum(original, minimum_size), size)
            spacing = np.where(clamped, self.extent / np.maximum(size - 1, 1), spacing)
        used = (size - 1) * spacing
        offset = (self.extent - used) / 2.0
        origin = np.array(self.origin) + self.direction @ offset
        return Grid(tuple(size), tuple(spacing), tuple(origin), self.direction)

    def is_same(self, other: "Grid") -> bool:
        """True when ``other`` is this grid within :func:`regsuite.geometry.same_grid`'s tolerances."""
        return same_grid(self, other)


def to_tensor_matrix(matrix: np.ndarray, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A numpy matrix as a tensor on ``device``."""
    return torch.as_tensor(np.asarray(matrix), device=device, dtype=dtype)


def apply_affine(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 (or 3x4) homogeneous matrix to points ``(..., 3)``."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]
