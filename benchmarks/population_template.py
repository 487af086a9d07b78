"""Population template of OASIS-TRT-20 subjects 1-10 with ``regsuite.population.template``.

Builds the template (affine mean, then ``--iterations`` deformable iterations with ``--preset``)
and reports what the issue asks: the update's magnitude per iteration (mean |v| of the mean
velocity over the template's foreground, mm, and the mean affine's mean displacement), the
sharpness (gradient energy) of the affine mean and of each iteration's template, the wall time,
and a leave-one-out label check: for each subject, the other nine subjects' labels brought to
the template (``to_template``) are majority-fused there and carried back to the subject
(``from_template``, nearest neighbour); mean Dice over the 99 DKT31+aseg labels present in both.

Run from the repository root (a killed run continues: every task is stamped)::

    python benchmarks/population_template.py --out benchmarks/results/template --iterations 3
    python benchmarks/population_template.py --out /tmp/t2 --iterations 1 --workers 2 --threads-per-worker 1

Writes ``--out/results.json`` and ``--out/results.md`` beside the template's own folder
``--out/template``.

Example:
    >>> folder_name(3)
    'OASIS-TRT-20-3'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

LABELS = "labels.DKT31.manual+aseg.nii.gz"
IMAGE = "t1weighted_brain.nii.gz"


def folder_name(subject: int) -> str:
    return f"OASIS-TRT-20-{subject}"


def leave_one_out_dice(template_dir: Path, names: list[str], labels: dict[str, str]) -> dict[str, float]:
    """Per subject: Dice of the others' labels fused in template space and carried back to it."""
    import SimpleITK as sitk

    from regsuite.evaluation.overlap import dice_per_label
    from regsuite.io.images import read_label_image
    from regsuite.io.transforms import read_transform
    from regsuite.population.fusion import fuse_labels

    in_template = {n: sitk.ReadImage(str(template_dir / "subjects" / n / "labels_in_template.nii.gz")) for n in names}
    scores = {}
    for name in names:
        others = [sitk.GetArrayFromImage(in_template[o]) for o in names if o != name]
        fused = sitk.GetImageFromArray(fuse_labels(others, "majority").labels)
        fused.CopyInformation(in_template[name])
        own = read_label_image(labels[name])
        back = sitk.Resample(fused, own, read_transform(str(template_dir / "subjects" / name / "from_template.h5")),
                             sitk.sitkNearestNeighbor, 0, fused.GetPixelID())
        values = dice_per_label(own, sitk.Cast(back, own.GetPixelID()))
        scores[name] = float(np.mean(list(values.values())))
        print(f"{name}: leave-one-out Dice {scores[name]:.4f}", flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    from regsuite.population.atlases import Atlas
    from regsuite.population.runner import make_runner
    from regsuite.population.template import build_template

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="brain-mri-coarse")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--subjects", default="1,2,3,4,5,6,7,8,9,10")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads-per-worker", type=int)
    parser.add_argument("--no-labels", action="store_true", help="skip the label propagation check")
    args = parser.parse_args(argv)

    data, out = Path(args.data) / "oasis_trt20", Path(args.out)
    subjects = [int(s) for s in args.subjects.split(",")]
    items = [Atlas(str(data / folder_name(s) / IMAGE), "" if args.no_labels else str(data / folder_name(s) / LABELS),
                   f"subject-{s}") for s in subjects]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with make_runner(args.workers, args.threads_per_worker) as runner:
        print(f"running on: {runner.description}", flush=True)
        summary = build_template(items, str(out / "template"), iterations=args.iterations, preset=args.preset,
                                 resume=True, runner=runner,
                                 progress=lambda d, n, o: print(f"[{d}/{n}] {o.key} {o.status}", flush=True))
    wall = time.perf_counter() - start
    results = {"preset": args.preset, "subjects": subjects, "iterations": summary["iterations"],
               "wall_seconds": wall, "runner": summary["runner"],
               "command": "python benchmarks/population_template.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if not args.no_labels:
        names = [item.name for item in items]
        results["leave_one_out_dice"] = leave_one_out_dice(out / "template", names,
                                                           {item.name: item.labels for item in items})
        results["leave_one_out_dice_mean"] = float(np.mean(list(results["leave_one_out_dice"].values())))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = ["| iteration | mean velocity update (mm) | mean affine update (mm) | sharpness | seconds |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['iteration']} | {r['velocity_mean_mm']:.3f} | {r['affine_mean_mm']:.3f} | {r['sharpness']:.4g} | "
              f"{r['seconds']:.0f} |" for r in summary["iterations"]]
    lines.append(f"\nwall time {wall / 60:.1f} min ({summary['runner']})")
    if "leave_one_out_dice_mean" in results:
        lines.append(f"leave-one-out label Dice through the template: {results['leave_one_out_dice_mean']:.4f}")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
