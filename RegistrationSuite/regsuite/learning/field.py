"""From a network's output to the engine's fields: velocity in world mm, ``exp(v)``, warping.

Everything here is the engine's own machinery (:class:`~regsuite.engine.transforms.dense.VelocityField`
for scaling and squaring, :func:`~regsuite.engine.transforms.dense.resample_field` for moving a
field between grids, :func:`~regsuite.engine.stages.common.sample_image` for warping), used with
a batch of one as in a classical stage, so training and inference integrate and warp exactly as
the classical ``svf`` stage does.

Example:
    >>> import torch
    >>> from regsuite.engine.grid import Grid
    >>> grid = Grid((8, 8, 8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    >>> flow = NetworkField(grid, velocity_level=1, steps=5)
    >>> v = torch.zeros(1, 3, 4, 4, 4); v[:, 0] = 0.25      # a quarter of a 4 mm velocity voxel along x
    >>> u = flow.displacement(v)                              # exp(v) on the canonical grid
    >>> tuple(u.shape), round(float(u[0, 0, 4, 4, 4]), 4)     # mm
    ((1, 3, 8, 8, 8), 1.0)
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine.grid import Grid
from ..engine.stages.common import sample_image
from ..engine.transforms.dense import VelocityField, identity_normalized, resample_field
from .canonical import velocity_grid


class NetworkField:
    """The map ``x -> x + exp(v)(x)`` of a network's velocity on a canonical grid.

    ``velocity_level`` is the network's (0: velocity on ``grid``, 1: on the twice coarser
    :func:`~regsuite.learning.canonical.velocity_grid`); ``steps`` the squarings.
    """

    def __init__(self, grid: Grid, velocity_level: int = 1, steps: int = 7) -> None:
        self.grid = grid
        self.coarse = velocity_grid(grid, velocity_level)
        self.integrator = VelocityField(self.coarse, steps=steps)
        # voxels of the velocity grid along its axes -> world mm
        self._direction = torch.as_tensor(self.coarse.direction @ np.diag(self.coarse.spacing), dtype=torch.float32)

    def world_velocity(self, velocity: torch.Tensor) -> torch.Tensor:
        """Network output (voxels of the velocity grid along its axes, VoxelMorph's unit) as
        world vectors in mm."""
        direction = self._direction.to(velocity.device, velocity.dtype)
        return torch.einsum("rc,ncdhw->nrdhw", direction, velocity)

    def coarse_displacement(self, velocity: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``exp(scale v)`` (world mm) on the velocity grid."""
        return self.integrator.exponential(scale * self.world_velocity(velocity))

    def displacement(self, velocity: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``exp(scale v)`` (world mm) at the canonical grid's voxels."""
        return self.displacement_of_world(scale * self.world_velocity(velocity))

    def displacement_of_world(self, velocity: torch.Tensor) -> torch.Tensor:
        """``exp(v)`` of a world velocity (mm) on the velocity grid, at the canonical grid's voxels."""
        coarse = self.integrator.exponential(velocity)
        return coarse if self.coarse is self.grid else resample_field(coarse, self.coarse, self.grid)

    def warp(self, image: torch.Tensor, displacement: torch.Tensor, grid: Grid | None = None,
             mode: str = "bilinear") -> torch.Tensor:
        """``image`` (on ``grid``, default the canonical grid) sampled at ``x + u(x)`` for the
        voxels ``x`` of the grid ``displacement`` lives on (same grid as ``image``)."""
        grid = self.grid if grid is None else grid
        matrix = torch.as_tensor(grid.world_to_normalized()[:3, :3], dtype=torch.float32, device=image.device)
        base = identity_normalized(grid, image.device)
        normalized = base + torch.einsum("rc,ncdhw->ndhwr", matrix.to(displacement.dtype), displacement)
        if mode == "nearest":
            return torch.nn.functional.grid_sample(image, normalized, mode="nearest", padding_mode="zeros",
                                                   align_corners=True)
        return sample_image(image, normalized)[0]
