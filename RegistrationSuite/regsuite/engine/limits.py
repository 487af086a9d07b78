"""Memory checks made before a registration allocates its transform model.

A B-spline control spacing far below the voxel size (say 0.05 mm) or a dense field on a huge
level asks for more memory than the device has; torch would then fail midway with a long
allocator message (or the system would swap for hours). :func:`check_stage_memory` estimates
each level's working set from the image extent and the preset, and refuses a stage whose
estimate exceeds the budget with a one-line :class:`~regsuite.errors.PresetError` that names
the stage, the level and the smallest setting that would fit.

The budget is the device's total memory (physical RAM for the CPU, the GPU's memory for CUDA):
a model whose working set exceeds it can never run there. Estimates that fall below the budget
but still do not fit (other programs, the images themselves) end as ``RegistrationFailed``
when the allocator gives up (see ``registration.py``).

Example:
    >>> from regsuite.engine.grid import Grid
    >>> domain = Grid((20, 20, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    >>> control_grid_size(domain, 10.0)
    (7, 7, 7)
    >>> bspline_bytes(domain, 10.0) == 7 ** 3 * BSPLINE_BYTES_PER_POINT
    True
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch

from ..errors import PresetError
from .config import StageConfig
from .grid import Grid
from .stages.deformable import control_spacing
from .transforms.bspline import control_mesh

#: Bytes per B-spline control point at the peak of a level: about 21 float32 copies of the
#: 3-vector coefficient grid (the coefficients, their gradient, two Adam moments and, when a
#: level refines the grid, its least-squares fit on a twice denser grid: 8 times the points).
#: Measured: 246 bytes per point (peak RSS growth between 0.3 M and 2.6 M control points).
BSPLINE_BYTES_PER_POINT = 256
#: Bytes per fixed voxel of a displacement field level: the field, its gradient and smoothed
#: copies, the sampling grids and the metric's local statistics. Measured: 189 bytes per voxel
#: (gaussian optimizer, lncc; peak RSS growth between 64^3 and 128^3 voxels).
DENSE_BYTES_PER_VOXEL = 256
#: Bytes per fixed voxel of a velocity field (svf) level: as above plus exp(v) and, for the
#: symmetric update, both half maps. Measured: 434 (symmetric gaussian update), 338 plus the
#: per-step cost below (adam).
VELOCITY_BYTES_PER_VOXEL = 448
#: Extra bytes per voxel and integration step when autograd differentiates through the
#: scaling and squaring of a velocity field (adam/lbfgs): each squaring keeps its sampling grid.
#: Measured: 23 bytes per step (430 bytes per voxel with 4 steps, 522 with 8).
AUTOGRAD_BYTES_PER_STEP = 32


def device_memory(device: torch.device | str) -> int:
    """Total memory of ``device`` in bytes (GPU memory for CUDA, else physical RAM)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows): assume a 16 GiB machine
        return 16 * 2 ** 30


def control_grid_size(domain: Grid, spacing: float | Sequence[float]) -> tuple[int, int, int]:
    """Control points per axis (x, y, z) of a cubic B-spline with ``spacing`` (mm) over ``domain``.

    The grid covers the domain box (its voxels, edge to edge) with ``ceil(extent / spacing)``
    cells per axis and three more points for the cubic support; computed without allocating.
    """
    return tuple(cells + 3 for cells in control_mesh(domain, spacing))  # type: ignore[return-value]


def bspline_bytes(domain: Grid, spacing: float) -> int:
    """Estimated peak bytes of a B-spline level with control ``spacing`` over ``domain``."""
    return int(np.prod(control_grid_size(domain, spacing), dtype=np.float64)) * BSPLINE_BYTES_PER_POINT


def dense_bytes(grid: Grid, stage: StageConfig) -> int:
    """Estimated peak bytes of a dense field level whose similarity is computed on ``grid``."""
    per_voxel = VELOCITY_BYTES_PER_VOXEL if stage.model == "svf" else DENSE_BYTES_PER_VOXEL
    if stage.model == "svf" and stage.optimizer != "gaussian":
        per_voxel += AUTOGRAD_BYTES_PER_STEP * stage.integration_steps
    return grid.num_voxels * per_voxel


def smallest_spacing(domain: Grid, budget: int) -> float:
    """The smallest control spacing (mm, 2 significant digits, rounded up) that fits ``budget``."""
    low, high = 1e-6, float(np.max(np.array(domain.size) * np.array(domain.spacing)))
    for _ in range(80):  # bisection on a log scale; the estimate falls as the spacing grows
        middle = math.sqrt(low * high)
        low, high = (middle, high) if bspline_bytes(domain, middle) > budget else (low, middle)
    digits = 1 - int(math.floor(math.log10(high)))
    rounded = math.ceil(high * 10 ** digits) / 10 ** digits
    return rounded if bspline_bytes(domain, rounded) <= budget else high


def _gib(size: float) -> str:
    return f"{size / 2 ** 30:.3g} GiB"


def check_stage_memory(stage: StageConfig, level_grids: Sequence[Grid], domain: Grid, budget: int,
                       where: str) -> None:
    """Raise :class:`PresetError` when a level of ``stage`` would need more than ``budget`` bytes.

    ``level_grids`` are the fixed level grids (one per level), ``domain`` the whole fixed image
    grid (a B-spline's control grid covers it all), ``where`` names the stage in the message.
    """
    if stage.is_linear or stage.is_network:  # a network's canonical grid is small and fixed
        return
    for index, grid in enumerate(level_grids):
        place = f"{where}.levels[{index}]"
        if stage.model == "bspline":
            spacing = control_spacing(stage, index)
            need = bspline_bytes(domain, spacing)
            if need > budget:
                points = "x".join(str(n) for n in control_grid_size(domain, spacing))
                raise PresetError(
                    f"{place}: a B-spline control spacing of {spacing:g} mm gives {points} control points "
                    f"(about {_gib(need)}), more than this device's {_gib(budget)}; use a control spacing "
                    f"of at least {smallest_spacing(domain, budget):g} mm")
        else:
            need = dense_bytes(grid, stage)
            if need > budget:
                size = "x".join(str(n) for n in grid.size)
                raise PresetError(
                    f"{place}: a {stage.model} field on the {size} level grid needs about {_gib(need)}, "
                    f"more than this device's {_gib(budget)}; use a larger shrink for this level")
