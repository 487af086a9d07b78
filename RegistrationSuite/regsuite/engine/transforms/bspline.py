"""Cubic B-spline free-form deformation on a control grid laid over the fixed image.

The control grid follows ITK's ``BSplineTransform`` layout so the result is written as an ITK
B-spline transform without resampling: the *transform domain* is the box covered by the fixed
image's voxels (``domain`` grid, same direction cosines; half a voxel beyond the outer voxel
centres, so that ITK, which treats its domain boundary as outside, sees every voxel inside),
divided into ``mesh`` cells per axis of size ``grid_spacing <= control_spacing``; control point
``p`` (0-based) sits at domain coordinate ``(p - 1) * grid_spacing``, so there are ``mesh + 3``
control points per axis.
Coefficients are displacement vectors in world mm (x, y, z).

On a grid aligned with the domain the field is separable: it is evaluated with three small
weight matrices (one per axis), which is exact, fast and differentiable.

Example:
    >>> import numpy as np
    >>> from regsuite.engine.grid import Grid
    >>> domain = Grid((20, 20, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    >>> ffd = BSplineField(domain, control_spacing=10.0)
    >>> ffd.mesh
    (4, 4, 4)
    >>> [round(float(s), 3) for s in ffd.grid_spacing]
    [10.0, 10.0, 10.0]
    >>> tuple(ffd.displacement(domain).shape)
    (1, 3, 20, 20, 20)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from ...errors import InputError
from ..grid import Grid


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline kernel ``B3(t)`` (support ``|t| < 2``)."""
    a = np.abs(t)
    out = np.zeros_like(a)
    inner = a < 1
    outer = (a >= 1) & (a < 2)
    out[inner] = (4.0 - 6.0 * a[inner] ** 2 + 3.0 * a[inner] ** 3) / 6.0
    out[outer] = (2.0 - a[outer]) ** 3 / 6.0
    return out


def control_mesh(domain: Grid, control_spacing: float | Sequence[float]) -> tuple[int, int, int]:
    """Cells per axis (x, y, z) of the control grid with at most ``control_spacing`` mm per cell
    over the box of ``domain``'s voxels (computed without allocating anything)."""
    spacing = np.broadcast_to(np.asarray(control_spacing, dtype=np.float64), (3,))
    extent = np.array(domain.size) * np.array(domain.spacing)
    return tuple(int(max(1, math.ceil(e / s - 1e-6))) for e, s in zip(extent, spacing))  # type: ignore[return-value]


