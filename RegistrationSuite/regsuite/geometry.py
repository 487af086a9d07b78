"""World frames and grid equality: the one definition every layer uses (numpy only).

**RAS <-> LPS.** The engine and every ITK file work in LPS world millimetres; the Slicer scene
and Slicer's point files in RAS. ``C = diag(-1, -1, 1)`` converts both ways (it is its own
inverse): a point or vector ``p`` becomes ``C p`` (:func:`ras_to_lps`, :func:`lps_to_ras`), a
map ``M`` of one frame becomes ``C M C`` in the other (:func:`ras_to_lps_matrix`,
:func:`lps_to_ras_matrix`), and an image's index-to-world axes ``A`` become ``C A``.

**Same grid.** Two images share a grid when their sizes are equal and spacing, origin and
direction agree within :data:`SPACING_RTOL`, :data:`ORIGIN_ATOL_MM` and :data:`DIRECTION_ATOL`
(:func:`same_grid`, :func:`geometry_differences`). Why these values:

* they must accept what file formats do to a grid: NIfTI stores it in float32, so a grid
  written to ``.nii.gz`` and read back (origins up to 300 mm, spacings 0.3-5 mm, random
  rotations) moves by up to 1.3e-5 mm in origin, 4.8e-8 relative in spacing and 7.4e-8 in a
  direction cosine (NRRD and MetaImage keep it exactly); the tolerances sit 75x, 2000x and
  1300x above that, room for tools that round more coarsely;
* what they let through stays well inside a voxel: a voxel at distance ``r`` mm from the
  origin moves by at most ``1e-3 + 4e-4 * r`` mm (origin 1e-3; spacing ``1e-4 * r``; direction
  ``||dD|| <= 3e-4`` for nine elements within 1e-4), i.e. 0.04 mm per 100 mm.

Example:
    >>> ras_to_lps([[10.0, 20.0, 30.0]]).tolist()
    [[-10.0, -20.0, 30.0]]
    >>> import SimpleITK as sitk
    >>> a = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    >>> b = sitk.Image(a); b.SetOrigin((0.0005, 0.0, 0.0))
    >>> same_grid(a, b), geometry_differences(a, sitk.Image([4, 4, 5], sitk.sitkUInt8))
    (True, ['size (4, 4, 4) vs (4, 4, 5)'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "LPS_FROM_RAS", "RAS_FROM_LPS", "ras_to_lps", "lps_to_ras", "ras_to_lps_matrix", "lps_to_ras_matrix",
    "SPACING_RTOL", "ORIGIN_ATOL_MM", "DIRECTION_ATOL", "geometry_differences", "same_grid",
]

# ---------------------------------------------------------------------- RAS <-> LPS
#: ``C``: RAS coordinates -> LPS coordinates (and back: ``C @ C = I``). Read-only.
LPS_FROM_RAS: np.ndarray = np.diag([-1.0, -1.0, 1.0])
LPS_FROM_RAS.setflags(write=False)
#: the same matrix, named for the other direction
RAS_FROM_LPS: np.ndarray = LPS_FROM_RAS

_SIGNS = np.array([-1.0, -1.0, 1.0])
_SIGNS.setflags(write=False)
_C4 = np.diag([-1.0, -1.0, 1.0, 1.0])
_C4.setflags(write=False)


def ras_to_lps(values: Any) -> np.ndarray:
    """Points or vectors ``(..., 3)`` in RAS as a new float array in LPS (x and y negated)."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 0 or array.shape[-1] != 3:
        raise InputError(f"RAS/LPS conversion needs (..., 3) coordinates, got shape {array.shape}")
    return array * _SIGNS


def lps_to_ras(values: Any) -> np.ndarray:
    """Points or vectors ``(..., 3)`` in LPS as a new float array in RAS (the same flip)."""
    return ras_to_lps(values)


