"""The benchmark suites: which image pairs, and how a finished run is scored.

* ``brain``: OASIS-TRT-20 inter-subject pairs (fixed = subject i, moving = subject j); mean Dice
  over the 99-label DKT31+aseg map (moving labels warped nearest-neighbour), Dice after the
  affine stage where the tool exposes it, SD of log|J| and % of J <= 0 inside the fixed brain
  (fixed intensity > 0).
* ``lung``: one CT pair (baseline fixed, follow-up moving, fixed lung mask); error of the 51
  landmark pairs after mapping the fixed landmarks, log|J| statistics inside the lung mask.
* ``t1pd``: T1 (fixed) vs PD (moving) of the same volunteer, affine/rigid multimodal; the
  distance between the mappings of two tools over the fixed brain (Otsu foreground) is computed
  once all tools of the pair have run (:func:`compare_mappings`).

Example:
    >>> [c.pair for c in brain_cases(Path("/data"), 2)]
    ['1-2', '3-4']
"""

from __future__ import annotations

import argparse

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from benchmarks import metrics

SUITES = ("brain", "lung", "t1pd")

#: fixed, moving subject numbers of OASIS-TRT-20 (``--pairs N`` takes the first N)
BRAIN_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (2, 3), (4, 5), (6, 7), (8, 9), (10, 1)]

#: named pair sets (``--brain-pairs tune|confirm|validation``). tune/confirm split the subjects
#: for the classical presets: ``brain-mri`` is tuned on pairs of subjects 1-5 only and confirmed
#: on pairs of subjects 6-10 only. None of these ten pairs is in :data:`BRAIN_PAIRS`; subjects
#: 7-10 did inform earlier presets (pairs 7<-8 and 9<-10), so the confirm pairs are new pairs, not
#: unseen subjects. ``validation`` is the learned models' held-out set (the ``validation_pairs``
#: of ``regsuite/models/*/train.json``: trained on subjects 1-7 only); 8<-9 and 9<-10 are also in
#: :data:`BRAIN_PAIRS`.
BRAIN_PAIR_SETS = {
    "tune": [(1, 3), (2, 4), (3, 5), (4, 1), (5, 2)],
    "confirm": [(6, 8), (7, 9), (8, 10), (9, 6), (10, 7)],
    "validation": [(8, 9), (9, 10), (10, 8)],
}

#: subject numbers of OASIS-TRT-20
BRAIN_SUBJECTS = range(1, 11)

#: the tool whose mapping the t1pd suite compares the others with, then the second reference
T1PD_REFERENCES = ("elastix", "regsuite")


@dataclass
class Case:
    """One registration problem of a suite, with what its evaluation needs."""

    suite: str
    pair: str
    fixed: str
    moving: str
    fixed_mask: Optional[str] = None
    extra: dict = field(default_factory=dict)


def parse_brain_pairs(text: str) -> list[tuple[int, int]]:
    """Brain pairs from a set name of :data:`BRAIN_PAIR_SETS` or a list ``"6-8,7-9"`` (fixed-moving).

    Raises ``ValueError`` with a one-line message naming the bad item.

    Example:
        >>> parse_brain_pairs("6-8, 10-7")
        [(6, 8), (10, 7)]
        >>> parse_brain_pairs("validation")
        [(8, 9), (9, 10), (10, 8)]
    """
    if text.strip() in BRAIN_PAIR_SETS:
        return list(BRAIN_PAIR_SETS[text.strip()])
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        fixed, _, moving = item.partition("-")
        if not (fixed.isdigit() and moving.isdigit()):
            raise ValueError(f"brain pair {item!r} is not FIXED-MOVING (e.g. 6-8) nor one of "
                             f"{', '.join(BRAIN_PAIR_SETS)}")
        pair = (int(fixed), int(moving))
        if pair[0] not in BRAIN_SUBJECTS or pair[1] not in BRAIN_SUBJECTS or pair[0] == pair[1]:
            raise ValueError(f"brain pair {item!r} needs two different subjects from 1 to 10")
        pairs.append(pair)
    return pairs


def checked_brain_pairs(parser: "argparse.ArgumentParser", text: str, data: Path) -> list[tuple[int, int]]:
    """:func:`parse_brain_pairs` for a benchmark's command line: a bad ``--pairs`` or a ``--data``
    folder without ``oasis_trt20/`` is the parser's one-line error (exit status 2)."""
    if not (Path(data) / "oasis_trt20").is_dir():
        parser.error(f"data folder '{Path(data) / 'oasis_trt20'}' does not exist (use --data)")
    try:
        return parse_brain_pairs(text)
    except ValueError as error:
        parser.error(f"--pairs: {error}")


def brain_cases(data: Path, count: Optional[int] = None,
                pairs: Optional[list[tuple[int, int]]] = None) -> list[Case]:
    """OASIS-TRT-20 pairs: ``pairs`` if given, else :data:`BRAIN_PAIRS`; ``count`` keeps the first N."""
    root = data / "oasis_trt20"
    cases = []
    for i, j in (BRAIN_PAIRS if pairs is None else pairs)[:count]:
        fixed_dir, moving_dir = root / f"OASIS-TRT-20-{i}", root / f"OASIS-TRT-20-{j}"
        cases.append(Case("brain", f"{i}-{j}", str(fixed_dir / "t1weighted_brain.nii.gz"),
                          str(moving_dir / "t1weighted_brain.nii.gz"),
                          extra={"fixed_labels": str(fixed_dir / "labels.DKT31.manual+aseg.nii.gz"),
                                 "moving_labels": str(moving_dir / "labels.DKT31.manual+aseg.nii.gz")}))
    return cases


