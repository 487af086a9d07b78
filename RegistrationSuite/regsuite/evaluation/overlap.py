"""Label overlap measures: Dice and 95th-percentile Hausdorff distance, per label.

Both label maps must lie on the same grid (warp the moving labels onto the fixed labels'
grid with nearest-neighbour interpolation first).

Example:
    >>> import SimpleITK as sitk
    >>> a = sitk.Image([8, 8, 8], sitk.sitkUInt8); a[2:6, 2:6, 2:6] = 1
    >>> dice_per_label(a, a)
    {1: 1.0}
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import geometry_differences

_BINCOUNT_LIMIT = 1 << 24


def _arrays(fixed_labels: sitk.Image, warped_labels: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    differences = geometry_differences(warped_labels, fixed_labels)
    if differences:
        raise InputError("warped labels are not on the grid of the fixed labels: " + "; ".join(differences))
    for name, image in (("fixed labels", fixed_labels), ("warped labels", warped_labels)):
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{name} have vector voxels; a scalar label map is needed")
    fixed = sitk.GetArrayViewFromImage(fixed_labels)
    warped = sitk.GetArrayViewFromImage(warped_labels)
    for name, values in (("fixed labels", fixed), ("warped labels", warped)):
        if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise InputError(f"{name} have non-integer values; a label map is needed")
    return fixed.astype(np.int64, copy=False), warped.astype(np.int64, copy=False)


def _present(values: np.ndarray) -> set[int]:
    if values.size and values.min() >= 0 and values.max() < _BINCOUNT_LIMIT:
        return {int(v) for v in np.flatnonzero(np.bincount(values.ravel()))}
    return {int(v) for v in np.unique(values)}


def _labels(fixed: np.ndarray, warped: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    if labels is not None:
        return [int(label) for label in labels]
    return sorted(label for label in _present(fixed) & _present(warped) if label > 0)


def dice_per_label(fixed_labels: sitk.Image, warped_labels: sitk.Image,
                   labels: Sequence[int] | None = None) -> dict[int, float]:
    """Dice ``2|A & B| / (|A| + |B|)`` for each label (default: labels > 0 present in both).

    A requested label absent from both images gives ``nan``; absent from one gives 0.

    Example:
        >>> a = sitk.Image([8, 8, 8], sitk.sitkUInt8); a[0:4, :, :] = 1
        >>> b = sitk.Image([8, 8, 8], sitk.sitkUInt8); b[2:6, :, :] = 1
        >>> dice_per_label(a, b)
        {1: 0.5}
    """
    fixed, warped = _arrays(fixed_labels, warped_labels)
    chosen = _labels(fixed, warped, labels)
    if not chosen:
        return {}
    use_bincount = (fixed.size and min(fixed.min(), warped.min()) >= 0
                    and max(fixed.max(), warped.max(), max(chosen)) < _BINCOUNT_LIMIT
                    and min(chosen) >= 0)
    result: dict[int, float] = {}
    if use_bincount:
        length = int(max(fixed.max(), warped.max(), max(chosen))) + 1
        count_fixed = np.bincount(fixed.ravel(), minlength=length)
        count_warped = np.bincount(warped.ravel(), minlength=length)
        count_both = np.bincount(fixed[fixed == warped], minlength=length)
        for label in chosen:
            total = int(count_fixed[label] + count_warped[label])
            result[label] = 2.0 * int(count_both[label]) / total if total else math.nan
        return result
    for label in chosen:
        a, b = fixed == label, warped == label
        total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
        result[label] = 2.0 * np.count_nonzero(a & b) / total if total else math.nan
    return result


def _bounding_boxes(values: np.ndarray, labels: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per label, (low, high) array-index corners (inclusive low, exclusive high), z-y-x order."""
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    wanted = np.isin(values, np.asarray(labels, dtype=values.dtype))
    if not wanted.any():
        return boxes
    image = sitk.GetImageFromArray(np.where(wanted, values, 0).astype(np.int32))
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.ComputeFeretDiameterOff()
    statistics.ComputePerimeterOff()
    statistics.Execute(image)
    for label in statistics.GetLabels():
        box = statistics.GetBoundingBox(label)  # x, y, z start then sizes
        start = np.array(box[:3][::-1])
        size = np.array(box[3:][::-1])
        boxes[int(label)] = (start, start + size)
    return boxes


def _surface(mask: np.ndarray, spacing_xyz: Sequence[float]) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    return sitk.BinaryContour(image, fullyConnected=False, backgroundValue=0, foregroundValue=1)


def _distance_to(surface: sitk.Image) -> np.ndarray:
    distance = sitk.SignedMaurerDistanceMap(surface, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance), 0.0)


def hausdorff95_per_label(fixed_labels: sitk.Image, warped_labels: sitk.Image,
                          labels: Sequence[int] | None = None, percentile: float = 95.0) -> dict[int, float]:
    """Symmetric 95th-percentile surface distance (mm) per label.

    Surfaces are the boundary voxels of each label (6-connected contour); the result is the
    larger of the two directed 95th percentiles (fixed surface -> warped surface and back),
    measured with SimpleITK Maurer distance maps in physical units. A label missing in one
    image gives ``nan``. Work is done in the bounding box of the label in both images.

    Example:
        >>> a = sitk.Image([12, 12, 12], sitk.sitkUInt8); a[2:8, 2:8, 2:8] = 1
        >>> b = sitk.Image([12, 12, 12], sitk.sitkUInt8); b[4:10, 2:8, 2:8] = 1
        >>> hausdorff95_per_label(a, b)
        {1: 2.0}
    """
    fixed, warped = _arrays(fixed_labels, warped_labels)
    chosen = _labels(fixed, warped, labels)
    if not chosen:
        return {}
    if min(chosen) < np.iinfo(np.int32).min or max(chosen) > np.iinfo(np.int32).max:
        raise InputError("labels outside the 32-bit integer range are not supported by HD95")
    boxes_fixed = _bounding_boxes(fixed, chosen)
    boxes_warped = _bounding_boxes(warped, chosen)
    spacing = fixed_labels.GetSpacing()
    result: dict[int, float] = {}
    for label in chosen:
        if label not in boxes_fixed or label not in boxes_warped:
            result[label] = math.nan
            continue
        low = np.minimum(boxes_fixed[label][0], boxes_warped[label][0])
        high = np.maximum(boxes_fixed[label][1], boxes_warped[label][1])
        window = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high))
        a = np.pad(fixed[window] == label, 1)
        b = np.pad(warped[window] == label, 1)
        surface_a, surface_b = _surface(a, spacing), _surface(b, spacing)
        on_a = sitk.GetArrayViewFromImage(surface_a) != 0
        on_b = sitk.GetArrayViewFromImage(surface_b) != 0
        a_to_b = _distance_to(surface_b)[on_a]
        b_to_a = _distance_to(surface_a)[on_b]
        result[label] = float(max(np.percentile(a_to_b, percentile), np.percentile(b_to_a, percentile)))
    return result