def ras_to_lps_matrix(matrix: Any) -> np.ndarray:
    """A 3x3 linear or 4x4 homogeneous map between RAS points as the same map between LPS
    points: ``C M C``.

    Example:
        >>> shift = np.eye(4); shift[:3, 3] = (1.0, 2.0, 3.0)
        >>> ras_to_lps_matrix(shift)[:3, 3].tolist()
        [-1.0, -2.0, 3.0]
    """
    array = np.asarray(matrix, dtype=float)
    if array.shape == (3, 3):
        return LPS_FROM_RAS @ array @ LPS_FROM_RAS
    if array.shape == (4, 4):
        return _C4 @ array @ _C4
    raise InputError(f"RAS/LPS conversion needs a 3x3 or 4x4 matrix, got shape {array.shape}")


def lps_to_ras_matrix(matrix: Any) -> np.ndarray:
    """A map between LPS points as the same map between RAS points (``C M C`` again)."""
    return ras_to_lps_matrix(matrix)


# ---------------------------------------------------------------------- grid equality
#: spacing: relative difference per axis
SPACING_RTOL = 1e-4
#: origin: absolute difference per coordinate, mm
ORIGIN_ATOL_MM = 1e-3
#: direction: absolute difference per matrix element (cosines)
DIRECTION_ATOL = 1e-4


def _geometry(grid: Any) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """``(dimension, size, spacing, origin, direction)`` of a SimpleITK image or an engine
    ``Grid`` (anything with ``size``, ``spacing``, ``origin`` and ``direction``)."""
    if hasattr(grid, "GetSize"):
        return (int(grid.GetDimension()), tuple(int(n) for n in grid.GetSize()), np.array(grid.GetSpacing(), dtype=float),
                np.array(grid.GetOrigin(), dtype=float), np.array(grid.GetDirection(), dtype=float).ravel())
    size = tuple(int(n) for n in grid.size)
    return (len(size), size, np.array(grid.spacing, dtype=float), np.array(grid.origin, dtype=float),
            np.asarray(grid.direction, dtype=float).ravel())


def _mismatches(image: Any, reference: Any) -> tuple[list[str], tuple, tuple]:
    """Names of the parts (``dimension``, ``size``, ``spacing``, ``origin``, ``direction``) in
    which the two grids differ beyond the tolerances, and both geometries."""
    mine, ref = _geometry(image), _geometry(reference)
    if mine[0] != ref[0]:
        return ["dimension"], mine, ref
    names = ["size"] if mine[1] != ref[1] else []
    if not np.all(np.abs(mine[2] - ref[2]) <= SPACING_RTOL * np.abs(ref[2])):
        names.append("spacing")
    if not np.all(np.abs(mine[3] - ref[3]) <= ORIGIN_ATOL_MM):
        names.append("origin")
    if not np.all(np.abs(mine[4] - ref[4]) <= DIRECTION_ATOL):
        names.append("direction")
    return names, mine, ref


def geometry_differences(image: Any, reference: Any) -> list[str]:
    """Describe how the grid of ``image`` differs from ``reference`` (empty list: same grid).

    Both are SimpleITK images or engine ``Grid`` objects; the tolerances are this module's.

    Example:
        >>> import SimpleITK as sitk
        >>> a = sitk.Image([4, 4, 4], sitk.sitkUInt8)
        >>> geometry_differences(a, a)
        []
    """
    names, mine, ref = _mismatches(image, reference)
    parts = ("dimension", "size", "spacing", "origin", "direction")
    return [f"{name} {_fmt(mine[parts.index(name)])} vs {_fmt(ref[parts.index(name)])}" for name in names]


def same_grid(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` (SimpleITK images or engine grids) share one grid.

    Example:
        >>> import SimpleITK as sitk
        >>> same_grid(sitk.Image([4, 4, 4], sitk.sitkUInt8), sitk.Image([4, 4, 4], sitk.sitkFloat32))
        True
    """
    return not _mismatches(a, b)[0]


def _fmt(values: Any) -> str:
    """``values`` as in a message: an int as it is, a size as a tuple, floats to 6 digits."""
    if isinstance(values, (int, tuple)):
        return str(values)
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
