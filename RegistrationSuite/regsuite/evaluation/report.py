"""Run every evaluation measure that the given inputs allow, and format the results.

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    >>> results = evaluate(transform=shift, fixed_points=np.zeros((1, 3)),
    ...                    moving_points=np.array([[1.0, 0.0, 0.0]]))
    >>> results["landmarks"]["after"]["mean"]
    0.0
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.images import read_mask
from .jacobian import jacobian_determinant, jacobian_statistics
from .landmarks import error_summary, landmark_errors
from .overlap import dice_per_label, hausdorff95_per_label

MaskLike = Union[sitk.Image, str, "os.PathLike[str]"]


def _clean(value: Any) -> Any:
    """Plain JSON types: numpy scalars -> Python, NaN/Inf -> None, int keys -> str."""
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def evaluate(*, transform: sitk.Transform | None = None, fixed: sitk.Image | None = None,
             fixed_labels: sitk.Image | None = None, moving_labels: sitk.Image | None = None,
             fixed_points: np.ndarray | None = None, moving_points: np.ndarray | None = None,
             mask: MaskLike | None = None, labels: Sequence[int] | None = None,
             hd95: bool = True) -> dict[str, Any]:
    """Evaluate ``transform`` (fixed world -> moving world; ``None``: identity).

    - labels (``fixed_labels`` and ``moving_labels``): the moving labels are warped onto the
      fixed labels' grid (nearest neighbour, background 0); Dice and, if ``hd95``, HD95 (mm)
      per label (default: labels > 0 present in both) and their means; with a ``transform``,
      the mean Dice before registration (identity) too;
    - points (``fixed_points`` and ``moving_points``, (N, 3) world LPS): landmark errors
      before (identity) and after;
    - ``transform``: Jacobian determinant statistics on the grid of ``fixed`` (else
      ``fixed_labels``), inside ``mask`` when given (a mask on that grid).

    The result holds only plain JSON types (label keys are strings, NaN becomes ``None``).

    Example:
        >>> evaluate(transform=sitk.Euler3DTransform(),
        ...          fixed=sitk.Image([4, 4, 4], sitk.sitkFloat32))["jacobian"]["mean"]
        1.0
    """
    results: dict[str, Any] = {}
    identity = sitk.Transform(3, sitk.sitkIdentity)
    active = transform if transform is not None else identity
    if (fixed_labels is None) != (moving_labels is None):
        raise InputError("label evaluation needs both fixed labels and moving labels")
    if (fixed_points is None) != (moving_points is None):
        raise InputError("landmark evaluation needs both fixed points and moving points")
    if fixed_labels is not None and moving_labels is not None:
        warped = sitk.Resample(moving_labels, fixed_labels, active, sitk.sitkNearestNeighbor, 0)
        dice = dice_per_label(fixed_labels, warped, labels)
        section: dict[str, Any] = {"per_label": dice, "mean": _mean(list(dice.values())),
                                   "count": len(dice)}
        if transform is not None:
            before = sitk.Resample(moving_labels, fixed_labels, identity, sitk.sitkNearestNeighbor, 0)
            dice_before = dice_per_label(fixed_labels, before, list(dice) if dice else labels)
            section["mean_before"] = _mean(list(dice_before.values()))
        results["dice"] = section
        if hd95:
            distances = hausdorff95_per_label(fixed_labels, warped, labels)
            results["hd95_mm"] = {"per_label": distances, "mean": _mean(list(distances.values())),
                                  "count": len(distances)}
    if fixed_points is not None and moving_points is not None:
        after = landmark_errors(fixed_points, moving_points, transform)
        initial = landmark_errors(fixed_points, moving_points, None)
        results["landmarks"] = {"after": error_summary(after), "before": error_summary(initial),
                                "errors_mm": after}
    if transform is not None:
        reference = fixed if fixed is not None else fixed_labels
        if reference is not None:
            jacobian = jacobian_determinant(transform, reference)
            region = read_mask(mask, reference, "evaluation mask") if mask is not None else None
            results["jacobian"] = jacobian_statistics(jacobian, region)
            results["jacobian"]["masked"] = region is not None
    if not results:
        raise InputError("nothing to evaluate: give labels, points, or a transform with a reference image")
    return _clean(results)


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """Human-readable table of :func:`evaluate` results.

    Example:
        >>> print(format_table({"landmarks": {"before": {"mean": 2.0, "std": 0.0, "max": 2.0,
        ...     "count": 1}, "after": {"mean": 0.5, "std": 0.0, "max": 0.5, "count": 1}}}))
        measure                          value
        -------------------------------  ------------------------------
        landmark error before (mm)       2.000 +/- 0.000 (max 2.000, n=1)
        landmark error after (mm)        0.500 +/- 0.000 (max 0.500, n=1)
    """
    rows: list[tuple[str, str]] = []
    dice = results.get("dice")
    if dice:
        rows.append((f"Dice mean ({dice.get('count', 0)} labels)", _number(dice.get("mean"))))
        if "mean_before" in dice:
            rows.append(("Dice mean before", _number(dice.get("mean_before"))))
    distances = results.get("hd95_mm")
    if distances:
        rows.append((f"HD95 mean (mm, {distances.get('count', 0)} labels)", _number(distances.get("mean"), 2)))
    points = results.get("landmarks")
    if points:
        for when in ("before", "after"):
            summary = points.get(when)
            if summary:
                rows.append((f"landmark error {when} (mm)",
                             f"{_number(summary.get('mean'))} +/- {_number(summary.get('std'))} "
                             f"(max {_number(summary.get('max'))}, n={summary.get('count')})"))
    jacobian = results.get("jacobian")
    if jacobian:
        where = " in mask" if jacobian.get("masked") else ""
        rows.append((f"SD log|J|{where}", _number(jacobian.get("sd_log_jacobian"), 4)))
        rows.append((f"folding % (J<=0){where}", _number(jacobian.get("folding_percent"), 4)))
        rows.append(("J min / mean / max", " / ".join(_number(jacobian.get(k)) for k in ("min", "mean", "max"))))
    width = max([len("measure")] + [len(name) for name, _ in rows]) + 2
    width = max(width, 33)
    lines = ["measure".ljust(width) + "value", "-" * (width - 2) + "  " + "-" * 30]
    lines += [name.ljust(width) + value for name, value in rows]
    per_label = (dice or {}).get("per_label") or {}
    if per_label:
        hd = (distances or {}).get("per_label") or {}
        lines += ["", "label    Dice     HD95 (mm)"]
        for label, value in per_label.items():
            lines.append(f"{label:<8} {_number(value):<8} {_number(hd.get(label), 2) if hd else ''}".rstrip())
    return "\n".join(lines)
