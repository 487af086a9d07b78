"""Variants of the ``brain-mri`` preset on OASIS-TRT-20 pairs: the numbers behind its choices.

Each variant is the shipped preset (``--preset``, default ``brain-mri``) with some keys of its deformable (last) stage replaced; the
engine runs in this process (no CLI start-up, so times are shorter than the benchmark's and only
comparable within one run), and every result is scored like the benchmark's brain suite (mean
Dice over the labels, SD of log|J| and % J <= 0 inside the fixed brain).

Run from the repository root::

    python benchmarks/brain_variants.py --pairs 1-3,2-4,3-5 [--data ../shared/data] [--threads 2]
    python benchmarks/brain_variants.py --variant '{"update": "compositive", "field_smoothing": 0.707}'
    python benchmarks/brain_variants.py --pairs 3-5 --affine '{"levels": [[4, 2, 80], [2, 1, 25], [1, 0, 10]]}'
    python benchmarks/brain_variants.py --preset brain-mri-fast --pairs validation --variant '{}'

Without ``--variant`` it runs the ablation below: each row undoes one choice of the preset.

Example:
    >>> apply_variant({"stages": [{"model": "affine"}, {"model": "svf", "levels": []}]},
    ...               {"update": "symmetric"})["stages"][1]["update"]
    'symmetric'
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, suites  # noqa: E402
from regsuite.engine.config import PRESET_DIR  # noqa: E402
from regsuite.engine.registration import register  # noqa: E402

#: name -> replacements in the deformable stage (``levels`` replaces the whole list)
ABLATION: dict[str, dict[str, Any]] = {
    "brain-mri (shipped)": {},
    "plain (not squared) local NCC": {"metric_options": {"radius": 3}},
    "5x5x5 windows, 6 steps at 1 mm (preset of 2662a61)": {
        "metric_options": {"radius": 2, "squared": True},
        "levels": [{"shrink": 4, "smoothing": 2, "iterations": 60}, {"shrink": 2, "smoothing": 1, "iterations": 30},
                   {"shrink": 1, "smoothing": 0, "iterations": 6, "learning_rate": 2.0, "field_smoothing": 0.6}]},
    "one-sided compositive updates": {"update": "compositive"},
    "one-sided, plain NCC, field sigma 0.707 (previous preset)": {
        "update": "compositive", "metric_options": {"radius": 2}, "field_smoothing": 0.707, "exact_every": 6,
        "levels": [{"shrink": 4, "smoothing": 2, "iterations": 60}, {"shrink": 2, "smoothing": 1, "iterations": 40},
                   {"shrink": 1, "smoothing": 0, "iterations": 10}]},
}


def apply_variant(preset: dict, changes: dict[str, Any]) -> dict:
    """A copy of ``preset`` whose last stage has ``changes`` applied."""
    variant = copy.deepcopy(preset)
    variant["stages"][-1].update(copy.deepcopy(changes))
    return variant


def score(preset: dict, root: Path, pair: tuple[int, int], threads: int) -> dict[str, float]:
    """Register moving subject ``pair[1]`` to fixed ``pair[0]`` and score it."""
    fixed_dir, moving_dir = (root / f"OASIS-TRT-20-{i}" for i in pair)
    fixed = sitk.ReadImage(str(fixed_dir / "t1weighted_brain.nii.gz"), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(moving_dir / "t1weighted_brain.nii.gz"), sitk.sitkFloat32)
    start = time.perf_counter()
    result = register(fixed, moving, preset, threads=threads)
    seconds = time.perf_counter() - start
    labels = [sitk.ReadImage(str(d / "labels.DKT31.manual+aseg.nii.gz")) for d in (fixed_dir, moving_dir)]
    dice, _ = metrics.mean_dice(labels[0], labels[1], result.transform)
    jacobian = metrics.jacobian_stats(result.transform, fixed, sitk.GetArrayViewFromImage(fixed) > 0)
    return {"dice": dice, "sd_log_jac": jacobian["sd_log_jac"], "folding_percent": jacobian["folding_percent"],
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="tune",
                        help="fixed-moving subject pairs, comma-separated, or a set name (default: tune, subjects 1-5)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="brain-mri",
                        help="the shipped preset the variant changes (default brain-mri; the ablation is brain-mri's)")
    parser.add_argument("--variant", help="JSON object of deformable-stage keys to replace (instead of the ablation)")
    parser.add_argument("--affine", help="JSON object of first (affine) stage keys to replace, in every row")
    args = parser.parse_args()
    root = Path(args.data) / "oasis_trt20"
    try:
        pairs = suites.parse_brain_pairs(args.pairs)
    except ValueError as error:
        parser.error(f"--pairs: {error}")
    if not (PRESET_DIR / f"{args.preset}.json").is_file():
        parser.error(f"--preset: no shipped preset '{args.preset}'")
    if args.preset != "brain-mri" and not args.variant:
        parser.error("--preset other than brain-mri needs --variant (the ablation undoes brain-mri's choices)")
    preset = json.loads((PRESET_DIR / f"{args.preset}.json").read_text())
    if args.affine:
        preset["stages"][0].update(json.loads(args.affine))
    variants = {"variant": json.loads(args.variant)} if args.variant else ABLATION
    columns = " | ".join(f"{i}<-{j} Dice / SD log\\|J\\|" for i, j in pairs)
    print(f"| variant | {columns} | mean Dice | mean SD log\\|J\\| | max J<=0 % | mean s |")
    print("|---|" + "---|" * (len(pairs) + 4))
    for name, changes in variants.items():
        rows = [score(apply_variant(preset, changes), root, pair, args.threads) for pair in pairs]
        cells = " | ".join(f"{r['dice']:.4f} / {r['sd_log_jac']:.3f}" for r in rows)
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        print(f"| {name} | {cells} | {mean['dice']:.4f} | {mean['sd_log_jac']:.3f} | "
              f"{max(r['folding_percent'] for r in rows):.3f} | {mean['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
