"""Dense (non-parametric) displacement fields and stationary velocity fields.

A :class:`DenseField` stores a displacement ``u`` (world mm, components x, y, z) at the voxel
centres of a grid aligned with the fixed image: the map is ``x -> x + u(x)``.
A :class:`VelocityField` stores a stationary velocity ``v``; its map is ``exp(v)``, computed by
scaling and squaring, and its exact inverse is ``exp(-v)``.

Example:
    >>> import torch
    >>> from regsuite.engine.grid import Grid
    >>> grid = Grid((16, 16, 16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    >>> svf = VelocityField(grid, steps=6)
    >>> with torch.no_grad():
    ...     svf.field[:, 0] = 1.5          # constant velocity: a translation by 1.5 mm in x
    >>> round(float(svf.displacement().detach()[0, 0, 8, 8, 8]), 4)
    1.5
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from ...errors import InputError
from ..grid import Grid
from ..sampling import grid_sample


def vector_array(values: torch.Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """A field tensor ``(1, 3, z, y, x)`` as the C-ordered ``(z, y, x, 3)`` array that
    ``sitk.GetImageFromArray(..., isVector=True)`` takes, converted and reordered by torch in one
    copy (a numpy copy of the permuted view is several times slower on a 1 mm brain field).

    Example:
        >>> a = vector_array(torch.zeros(1, 3, 2, 3, 4))
        >>> a.shape, a.dtype.name, a.flags["C_CONTIGUOUS"]
        ((2, 3, 4, 3), 'float64', True)
    """
    ordered = values.detach()[0].permute(1, 2, 3, 0).to(dtype=dtype, memory_format=torch.contiguous_format)
    return ordered.cpu().numpy()


def _vector_to_normalized(grid: Grid, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """3x3 matrix turning a world displacement into a ``grid_sample`` displacement."""
    return torch.as_tensor(grid.world_to_normalized()[:3, :3], device=device, dtype=dtype)


def identity_normalized(grid: Grid, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``grid_sample`` coordinates of ``grid``'s own voxel centres, ``(1, D, H, W, 3)``."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) if n > 1 else torch.zeros(1, device=device, dtype=dtype)
            for n in grid.shape_zyx]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1).unsqueeze(0)


def sample_field(field: torch.Tensor, normalized: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Sample a vector field ``(1, 3, D, H, W)`` at ``grid_sample`` points ``(1, d, h, w, 3)``.

    Outside the field's grid the edge value is repeated (``padding='border'``) or zero.
    """
    return grid_sample(field, normalized, padding=padding)


def compose_on_grid(first: torch.Tensor, second: torch.Tensor, grid: Grid, base: torch.Tensor | None = None) -> torch.Tensor:
    """Displacement of ``x -> y + second(y)`` with ``y = x + first(x)``, both on ``grid``."""
    if base is None:
        base = identity_normalized(grid, first.device, first.dtype)
    to_normalized = _vector_to_normalized(grid, first.device, first.dtype)
    offset = torch.einsum("rc,ncdhw->ndhwr", to_normalized, first)
    return first + sample_field(second, base + offset)


