"""Jacobian determinant of a transform on a grid, and its summary statistics.

``J(x) = det(d T(x) / d x)`` with ``T`` the fixed-world -> moving-world transform: ``J > 1`` is
local expansion of the fixed region when mapped into the moving image, ``J <= 0`` is folding.

Example:
    >>> import SimpleITK as sitk
    >>> ref = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> scale = sitk.ScaleTransform(3, (2.0, 1.0, 1.5))
    >>> jacobian_statistics(jacobian_determinant(scale, ref))["mean"]
    3.0
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import geometry_differences
from ..io.transforms import displacement_field, flatten_linear, is_linear


def jacobian_determinant(transform: sitk.Transform, reference: sitk.Image) -> sitk.Image:
    """Jacobian determinant of ``transform`` as ``sitkFloat32`` on the grid of ``reference``.

    Linear transforms give a constant image. Otherwise the displacement field ``T(x) - x`` is
    sampled on the grid, its vectors are expressed along the index axes (so that oblique
    grids are handled: ``sitk.DisplacementFieldJacobianDeterminant`` ignores the direction),
    it is padded by one voxel by linear extrapolation (central differences everywhere, exact
    for an affine field) and differentiated with ``sitk.DisplacementFieldJacobianDeterminant``.

    Example:
        >>> jac = jacobian_determinant(sitk.Euler3DTransform(), sitk.Image([4, 4, 4], sitk.sitkUInt8))
        >>> float(sitk.GetArrayFromImage(jac).mean())
        1.0
    """
    if reference.GetDimension() != 3:
        raise InputError(f"reference grid is {reference.GetDimension()}D; a 3D grid is needed")
    if is_linear(transform):
        matrix = np.array(flatten_linear(transform).GetMatrix()).reshape(3, 3)
        values = np.full(tuple(reversed(reference.GetSize())), np.linalg.det(matrix), dtype=np.float32)
        result = sitk.GetImageFromArray(values)
        result.CopyInformation(reference)
        return result
    field = displacement_field(transform, reference)
    direction = np.array(reference.GetDirection(), dtype=float).reshape(3, 3)
    vectors = sitk.GetArrayViewFromImage(field) @ direction  # rows: D^T u (index-axis frame)
    del field
    padded = np.pad(vectors, ((1, 1), (1, 1), (1, 1), (0, 0)), mode="reflect", reflect_type="odd")
    del vectors
    padded_image = sitk.GetImageFromArray(padded, isVector=True)
    del padded
    padded_image.SetSpacing(reference.GetSpacing())
    determinant = sitk.DisplacementFieldJacobianDeterminant(padded_image, True)
    del padded_image
    size = list(reference.GetSize())
    cropped = sitk.RegionOfInterest(determinant, size, [1, 1, 1])
    result = sitk.Cast(cropped, sitk.sitkFloat32)
    result.CopyInformation(reference)
    return result


def jacobian_statistics(jacobian: sitk.Image, mask: sitk.Image | None = None) -> dict[str, float]:
    """Summary of a Jacobian determinant image, over ``mask`` (non-zero voxels) if given.

    Keys: ``sd_log_jacobian`` (standard deviation of ``log J`` over the voxels with ``J > 0``;
    non-positive voxels are left out), ``folding_percent`` (% of voxels with ``J <= 0``),
    ``min``, ``max``, ``mean``, ``voxels`` (how many voxels were summarised). Plain floats.

    Example:
        >>> stats = jacobian_statistics(sitk.Image([4, 4, 4], sitk.sitkFloat32) + 1.0)
        >>> stats["sd_log_jacobian"], stats["folding_percent"]
        (0.0, 0.0)
    """
    values = sitk.GetArrayViewFromImage(jacobian).astype(np.float64, copy=False)
    if mask is not None:
        differences = geometry_differences(mask, jacobian)
        if differences:
            raise InputError("mask is not on the grid of the Jacobian image: " + "; ".join(differences))
        selected = sitk.GetArrayViewFromImage(mask) != 0
        values = values[selected]
    else:
        values = values.ravel()
    if values.size == 0:
        raise InputError("no voxel to summarise: the mask is empty")
    positive = values[values > 0]
    sd_log = float(np.std(np.log(positive))) if positive.size else math.nan
    return {
        "sd_log_jacobian": sd_log,
        "folding_percent": float(100.0 * np.count_nonzero(values <= 0) / values.size),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "voxels": int(values.size),
    }
