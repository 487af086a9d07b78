"""Learned affine against the classical one: accuracy, time and robustness to large misalignments.

On the learned models' validation pairs (fixed <- moving, default 8-9, 9-10, 10-8), every preset
of ``--presets`` (default ``affine-fast``, the classical affine before the learned presets;
``benchmarks/configs/affine-learned.json``, the affine network alone after the centres-of-mass
initialization; ``benchmarks/configs/affine-learned-refined.json``, the network as the
initialization of affine-fast's affine stage; both read the network from ``runs/brain-t1-affine``,
made by ``regsuite train --config benchmarks/configs/brain-t1-affine.json --output-dir
runs/brain-t1-affine --iterations 2000 --threads 1 --data-root ../shared/data/oasis_trt20``;
it is not shipped) registers, in this process:

1. each pair as it is: mean Dice over the 99 labels after the affine (moving labels warped
   nearest-neighbour, :func:`benchmarks.metrics.mean_dice`) and the time of the call;
2. ``--misalignments`` (default 20) copies of a moving image moved by a random rigid
   misalignment ``Q`` (a rotation by an angle uniform in [0, 30] degrees about a uniformly random
   axis and a shift of length uniform in [0, 40] mm, about the moving brain's centre; seeded,
   the same 20 for every preset; misalignment ``n`` uses pair ``n mod len(pairs)``). The moved
   image is resampled onto the moving grid enlarged by 48 voxels on each side, so no brain leaves
   the field of view. A misalignment is *recovered* when the result maps the fixed brain's voxels
   (fixed > 0, every 7th) within ``--tolerance`` (default 2) mm on average of the preset's own
   unperturbed result followed by ``Q^-1``; the largest distance is recorded too.

Run from the repository root::

    python benchmarks/learned_affine.py --threads 2 --out benchmarks/results/learned_affine

Writes ``affine.json`` (rewritten after every run) and ``affine.md`` into ``--out``. Times are
in-process (no interpreter start, torch import or file reading).

Example:
    >>> len(misalignments(3, 30.0, 40.0, seed=1)), float(np.linalg.norm(misalignments(1, 0.0, 0.0)[0][1]))
    (3, 0.0)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "RegistrationSuite")]

from benchmarks import metrics, suites  # noqa: E402


def misalignments(count: int, degrees: float, mm: float, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` rigid misalignments (rotation matrix, shift) drawn as the affine network's training
    draws them (:func:`regsuite.learning.affine_training.random_misalignment`), from ``seed``."""
    from regsuite.learning.affine_training import random_misalignment

    rng = np.random.default_rng(seed)
    return [random_misalignment(rng, degrees, mm) for _ in range(count)]


def rigid(rotation: np.ndarray, shift: np.ndarray, center: np.ndarray) -> sitk.AffineTransform:
    """``y -> c + R (y - c) + s`` (:func:`regsuite.learning.affine_training.rigid_about`)."""
    from regsuite.learning.affine_training import rigid_about

    return rigid_about(rotation, shift, center)


def moved_image(moving: sitk.Image, q: sitk.Transform, margin: int = 48) -> sitk.Image:
    """``moving`` seen through ``q`` (``moved(y) = moving(q(y))``) on its grid enlarged by ``margin``
    voxels on every side."""
    reference = sitk.Image([n + 2 * margin for n in moving.GetSize()], sitk.sitkFloat32)
    reference.SetSpacing(moving.GetSpacing())
    reference.SetDirection(moving.GetDirection())
    reference.SetOrigin(moving.TransformContinuousIndexToPhysicalPoint([-margin] * 3))
    return sitk.Resample(moving, reference, q, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def brain_center(image: sitk.Image) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayViewFromImage(image) > 0)[:, ::-1]
    lo, hi = index.min(axis=0), index.max(axis=0)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(((lo + hi) / 2.0).tolist()))


def mapped(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(tuple(p)) for p in points])


