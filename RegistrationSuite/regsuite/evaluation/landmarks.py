"""Landmark (target registration) errors.

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> fixed = np.array([[0.0, 0.0, 0.0]]); moving = np.array([[3.0, 4.0, 0.0]])
    >>> landmark_errors(fixed, moving, None).tolist()
    [5.0]
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError


def landmark_errors(fixed_points: np.ndarray, moving_points: np.ndarray,
                    transform: sitk.Transform | None = None) -> np.ndarray:
    """Distances (mm) between ``transform(fixed point)`` and the matching moving point.

    Points are ``(N, 3)`` world LPS mm; ``transform`` maps fixed world to moving world
    (``None``: identity, i.e. the error before registration).

    Example:
        >>> t = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
        >>> landmark_errors(np.zeros((1, 3)), np.array([[3.0, 4.0, 0.0]]), t).tolist()
        [0.0]
    """
    fixed = np.asarray(fixed_points, dtype=float)
    moving = np.asarray(moving_points, dtype=float)
    for name, points in (("fixed points", fixed), ("moving points", moving)):
        if points.ndim != 2 or points.shape[1] != 3:
            raise InputError(f"{name} must be an (N, 3) array, got shape {points.shape}")
    if len(fixed) != len(moving):
        raise InputError(f"fixed and moving point sets differ in size ({len(fixed)} vs {len(moving)})")
    if transform is not None:
        mapped = np.array([transform.TransformPoint(tuple(p)) for p in fixed.tolist()], dtype=float)
        mapped = mapped.reshape(-1, 3)
    else:
        mapped = fixed
    return np.linalg.norm(mapped - moving, axis=1)


def error_summary(errors: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, median, 95th percentile and maximum of errors (plain floats).

    Example:
        >>> error_summary(np.array([1.0, 3.0]))["mean"]
        2.0
    """
    values = np.asarray(errors, dtype=float)
    if values.size == 0:
        raise InputError("no landmark errors to summarise")
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
        "count": int(values.size),
    }