class BSplineField(nn.Module):
    """Cubic B-spline displacement field (world mm) over the domain of a fixed-image grid."""

    def __init__(self, domain: Grid, control_spacing: float | Sequence[float]) -> None:
        super().__init__()
        self.domain = domain
        self.corner = -0.5 * np.array(domain.spacing)  # domain start, relative to voxel 0 (mm)
        extent = np.array(domain.size) * np.array(domain.spacing)
        self.mesh: tuple[int, int, int] = control_mesh(domain, control_spacing)
        self.grid_spacing = extent / np.array(self.mesh)
        size_zyx = (self.mesh[2] + 3, self.mesh[1] + 3, self.mesh[0] + 3)
        self.coefficients = nn.Parameter(torch.zeros((1, 3) + size_zyx, dtype=torch.float32))
        self._weights_cache: dict[tuple, list[torch.Tensor]] = {}

    @property
    def control_size(self) -> tuple[int, int, int]:
        """Number of control points per axis (x, y, z)."""
        return (self.mesh[0] + 3, self.mesh[1] + 3, self.mesh[2] + 3)

    # ------------------------------------------------------------------ weights
    def _axis_positions(self, grid: Grid) -> list[np.ndarray]:
        """Positions of ``grid``'s voxel centres along each domain axis, in domain mm."""
        if not np.allclose(grid.direction, self.domain.direction, atol=1e-6):
            raise InputError("B-spline evaluation needs a grid with the domain's direction cosines")
        offset = self.domain.direction.T @ (np.array(grid.origin) - np.array(self.domain.origin)) - self.corner
        return [offset[a] + np.arange(grid.size[a]) * grid.spacing[a] for a in range(3)]

    def axis_weights(self, positions: np.ndarray, axis: int) -> np.ndarray:
        """Matrix ``(len(positions), control points)`` of B-spline weights along one axis."""
        control = positions / self.grid_spacing[axis] + 1.0
        index = np.arange(self.mesh[axis] + 3)
        return cubic_bspline(control[:, np.newaxis] - index[np.newaxis, :])

    def weights(self, grid: Grid) -> list[torch.Tensor]:
        """Per-axis weight matrices ``[Wx, Wy, Wz]`` for ``grid`` (cached)."""
        device = self.coefficients.device
        key = (grid.size, grid.spacing, grid.origin, str(device))
        if key not in self._weights_cache:
            positions = self._axis_positions(grid)
            self._weights_cache[key] = [
                torch.as_tensor(self.axis_weights(positions[a], a), dtype=torch.float32, device=device) for a in range(3)
            ]
        return self._weights_cache[key]

    # ------------------------------------------------------------------ evaluation
    def displacement(self, grid: Grid) -> torch.Tensor:
        """Displacement (world mm) at the voxel centres of ``grid``: ``(1, 3, D, H, W)``."""
        wx, wy, wz = self.weights(grid)
        return separable_apply(self.coefficients, wx, wy, wz)

    def regularization_grid(self) -> Grid:
        """The control grid as a :class:`Grid` (for regularizers on the coefficients)."""
        origin = np.array(self.domain.origin) + self.domain.direction @ (self.corner - self.grid_spacing)
        return Grid(self.control_size, tuple(self.grid_spacing), tuple(origin), self.domain.direction)

    # ------------------------------------------------------------------ refinement
    def refined(self, control_spacing: float | Sequence[float]) -> "BSplineField":
        """A finer B-spline field fitted (least squares, separable) to this one."""
        finer = BSplineField(self.domain, control_spacing)
        finer.to(self.coefficients.device)
        step = np.minimum(finer.grid_spacing, self.grid_spacing) / 2.0
        size = np.floor(self.grid_spacing * np.array(self.mesh) / step).astype(int) + 1
        start = np.array(self.domain.origin) + self.domain.direction @ self.corner
        fit_grid = Grid(tuple(size), tuple(step), tuple(start), self.domain.direction)
        with torch.no_grad():
            values = self.displacement(fit_grid)
            pinv = [torch.linalg.pinv(w) for w in finer.weights(fit_grid)]
            finer.coefficients.copy_(separable_apply(values, *pinv))
        return finer

    # ------------------------------------------------------------------ export
    def to_sitk(self) -> sitk.BSplineTransform:
        """The same field as an ITK ``BSplineTransform`` (order 3)."""
        transform = sitk.BSplineTransform(3, 3)
        direction = self.domain.direction
        origin = np.array(self.domain.origin) + direction @ (self.corner - self.grid_spacing)
        fixed = list(self.control_size) + origin.tolist() + self.grid_spacing.tolist() + direction.ravel().tolist()
        transform.SetFixedParameters([float(v) for v in fixed])
        coefficients = self.coefficients.detach().cpu().double().numpy()[0]
        transform.SetParameters(coefficients.reshape(3, -1).ravel().tolist())
        return transform


def separable_apply(volume: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor, wz: torch.Tensor) -> torch.Tensor:
    """Apply one matrix per axis to ``volume (N, C, Z, Y, X)``: ``out[z,y,x] = Wz Wy Wx volume``."""
    out = torch.matmul(volume, wx.T)  # (N, C, Z, Y, X')
    out = torch.matmul(out.transpose(-1, -2), wy.T).transpose(-1, -2)  # (N, C, Z, Y', X')
    n, c, z, y, x = out.shape
    out = torch.matmul(out.reshape(n, c, z, y * x).transpose(-1, -2), wz.T).transpose(-1, -2)
    return out.reshape(n, c, wz.shape[0], y, x)