def resample_field(field: torch.Tensor, source: Grid, target: Grid, padding: str = "border") -> torch.Tensor:
    """Linear interpolation of a vector field from ``source`` to the voxels of ``target``.

    With ``padding="zeros"`` only the box of ``target`` voxels that can see the field is sampled
    (a network's canonical grid covers about half of a 1 mm head); the others are zero, as
    sampling them would give, and the sampled ones are the same values.
    """
    if source.is_same(target):
        return field
    to_normalized = source.world_to_normalized() @ target.index_to_world()
    # the target voxels within one source voxel of its grid: elsewhere zero padding gives zero
    box = target.index_box(source.corners_world(pad=1.0), margin=1.0) if padding == "zeros" else None
    if padding != "zeros" or (box is not None and target.is_whole(box)):
        return sample_field(field, target.mapped_index_points(to_normalized, field.device, field.dtype), padding)
    out = field.new_zeros(field.shape[:2] + target.shape_zyx)
    if box is not None:
        (x0, y0, z0), (x1, y1, z1) = box
        points = target.mapped_index_points(to_normalized, field.device, field.dtype, box)
        out[:, :, z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = sample_field(field, points, padding)
    return out


class DenseField(nn.Module):
    """Displacement field (world mm) on ``grid``."""

    #: whether :meth:`inverse_displacement` is exact (a diffeomorphic model)
    invertible = False

    def __init__(self, grid: Grid, field: torch.Tensor | None = None) -> None:
        super().__init__()
        self.grid = grid
        if field is None:
            field = torch.zeros((1, 3) + grid.shape_zyx, dtype=torch.float32)
        self.field = nn.Parameter(field.detach().clone())

    def displacement(self) -> torch.Tensor:
        """Displacement ``(1, 3, D, H, W)`` of the map at this grid's voxel centres."""
        return self.field

    def resampled(self, grid: Grid) -> "DenseField":
        """The same model on another grid (e.g. the next, finer pyramid level)."""
        with torch.no_grad():
            return type(self)(grid, resample_field(self.field, self.grid, grid), **self._options())

    def _options(self) -> dict:
        return {}

    def displacement_on(self, grid: Grid) -> torch.Tensor:
        """Displacement of the map at the voxels of ``grid`` (no gradient)."""
        with torch.no_grad():
            return resample_field(self.displacement(), self.grid, grid)

    def to_sitk(self, grid: Grid, inverse: bool = False) -> sitk.DisplacementFieldTransform:
        """The map as an ITK displacement field transform on ``grid`` (e.g. the full fixed grid).

        Where ``grid`` reaches beyond the model's own grid (a region of interest) the
        displacement is zero.
        """
        with torch.no_grad():
            source = self.inverse_displacement() if inverse else self.displacement()
            values = resample_field(source, self.grid, grid, padding="zeros")
        image = sitk.GetImageFromArray(vector_array(values), isVector=True)
        grid.copy_to(image)
        return sitk.DisplacementFieldTransform(image)

    def inverse_displacement(self) -> torch.Tensor:
        raise InputError("a dense displacement field has no exact inverse; use the 'svf' model for an invertible map")


class VelocityField(DenseField):
    """Stationary velocity field; the map ``exp(v)`` is a diffeomorphism with inverse ``exp(-v)``."""

    invertible = True

    def __init__(self, grid: Grid, field: torch.Tensor | None = None, steps: int = 7) -> None:
        super().__init__(grid, field)
        self.steps = int(steps)
        self._base: torch.Tensor | None = None
        self._cached: tuple[tuple[int, int], torch.Tensor] | None = None

    def _options(self) -> dict:
        return {"steps": self.steps}

    def exponential(self, velocity: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Scaling and squaring: ``exp(v)`` as a world displacement on this grid.

        ``steps`` squarings (default: the field's own); half a velocity needs one fewer for the
        same accuracy. The squaring runs in ``grid_sample`` units (normalized offsets), which
        are linear in world displacements, so only the first and last steps convert units.
        """
        steps = self.steps if steps is None else max(0, int(steps))
        if self._base is None or self._base.device != velocity.device or self._base.dtype != velocity.dtype:
            self._base = identity_normalized(self.grid, velocity.device, velocity.dtype)
        to_normalized = _vector_to_normalized(self.grid, velocity.device, velocity.dtype)
        to_world = torch.linalg.inv(to_normalized)
        displacement = torch.einsum("rc,ncdhw->nrdhw", to_normalized / (2 ** steps), velocity)
        for _ in range(steps):
            grid = self._base + displacement.permute(0, 2, 3, 4, 1)
            displacement = displacement + sample_field(displacement, grid)
        return torch.einsum("rc,ncdhw->nrdhw", to_world, displacement)

    def displacement(self) -> torch.Tensor:
        """``exp(v)``; without autograd the result is kept until ``v`` changes (metric, export)."""
        if torch.is_grad_enabled():
            return self.exponential(self.field)
        key = (self.field._version, self.field.data_ptr())
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.exponential(self.field))
        return self._cached[1]

    def advanced(self, current: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """``exp(v + change)`` to first order from ``current = exp(v)``: ``exp(v) o (id + change)``.

        One composition instead of a full scaling and squaring, for small changes (an optimiser
        step); integrate exactly now and then to stop the error from building up.
        """
        if self._base is None or self._base.device != current.device or self._base.dtype != current.dtype:
            self._base = identity_normalized(self.grid, current.device, current.dtype)
        return compose_on_grid(change, current, self.grid, self._base)

    def inverse_displacement(self) -> torch.Tensor:
        return self.exponential(-self.field)
