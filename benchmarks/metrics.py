"""Accuracy and regularity measures used by the benchmark, evaluated in the parent process.

Every transform maps a fixed world point (LPS mm) to a moving world point. A transform file is
either an ITK transform (``.tfm``, ``.txt``, ``.mat``, ``.h5``) or a displacement-field image on the
fixed grid (``.nii``, ``.nii.gz``, ``.mha``, ``.nrrd``; vector components x, y, z in world mm).

The project's own functions (``regsuite.evaluation``, ``regsuite.io.points``,
``regsuite.io.transforms``) are used when ``regsuite`` is importable; the local versions here
implement the same definitions (and serve as an independent cross-check in the tests).
``IMPLEMENTATION`` records which one was used.

Example:
    >>> import SimpleITK as sitk, numpy as np
    >>> ref = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> scale = sitk.ScaleTransform(3, (1.1, 1.0, 1.0))
    >>> det = jacobian_determinant_array(dense_displacement(scale, ref), ref)
    >>> bool(np.allclose(det, 1.1, atol=1e-4))
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

_FIELD_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")

try:  # the project's evaluation functions (preferred)
    from regsuite.evaluation import jacobian as _project_jacobian
    from regsuite.evaluation import landmarks as _project_landmarks
    from regsuite.evaluation import overlap as _project_overlap
    from regsuite.io import points as _project_points
    from regsuite.io import transforms as _project_transforms
    PROJECT = True
except ImportError:  # the benchmark still runs from a tree without them
    PROJECT = False

#: which implementation each measure used ("regsuite" or "local")
IMPLEMENTATION: dict[str, str] = {}


def load_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read a transform file or a displacement-field image as a SimpleITK transform."""
    if PROJECT:
        return _project_transforms.read_transform(path)
    name = str(path)
    if name.lower().endswith(_FIELD_SUFFIXES):
        field = sitk.ReadImage(name, sitk.sitkVectorFloat64)
        return sitk.DisplacementFieldTransform(field)
    return sitk.ReadTransform(name)