def summary(records: list[dict], tolerance: float) -> str:
    presets = list(dict.fromkeys(r["preset"] for r in records))
    lines = [f"| preset | Dice after affine (unperturbed) | time s | recovered within {tolerance:g} mm | "
             "mean distance mm (median over misalignments) |", "|---|---|---|---|---|"]
    for preset in presets:
        plain = [r for r in records if r["preset"] == preset and r["kind"] == "pair"]
        moved = [r for r in records if r["preset"] == preset and r["kind"] == "misaligned"]
        dice = np.array([r["dice"] for r in plain])
        seconds = np.array([r["seconds"] for r in plain])
        recovered = sum(r["recovered"] for r in moved)
        median = float(np.median([r["mean_mm"] for r in moved])) if moved else float("nan")
        lines.append(f"| {preset} | {dice.mean():.3f} +- {dice.std():.3f} | {seconds.mean():.1f} +- {seconds.std():.1f} | "
                     f"{recovered} / {len(moved)} | {median:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="8-9,9-10,10-8")
    parser.add_argument("--presets", default="affine-fast,benchmarks/configs/affine-learned.json,"
                                             "benchmarks/configs/affine-learned-refined.json")
    parser.add_argument("--misalignments", type=int, default=20)
    parser.add_argument("--degrees", type=float, default=30.0)
    parser.add_argument("--mm", type=float, default=40.0)
    parser.add_argument("--tolerance", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="benchmarks/results/learned_affine")
    args = parser.parse_args(argv)
    from regsuite.engine.registration import register

    pairs = suites.checked_brain_pairs(parser, args.pairs, Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = {}  # subject -> (T1, labels), each read once for all its pairs
    for case in suites.brain_cases(Path(args.data), pairs=pairs):
        fixed, fixed_labels, moving_labels = suites.read_brain_case(case)
        i, j = (int(n) for n in case.pair.split("-"))
        images.setdefault(i, (fixed, fixed_labels))
        images.setdefault(j, (sitk.ReadImage(case.moving, sitk.sitkFloat32), moving_labels))
    records: list[dict] = []
    unperturbed: dict[tuple[str, tuple[int, int]], sitk.Transform] = {}

    def save() -> None:
        (out / "affine.json").write_text(json.dumps(records, indent=2) + "\n")

    for preset in args.presets.split(","):
        for i, j in pairs:
            started = time.perf_counter()
            result = register(images[i][0], images[j][0], preset, threads=args.threads, device="cpu")
            seconds = time.perf_counter() - started
            unperturbed[(preset, (i, j))] = result.transform
            dice, _ = metrics.mean_dice(images[i][1], images[j][1], result.transform)
            records.append({"preset": preset, "kind": "pair", "pair": f"{i}-{j}", "dice": round(dice, 4),
                            "seconds": round(seconds, 2)})
            print(json.dumps(records[-1]), flush=True)
            save()
    for n, (rotation, shift) in enumerate(misalignments(args.misalignments, args.degrees, args.mm)):
        i, j = pairs[n % len(pairs)]
        fixed, moving = images[i][0], images[j][0]
        q = rigid(rotation, shift, brain_center(moving))
        moved = moved_image(moving, q)
        brain = np.argwhere(sitk.GetArrayViewFromImage(fixed) > 0)[::7][:, ::-1]
        points = np.array([fixed.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in brain[::40]])
        inverse = q.GetInverse()
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rotation) - 1) / 2))))
        for preset in args.presets.split(","):
            started = time.perf_counter()
            try:
                result = register(fixed, moved, preset, threads=args.threads, device="cpu")
                error = None
            except Exception as failure:  # a diverged optimisation counts as not recovered
                result, error = None, str(failure).splitlines()[0]
            seconds = time.perf_counter() - started
            record = {"preset": preset, "kind": "misaligned", "index": n, "pair": f"{i}-{j}",
                      "angle_degrees": round(angle, 2), "shift_mm": round(float(np.linalg.norm(shift)), 2),
                      "seconds": round(seconds, 2)}
            if result is None:
                record.update({"error": error, "mean_mm": float("inf"), "max_mm": float("inf"), "recovered": False})
            else:
                expected = mapped(inverse, mapped(unperturbed[(preset, (i, j))], points))
                distance = np.linalg.norm(mapped(result.transform, points) - expected, axis=1)
                record.update({"mean_mm": round(float(distance.mean()), 3), "max_mm": round(float(distance.max()), 3),
                               "recovered": bool(distance.mean() <= args.tolerance)})
            records.append(record)
            print(json.dumps(record), flush=True)
            save()
    text = summary(records, args.tolerance)
    (out / "affine.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
