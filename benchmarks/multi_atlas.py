"""Multi-atlas segmentation, leave-one-out on OASIS-TRT-20 subjects 1-10 (99-label DKT31+aseg maps).

Each subject is segmented from the other nine with ``regsuite.population.segment``'s own tasks:
90 registrations (target = fixed, atlas = moving, preset ``--preset``), then one fusion per
target and method. Scores: mean Dice over the labels present in the target's manual map and
the fused map, per fusion method, against the best and the mean single atlas (the same
registrations' warped labels scored alone).

Run from the repository root (the registrations are kept under ``--out`` and skipped when the
command is repeated, so an interrupted run resumes)::

    python benchmarks/multi_atlas.py --preset brain-mri-coarse --methods majority,weighted,joint \
        --out benchmarks/results/multi_atlas
    python benchmarks/multi_atlas.py --preset brain-mri-coarse --methods majority,staple \
        --name results-staple --out benchmarks/results/multi_atlas      # STAPLE is slow: its own run
    python benchmarks/multi_atlas.py --subjects 1,2,3 --methods majority --preset affine-fast --out /tmp/mas
    python benchmarks/multi_atlas.py --workers 2 --threads-per-worker 1 --out ...      # a Dask LocalCluster
    python benchmarks/multi_atlas.py --scheduler tcp://host:8786 --out ...             # a running scheduler

Writes ``results.json`` (every target: per-atlas and per-method Dice, seconds) and
``results.md`` (the table on BENCHMARKS.md); ``--name`` changes that name (e.g. for a run of
STAPLE alone on a few ``--targets``, the slowest fusion).

Example:
    >>> summarize({1: {"single": {"a": 0.5, "b": 0.7}, "fused": {"majority": 0.8}}})["majority"]
    0.8
    >>> summarize({1: {"single": {"a": 0.5, "b": 0.7}, "fused": {"majority": 0.8}}})["best single atlas"]
    0.7
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
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


def subject_folder(data: Path, subject: int) -> Path:
    return data / "oasis_trt20" / f"OASIS-TRT-20-{subject}"


def mean_dice(reference: str, labels: str) -> float:
    """Mean Dice over the labels > 0 present in both maps (the brain suite's protocol)."""

    from regsuite.evaluation.overlap import dice_per_label
    from regsuite.io.images import read_label_image

    values = dice_per_label(read_label_image(reference), read_label_image(labels))
    return float(np.mean(list(values.values())))


def summarize(per_target: dict) -> dict:
    """Mean over targets of: each fusion method, the best single atlas and the mean single atlas."""
    rows: dict = {}
    methods = sorted({m for target in per_target.values() for m in target["fused"]})
    for method in methods:
        rows[method] = float(np.mean([t["fused"][method] for t in per_target.values() if method in t["fused"]]))
    rows["best single atlas"] = float(np.mean([max(t["single"].values()) for t in per_target.values()]))
    rows["mean single atlas"] = float(np.mean([np.mean(list(t["single"].values())) for t in per_target.values()]))
    return rows


def main(argv: list[str] | None = None) -> int:
    from regsuite.population.atlases import Atlas
    from regsuite.population.runner import make_runner
    from regsuite.population.segment import FUSION_METHODS, fusion_task, registration_tasks
    from regsuite.population.workspace import open_workspace, preset_argument

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="brain-mri")
    parser.add_argument("--subjects", default="1,2,3,4,5,6,7,8,9,10")
    parser.add_argument("--methods", default=",".join(FUSION_METHODS))
    parser.add_argument("--targets", help="segment only these subjects (default: every subject); the atlases are "
                        "still all the other subjects")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads-per-worker", type=int)
    parser.add_argument("--scheduler")
    parser.add_argument("--name", default="results", help="name of the result files (<name>.json, <name>.md)")
    parser.add_argument("--register-only", action="store_true", help="stop after the registrations")
    args = parser.parse_args(argv)

    data, out = Path(args.data), Path(args.out).resolve()
    subjects = [int(s) for s in args.subjects.split(",")]
    targets = [int(s) for s in args.targets.split(",")] if args.targets else subjects
    methods = [m for m in args.methods.split(",") if m]
    atlases = {s: Atlas(str(subject_folder(data, s) / IMAGE), str(subject_folder(data, s) / LABELS), f"subject-{s}")
               for s in subjects}
    preset = preset_argument(args.preset)
    works, registrations = {}, []
    for target in targets:
        others = [atlases[s] for s in subjects if s != target]
        manifest = {"workflow": "segment-benchmark", "target": atlases[target].image, "preset": preset,
                    "atlases": [[a.name, a.image, a.labels] for a in others]}
        works[target] = open_workspace(out / f"target-{target}", manifest, resume=True)
        registrations += [replace(t, key=f"{target}-{t.key}")
                          for t in registration_tasks(atlases[target].image, others, works[target], preset)]

    def progress(done: int, total: int, outcome) -> None:
        seconds = (outcome.result or {}).get("seconds")
        print(f"[{done}/{total}] {outcome.key}: {outcome.status}" + (f" ({seconds:.1f} s)" if seconds else "")
              + (f" {outcome.error}" if outcome.error else ""), flush=True)

    start = time.perf_counter()
    with make_runner(args.workers, args.threads_per_worker, args.scheduler) as runner:
        print(f"running on: {runner.description}", flush=True)
        registered = runner.run(registrations, progress)
        register_wall = time.perf_counter() - start
        if args.register_only:
            return 0
        fusions = []
        for target in targets:
            others = [atlases[s] for s in subjects if s != target]
            for method in methods:
                output = str(works[target] / f"fused-{method}.nii.gz")
                task = fusion_task(atlases[target].image, others, works[target], method, output, key=f"fuse-{method}")
                fusions.append(replace(task, key=f"target-{target}-{task.key}"))
        fused = runner.run(fusions, progress)
    per_target: dict = {}
    for target in targets:
        others = [s for s in subjects if s != target]
        reference = atlases[target].labels
        single = {f"subject-{s}": mean_dice(reference, str(works[target] / "atlases" / f"subject-{s}" / "labels.nii.gz"))
                  for s in others}
        fusion_scores = {m: mean_dice(reference, str(works[target] / f"fused-{m}.nii.gz")) for m in methods}
        per_target[target] = {"single": single, "fused": fusion_scores}
        print(f"target {target}: best single {max(single.values()):.4f}, mean single {np.mean(list(single.values())):.4f}, "
              + ", ".join(f"{m} {v:.4f}" for m, v in fusion_scores.items()), flush=True)
    fusion_seconds = {o.key: (o.result or {}) for o in fused}
    summary = summarize(per_target)
    results = {"preset": args.preset, "subjects": subjects, "targets": targets, "methods": methods, "summary": summary,
               "per_target": per_target, "registration_wall_seconds": register_wall,
               "registration_seconds": {o.key: (o.result or {}).get("seconds") for o in registered},
               "fusion": fusion_seconds, "runner": runner.description,
               "command": "python benchmarks/multi_atlas.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    name = args.name
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    lines = [f"| method | mean Dice (labels present in both, leave-one-out, targets {args.targets or 'all'}) |",
             "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in summary.items()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
