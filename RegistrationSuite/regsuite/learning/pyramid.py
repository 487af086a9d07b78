"""A coarse-to-fine pyramid of two U-Nets (in the manner of LapIRN and the Deformable Registration
Pyramid), predicting one stationary velocity field.

The coarse U-Net sees the pair at half resolution (2 x 2 x 2 average pooling) and predicts a
velocity ``v_c``; the moving image is warped by ``exp(v_c)`` and the fine U-Net, on the full
resolution pair, predicts the residual ``v_f``. The output is ``v_c + v_f`` on the fine
network's velocity grid, in its voxels (VoxelMorph's unit), as LapIRN adds its levels' fields:
one velocity field, so everything downstream (integration, export, inverse, a following ``svf``
stage, a cascade) treats the pyramid as it treats a VoxelMorph network.

The grids between the levels are the engine's: the network works on a unit grid of its input
(1 "mm" per voxel along the input's axes; integration commutes with that linear change of
coordinates, so this is the same map as in world mm), the pooled grid is that grid shrunk by 2
(:meth:`~regsuite.engine.grid.Grid.shrink`, cell-centred like the pooling), and fields move
between them with :func:`~regsuite.engine.transforms.dense.resample_field` and are integrated and
applied with :class:`~regsuite.learning.field.NetworkField`.

Example:
    >>> import torch
    >>> net = PyramidNet(width=0.25, coarse_width=0.25)
    >>> tuple(net(torch.zeros(1, 2, 32, 32, 32)).shape)   # a VoxelMorph network's output shape
    (1, 3, 16, 16, 16)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.grid import Grid
from ..engine.transforms.dense import resample_field
from .field import NetworkField
from .networks import DECODER, ENCODER, VoxelMorphUNet


class PyramidNet(nn.Module):
    """Two levels: ``coarse`` (a U-Net of width ``coarse_width`` at half resolution, velocity at a
    quarter) and ``fine`` (a U-Net of ``width`` on the full pair and the coarsely warped moving
    image; ``velocity_level`` as VoxelMorph's). ``steps``: squarings of the coarse warp.

    A trained VoxelMorph network's weights fit ``fine`` (a warm start: ``coarse`` starts at the
    identity, its head initialised near zero, so the untrained pyramid is that network).
    """

    def __init__(self, width: float = 1.0, coarse_width: float = 0.5, velocity_level: int = 1,
                 encoder: Sequence[int] = ENCODER, decoder: Sequence[int] = DECODER, norm: bool = False,
                 steps: int = 7) -> None:
        super().__init__()
        self.coarse = VoxelMorphUNet(coarse_width, 1, encoder, decoder, norm)
        self.fine = VoxelMorphUNet(width, velocity_level, encoder, decoder, norm)
        self.velocity_level = int(velocity_level)
        self.steps = int(steps)
        self.config: dict[str, Any] = {"width": float(width), "coarse_width": float(coarse_width),
                                       "velocity_level": int(velocity_level), "encoder": list(encoder),
                                       "decoder": list(decoder), "norm": bool(norm), "steps": int(steps)}

    def coarse_velocity(self, pair: torch.Tensor) -> tuple[NetworkField, torch.Tensor]:
        """The coarse level's velocity moved onto the fine velocity grid, in input voxels, and the
        fine level's :class:`NetworkField` (on the unit grid of ``pair``)."""
        depth, height, width = pair.shape[2:]
        unit = Grid((width, height, depth), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        fine = NetworkField(unit, self.velocity_level, self.steps)
        pooled = NetworkField(unit.shrink(2.0), 1, self.steps)
        velocity = pooled.world_velocity(self.coarse(F.avg_pool3d(pair, 2)))
        return fine, resample_field(velocity, pooled.coarse, fine.coarse)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        fine, velocity = self.coarse_velocity(pair)
        warped = fine.warp(pair[:, 1:2], fine.displacement_of_world(velocity))
        residual = self.fine(torch.cat([pair[:, :1], warped], dim=1))
        # input voxels -> voxels of the fine velocity grid (spacing 2 ** velocity_level)
        return velocity / float(2 ** self.velocity_level) + residual