def lung_cases(data: Path, count: Optional[int] = None) -> list[Case]:
    """The single lung CT pair (``count`` is ignored beyond 0)."""
    root = data / "lung_ct_pair"
    case = Case("lung", "baseline-followup", str(root / "3DCT_lung_baseline.mha"),
                str(root / "3DCT_lung_followup.mha"), str(root / "3DCT_lung_baseline_mask.mha"),
                extra={"fixed_points": str(root / "landmarks51_baseline_fixed.txt"),
                       "moving_points": str(root / "landmarks51_followup_moving.txt")})
    return [case][:count]


def t1pd_cases(data: Path, count: Optional[int] = None) -> list[Case]:
    """chris_t1 (fixed) and chris_PD (moving)."""
    root = data / "mr_multimodal"
    return [Case("t1pd", "t1-pd", str(root / "chris_t1.nii.gz"), str(root / "chris_PD.nii.gz"))][:count]


def cases(suite: str, data: Path, count: Optional[int] = None,
          brain_pairs: Optional[list[tuple[int, int]]] = None) -> list[Case]:
    """The cases of ``suite``; ``count`` keeps the first N; ``brain_pairs`` replaces :data:`BRAIN_PAIRS`."""
    builders = {"brain": brain_cases, "lung": lung_cases, "t1pd": t1pd_cases}
    if suite not in builders:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    if suite == "brain":
        return brain_cases(data, count, brain_pairs)
    return builders[suite](data, count)


def _inside(mask_image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(mask_image) > 0


def read_brain_case(case: Case) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """The fixed image (float32) and the fixed and moving label maps of a brain case, as scored."""
    return (sitk.ReadImage(case.fixed, sitk.sitkFloat32), sitk.ReadImage(case.extra["fixed_labels"]),
            sitk.ReadImage(case.extra["moving_labels"]))


def score_brain_transform(transform: sitk.Transform, fixed: sitk.Image, fixed_labels: sitk.Image,
                          moving_labels: sitk.Image) -> dict:
    """The brain measures of one transform (fixed world -> moving world): mean Dice over the labels
    present in both maps, Dice per label, and log|J| statistics inside the fixed brain (fixed > 0).
    Used by :func:`evaluate_brain` and by ``benchmarks/hypermorph_sweep.py``."""
    out: dict = {}
    out["dice"], per_label = metrics.mean_dice(fixed_labels, moving_labels, transform)
    out["dice_per_label"] = {str(k): round(v, 4) for k, v in per_label.items()}
    out.update(metrics.jacobian_stats(transform, fixed, _inside(fixed)))
    return out


def evaluate_brain(case: Case, run: dict) -> dict:
    """Dice (final and affine stage), log|J| statistics inside the fixed brain."""
    fixed, fixed_labels, moving_labels = read_brain_case(case)
    out = score_brain_transform(metrics.load_transform(run["transform_path"]), fixed, fixed_labels, moving_labels)
    if run.get("affine_transform_path"):
        affine = metrics.load_transform(run["affine_transform_path"])
        out["dice_affine"], _ = metrics.mean_dice(fixed_labels, moving_labels, affine)
    return out


def evaluate_lung(case: Case, run: dict) -> dict:
    """Landmark errors (mm) and log|J| statistics inside the fixed lung mask."""
    fixed = sitk.ReadImage(case.fixed, sitk.sitkFloat32)
    transform = metrics.load_transform(run["transform_path"])
    errors = metrics.landmark_errors(transform, metrics.read_points(case.extra["fixed_points"]),
                                     metrics.read_points(case.extra["moving_points"]))
    out = {"tre_mean": float(errors.mean()), "tre_sd": float(errors.std()),
           "tre_median": float(np.median(errors)), "tre_max": float(errors.max())}
    if run.get("affine_transform_path"):
        affine = metrics.load_transform(run["affine_transform_path"])
        affine_errors = metrics.landmark_errors(affine, metrics.read_points(case.extra["fixed_points"]),
                                                metrics.read_points(case.extra["moving_points"]))
        out["tre_mean_affine"] = float(affine_errors.mean())
    mask = _inside(sitk.ReadImage(case.fixed_mask))
    out.update(metrics.jacobian_stats(transform, fixed, mask))
    return out


def evaluate_t1pd(case: Case, run: dict) -> dict:
    """Nothing per run: the t1pd measure compares tools (see :func:`compare_mappings`)."""
    return {}


EVALUATORS = {"brain": evaluate_brain, "lung": evaluate_lung, "t1pd": evaluate_t1pd}


def compare_mappings(case: Case, runs: dict[str, dict], max_points: int = 20000) -> dict[str, dict]:
    """Mean/max distance (mm) between each tool's mapping and each reference tool's, per tool.

    The points are up to ``max_points`` random voxels of the fixed image above its Otsu threshold.
    """
    fixed = sitk.ReadImage(case.fixed, sitk.sitkFloat32)
    points = metrics.otsu_foreground_points(fixed, max_points=max_points)
    transforms = {tool: metrics.load_transform(r["transform_path"]) for tool, r in runs.items()
                  if r.get("status") == "ok"}
    out: dict[str, dict] = {tool: {} for tool in transforms}
    for reference in T1PD_REFERENCES:
        if reference not in transforms:
            continue
        for tool, transform in transforms.items():
            if tool == reference:
                continue
            distance = metrics.mapping_distance(transform, transforms[reference], points)
            out[tool][f"dist_to_{reference}_mean"] = float(distance.mean())
            out[tool][f"dist_to_{reference}_max"] = float(distance.max())
    return out
