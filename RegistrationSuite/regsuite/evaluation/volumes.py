"""Volumes of labelled regions, and of the regions a transform maps them to.

``T`` maps fixed world points to moving world points and ``J`` is its Jacobian determinant
on the fixed grid (:func:`~regsuite.evaluation.jacobian.jacobian_determinant`). With ``v`` the
volume of one fixed voxel in ml (``prod(spacing) / 1000``) and ``L`` a label map on that grid:

* volume of label ``l``: ``V(l) = v * #{x : L(x) = l}``;
* mapped volume: ``M(l) = v * sum over {L(x) = l} of J(x)``, the midpoint rule for the integral
  of ``J`` over the label's voxels, i.e. the volume of the region ``T`` maps the label onto;
* ratio ``r(l) = M(l) / V(l)``: the mean of ``J`` over the label (``r > 1``: the label's region
  is larger in the moving image).

**Symmetric change** between two scans registered both ways (``J_fwd`` of baseline ->
follow-up on the baseline grid, ``J_bwd`` of follow-up -> baseline on the follow-up grid):
``r_fwd`` is the ratio of the baseline label under ``J_fwd``, ``r_bwd`` the ratio of the
follow-up label under ``J_bwd`` (an estimate of baseline / follow-up), and

    ``r = sqrt(r_fwd / r_bwd)``   (:func:`symmetric_ratio`),

the geometric mean of the two estimates of follow-up / baseline. ``baseline_ml = V_baseline(l)``,
``followup_ml = baseline_ml * r``, ``change_ml = followup_ml - baseline_ml`` and
``change_percent = 100 (r - 1)`` (:func:`change_row`). Exchanging the scans (each with its own
label map) exchanges ``r_fwd`` and ``r_bwd``, so the ratio becomes exactly ``1 / r``.
Voxelwise, :func:`symmetric_jacobian` gives ``sqrt(J_fwd(x) / J_bwd(T_fwd(x)))``.

Example:
    >>> import SimpleITK as sitk
    >>> labels = sitk.Image([10, 10, 10], sitk.sitkUInt8); labels.SetSpacing((2.0, 2.0, 2.0))
    >>> labels[2:6, 2:6, 2:6] = 3
    >>> jac = sitk.Image([10, 10, 10], sitk.sitkFloat32) + 1.1; jac.CopyInformation(labels)
    >>> part = jacobian_integrals(labels, jac)[3]
    >>> round(part.volume_ml, 3), round(part.mapped_ml, 4), round(part.ratio, 6)
    (0.512, 0.5632, 1.1)
    >>> row = change_row(3, part.volume_ml, symmetric_ratio(1.1, 1 / 1.1), name="blob")
    >>> round(row["change_percent"], 6)
    10.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, RegistrationFailed
from ..geometry import geometry_differences

__all__ = ["LabelIntegral", "voxel_ml", "label_values", "label_volumes", "jacobian_integrals", "region_integral",
           "symmetric_ratio", "change_row", "symmetric_jacobian", "brain_mask", "ZERO_BORDER_FRACTION",
           "JACOBIAN_FLOOR", "ROW_KEYS"]

#: The keys of a :func:`change_row` row, in column order.
ROW_KEYS = ("label", "name", "baseline_ml", "followup_ml", "change_ml", "change_percent", "forward_ratio",
            "backward_ratio")
#: :func:`brain_mask` takes the non-zero voxels when at least this share of the grid's outer
#: layer of voxels is exactly 0 (a skull-stripped or masked scan), an Otsu foreground otherwise.
ZERO_BORDER_FRACTION = 0.9
#: Non-positive Jacobians (folding) are raised to this before :func:`symmetric_jacobian` takes
#: their ratio and square root.
JACOBIAN_FLOOR = 1e-6


@dataclass(frozen=True)
class LabelIntegral:
    """One label: its voxel count, volume ``V`` (ml) and mapped volume ``M`` (ml, the integral of J)."""

    label: int
    voxels: int
    volume_ml: float
    mapped_ml: float

    @property
    def ratio(self) -> float:
        """``M / V``: the mean Jacobian determinant over the label."""
        return self.mapped_ml / self.volume_ml


def voxel_ml(image: sitk.Image) -> float:
    """Volume of one voxel of ``image`` in ml (``prod(spacing)`` mm^3 / 1000).

    Example:
        >>> voxel_ml(sitk.Image([2, 2, 2], sitk.sitkUInt8))
        0.001
    """
    return float(np.prod(image.GetSpacing(), dtype=np.float64)) / 1000.0


def _label_array(labels: sitk.Image, role: str) -> np.ndarray:
    values = sitk.GetArrayViewFromImage(labels)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise InputError(f"{role} has non-integer values; a label map is needed")
    return values.astype(np.int64, copy=False)


def label_values(labels: sitk.Image) -> list[int]:
    """The non-zero labels present in ``labels``, sorted (0 is background).

    Example:
        >>> image = sitk.Image([4, 4, 4], sitk.sitkInt16); image[0, 0, 0] = 5; image[1, 0, 0] = -2
        >>> label_values(image)
        [-2, 5]
    """
    return [int(value) for value in np.unique(_label_array(labels, "label map")) if value != 0]


def label_volumes(labels: sitk.Image) -> dict[int, float]:
    """Volume in ml of every non-zero label of ``labels``.

    Example:
        >>> image = sitk.Image([4, 4, 4], sitk.sitkUInt8); image.SetSpacing((10.0, 10.0, 10.0))
        >>> image[0, 0, 0] = 1
        >>> label_volumes(image)
        {1: 1.0}
    """
    values, counts = np.unique(_label_array(labels, "label map"), return_counts=True)
    unit = voxel_ml(labels)
    return {int(value): float(count) * unit for value, count in zip(values, counts) if value != 0}


def jacobian_integrals(labels: sitk.Image, jacobian: sitk.Image) -> dict[int, LabelIntegral]:
    """:class:`LabelIntegral` of every non-zero label of ``labels`` under ``jacobian`` (same grid).

    The sums are accumulated in float64, whatever the pixel type of ``jacobian``.
    """
    differences = geometry_differences(labels, jacobian)
    if differences:
        raise InputError("label map is not on the grid of the Jacobian image: " + "; ".join(differences))
    values, inverse, counts = np.unique(_label_array(labels, "label map").ravel(), return_inverse=True,
                                        return_counts=True)
    determinant = sitk.GetArrayViewFromImage(jacobian).astype(np.float64, copy=False).ravel()
    sums = np.bincount(inverse.ravel(), weights=determinant, minlength=values.size)
    unit = voxel_ml(labels)
    return {int(value): LabelIntegral(int(value), int(count), float(count) * unit, float(total) * unit)
            for value, count, total in zip(values, counts, sums) if value != 0}


def region_integral(mask: sitk.Image, jacobian: sitk.Image) -> LabelIntegral:
    """:class:`LabelIntegral` (label 1) of the non-zero voxels of ``mask`` under ``jacobian``.

    Example:
        >>> mask = sitk.Image([4, 4, 4], sitk.sitkUInt8); mask[1:3, 1:3, 1:3] = 9
        >>> jac = sitk.Image([4, 4, 4], sitk.sitkFloat32) + 0.5
        >>> region_integral(mask, jac).ratio
        0.5
    """
    differences = geometry_differences(mask, jacobian)
    if differences:
        raise InputError("region is not on the grid of the Jacobian image: " + "; ".join(differences))
    inside = sitk.GetArrayViewFromImage(mask) != 0
    count = int(np.count_nonzero(inside))
    if count == 0:
        raise InputError("the region is empty (no non-zero voxel)")
    unit = voxel_ml(mask)
    total = float(sitk.GetArrayViewFromImage(jacobian)[inside].sum(dtype=np.float64))
    return LabelIntegral(1, count, count * unit, total * unit)


def symmetric_ratio(forward: float, backward: float) -> float:
    """``sqrt(forward / backward)``: follow-up / baseline from both registrations' mean Jacobians.

    ``forward`` estimates follow-up / baseline, ``backward`` baseline / follow-up; both must be
    positive (a non-positive mean Jacobian means the registration folded the whole region).

    Example:
        >>> symmetric_ratio(0.9, 1 / 0.9), symmetric_ratio(1.0, 1.0)
        (0.9, 1.0)
    """
    if not (math.isfinite(forward) and math.isfinite(backward)) or forward <= 0 or backward <= 0:
        raise RegistrationFailed(f"mean Jacobian determinants {forward:g} (forward) and {backward:g} (backward) "
                                 "must be positive; the registration folded the region")
    return math.sqrt(forward / backward)


def change_row(label: int | str, baseline_ml: float, ratio: float, *, name: str | None = None,
               forward_ratio: float | None = None, backward_ratio: float | None = None) -> dict[str, Any]:
    """One row of a change table (keys :data:`ROW_KEYS`): ``followup_ml = baseline_ml * ratio``.

    Example:
        >>> change_row("brain", 1000.0, 0.99)["change_ml"]
        -10.0
    """
    followup_ml = baseline_ml * ratio
    return {"label": label, "name": name, "baseline_ml": float(baseline_ml), "followup_ml": float(followup_ml),
            "change_ml": float(followup_ml - baseline_ml), "change_percent": float(100.0 * (ratio - 1.0)),
            "forward_ratio": None if forward_ratio is None else float(forward_ratio),
            "backward_ratio": None if backward_ratio is None else float(backward_ratio)}


def symmetric_jacobian(forward: sitk.Image, backward_on_baseline: sitk.Image,
                       floor: float = JACOBIAN_FLOOR) -> sitk.Image:
    """Voxelwise ``sqrt(J_fwd / (J_bwd o T_fwd))`` as float32 on the grid of ``forward``.

    ``backward_on_baseline`` is the follow-up -> baseline Jacobian sampled at ``T_fwd(x)`` (i.e.
    resampled onto the baseline grid through the forward transform). Both are raised to
    ``floor`` first, so folded voxels give a large or small but finite value. For an exactly
    inverse-consistent pair (``J_bwd(T_fwd(x)) = 1 / J_fwd(x)``) this is ``J_fwd``.

    Example:
        >>> fwd = sitk.Image([3, 3, 3], sitk.sitkFloat32) + 1.21
        >>> bwd = sitk.Image([3, 3, 3], sitk.sitkFloat32) + 1.0
        >>> round(float(sitk.GetArrayFromImage(symmetric_jacobian(fwd, bwd)).mean()), 4)
        1.1
    """
    differences = geometry_differences(forward, backward_on_baseline)
    if differences:
        raise InputError("the two Jacobian images are not on one grid: " + "; ".join(differences))
    a = np.maximum(sitk.GetArrayViewFromImage(forward).astype(np.float64), floor)
    b = np.maximum(sitk.GetArrayViewFromImage(backward_on_baseline).astype(np.float64), floor)
    result = sitk.GetImageFromArray(np.sqrt(a / b).astype(np.float32))
    result.CopyInformation(forward)
    return result


def _has_zero_background(values: np.ndarray) -> bool:
    border = np.concatenate([values[[0, -1], :, :].ravel(), values[:, [0, -1], :].ravel(),
                             values[:, :, [0, -1]].ravel()])
    return bool(np.count_nonzero(border == 0) >= ZERO_BORDER_FRACTION * border.size and np.any(values != 0))


def brain_mask(image: sitk.Image) -> tuple[sitk.Image, str]:
    """The whole-brain region of a scan (``uint8`` 0/1) and the rule that chose it.

    A scan with a zero background (at least :data:`ZERO_BORDER_FRACTION` of the outer layer of
    voxels exactly 0, as skull-stripped or masked scans have) gives its non-zero voxels
    (``"non-zero voxels"``); any other gives its Otsu foreground: voxels above Otsu's threshold,
    the largest connected part (face connectivity), holes filled (``"Otsu foreground"``). On an
    unstripped head that is the head, not the brain.

    Example:
        >>> image = sitk.Image([8, 8, 8], sitk.sitkFloat32); image[2:6, 2:6, 2:6] = 5.0
        >>> mask, rule = brain_mask(image)
        >>> int(sitk.GetArrayViewFromImage(mask).sum()), rule
        (64, 'non-zero voxels')
    """
    values = sitk.GetArrayViewFromImage(image)
    if _has_zero_background(values):
        inside, rule = (values != 0).astype(np.uint8), "non-zero voxels"
        mask = sitk.GetImageFromArray(inside)
    else:
        rule = "Otsu foreground"
        foreground = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1, 256)
        parts = sitk.RelabelComponent(sitk.ConnectedComponent(foreground, False), sortByObjectSize=True)
        mask = sitk.BinaryFillhole(sitk.Cast(parts == 1, sitk.sitkUInt8), fullyConnected=False, foregroundValue=1)
        mask = sitk.GetImageFromArray(sitk.GetArrayFromImage(mask).astype(np.uint8))
    mask.CopyInformation(image)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise InputError("the scan has no foreground (every voxel has the same value)")
    return mask, rule