def dense_displacement(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """``T(x) - x`` at every voxel of ``reference`` as a float32 array ``(z, y, x, 3)`` (world mm)."""
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(reference)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    field = to_field.Execute(transform)
    return sitk.GetArrayFromImage(field).astype(np.float32)


def jacobian_determinant_array(displacement: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + u(x)`` in world coordinates, shape ``(z, y, x)``.

    Derivatives are central differences along the index axes divided by the spacing (one-sided
    at the border) and rotated into world axes with the grid's direction matrix, so oblique or
    permuted grids are handled.
    """
    spacing = np.asarray(reference.GetSpacing(), dtype=float)          # (x, y, z)
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    # grad_index[c][a] = d u_c / d (spacing_a * index_a); array axes are (z, y, x) = (2, 1, 0)
    jac = np.empty(displacement.shape[:3] + (3, 3), dtype=np.float32)
    for c in range(3):
        grads = np.gradient(displacement[..., c], spacing[2], spacing[1], spacing[0])
        for axis_array, axis_index in ((0, 2), (1, 1), (2, 0)):
            jac[..., c, axis_index] = grads[axis_array]
        del grads
    # world derivative: du/dx = (du/d index_scaled) @ direction^T
    jac = jac @ direction.T.astype(np.float32)
    jac[..., 0, 0] += 1.0
    jac[..., 1, 1] += 1.0
    jac[..., 2, 2] += 1.0
    return np.linalg.det(jac).astype(np.float32)


def jacobian_stats(transform: sitk.Transform, reference: sitk.Image,
                   mask: Optional[np.ndarray] = None) -> dict:
    """SD of log|J|, % of voxels with J <= 0, min/max J inside ``mask`` (boolean ``(z, y, x)``)."""
    if PROJECT:
        determinant = _project_jacobian.jacobian_determinant(transform, reference)
        mask_image = None
        if mask is not None:
            mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
            mask_image.CopyInformation(reference)
        stats = _project_jacobian.jacobian_statistics(determinant, mask_image)
        IMPLEMENTATION["jacobian"] = "regsuite"
        return {"sd_log_jac": stats["sd_log_jacobian"], "folding_percent": stats["folding_percent"],
                "jac_min": stats["min"], "jac_max": stats["max"]}
    det = jacobian_determinant_array(dense_displacement(transform, reference), reference)
    IMPLEMENTATION["jacobian"] = "local"
    values = det[mask] if mask is not None else det.ravel()
    positive = values[values > 0]
    return {
        "sd_log_jac": float(np.std(np.log(positive))) if positive.size else float("nan"),
        "folding_percent": float(100.0 * np.mean(values <= 0)),
        "jac_min": float(values.min()),
        "jac_max": float(values.max()),
    }


def warp_labels(moving_labels: sitk.Image, fixed: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """Moving label map resampled nearest-neighbour onto the fixed grid (outside = 0)."""
    labels = sitk.Cast(moving_labels, sitk.sitkUInt32)
    return sitk.Resample(labels, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt32)


def dice_per_label(fixed_labels: np.ndarray, warped_labels: np.ndarray,
                   labels: Sequence[int]) -> dict[int, float]:
    """Dice of each label in ``labels`` between two integer arrays of the same shape."""
    a = fixed_labels.astype(np.int64).ravel()
    b = warped_labels.astype(np.int64).ravel()
    top = int(max(a.max(initial=0), b.max(initial=0))) + 1
    count_a = np.bincount(a, minlength=top)
    count_b = np.bincount(b, minlength=top)
    both = np.bincount(a[a == b], minlength=top)
    out = {}
    for label in labels:
        denominator = count_a[label] + count_b[label] if label < top else 0
        out[int(label)] = float(2.0 * both[label] / denominator) if denominator else float("nan")
    return out


def mean_dice(fixed_labels_image: sitk.Image, moving_labels_image: sitk.Image,
              transform: sitk.Transform) -> tuple[float, dict[int, float]]:
    """Mean Dice over the non-zero labels present in both label maps (fixed and moving, before
    warping: a label lost by the warp counts as 0), and the per-label values."""
    fixed_array = sitk.GetArrayFromImage(fixed_labels_image).astype(np.int64)
    moving_array = sitk.GetArrayViewFromImage(moving_labels_image).astype(np.int64)
    labels = sorted(int(v) for v in set(np.unique(fixed_array)) & set(np.unique(moving_array)) - {0})
    warped = warp_labels(moving_labels_image, fixed_labels_image, transform)
    if PROJECT:
        per_label = _project_overlap.dice_per_label(sitk.Cast(fixed_labels_image, sitk.sitkUInt32), warped, labels)
        IMPLEMENTATION["dice"] = "regsuite"
    else:
        per_label = dice_per_label(fixed_array, sitk.GetArrayFromImage(warped), labels)
        IMPLEMENTATION["dice"] = "local"
    return float(np.nanmean(list(per_label.values()))), per_label


def read_points(path: str | os.PathLike) -> np.ndarray:
    """World (LPS mm) points of an elastix ``point`` file as ``(N, 3)``."""
    if PROJECT:
        IMPLEMENTATION["points"] = "regsuite"
        return np.asarray(_project_points.read_points(path), dtype=float)
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if lines[0][0].lower() != "point":
        raise ValueError(f"{path}: only elastix 'point' files are supported without regsuite")
    count = int(lines[1][0])
    IMPLEMENTATION["points"] = "local"
    return np.array([[float(v) for v in row[:3]] for row in lines[2:2 + count]], dtype=float)


def landmark_errors(transform: sitk.Transform, fixed_points: np.ndarray, moving_points: np.ndarray) -> np.ndarray:
    """``|T(p_fixed) - p_moving|`` in mm for each landmark pair."""
    if PROJECT:
        IMPLEMENTATION["landmarks"] = "regsuite"
        return _project_landmarks.landmark_errors(fixed_points, moving_points, transform)
    IMPLEMENTATION["landmarks"] = "local"
    mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in fixed_points])
    return np.linalg.norm(mapped - moving_points, axis=1)


def mapping_distance(a: sitk.Transform, b: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """``|A(p) - B(p)|`` in mm for each point (two registrations of the same pair compared)."""
    pa = np.array([a.TransformPoint(tuple(map(float, p))) for p in points])
    pb = np.array([b.TransformPoint(tuple(map(float, p))) for p in points])
    return np.linalg.norm(pa - pb, axis=1)


def otsu_foreground_points(image: sitk.Image, max_points: int = 20000, seed: int = 0) -> np.ndarray:
    """World coordinates of up to ``max_points`` random voxels above the image's Otsu threshold."""
    mask = sitk.OtsuThreshold(image, 0, 1)
    indices = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)           # (z, y, x)
    rng = np.random.default_rng(seed)
    if len(indices) > max_points:
        indices = indices[rng.choice(len(indices), max_points, replace=False)]
    return np.array([image.TransformContinuousIndexToPhysicalPoint((float(i[2]), float(i[1]), float(i[0])))
                     for i in indices])
