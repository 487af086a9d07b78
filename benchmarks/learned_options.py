"""Learned-registration options against the baseline network: recursive cascades and inverse
consistency, on the learned models' validation pairs.

For every pair (fixed <- moving, default 8-9, 9-10, 10-8) and every model of ``--models``
(default the shipped ``brain-t1-voxelmorph``), the preset ``brain-mri-voxelmorph`` with its
network stage swapped for the model and ``"cascade": k`` runs for each ``k`` of ``--cascades``
(default 1, 2, 3), in this process. Each transform is scored exactly like the brain suite of
``benchmarks/run.py`` (:func:`benchmarks.suites.score_brain_transform`: mean Dice over the labels
present in both maps, SD of log|J| and % J <= 0 inside the fixed brain). The inverse-consistency
error is measured on the model's canonical grid after the same affine: the network (cascaded the
same way) run on (fixed, moving) gives ``phi_AB``, run on (moving, fixed) gives ``phi_BA``, and
the error is the mean of ``|phi_AB(phi_BA(x)) - x|`` over the fixed brain (canonical fixed image
above 0.05); the written transform itself is exactly invertible (``exp(-v)``), this measures how
far the two directions the network proposes are from being each other's inverse.

Run from the repository root::

    python benchmarks/learned_options.py --threads 2 --out benchmarks/results/learned_options

Writes ``options.json`` (rewritten after every run) and ``options.md`` into ``--out``. Times are
in-process: ``seconds`` the whole registration (affine stages included), ``network_seconds`` the
network stage alone (its forward passes and the composition of the cascade).

Example:
    >>> parse_ints("1, 2,3")
    [1, 2, 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "RegistrationSuite")]

from benchmarks import suites  # noqa: E402


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def preset_with(model: str, cascade: int) -> dict:
    from regsuite.engine.config import load_preset

    config = load_preset("brain-mri-voxelmorph").to_dict()
    network = config["stages"][-1]
    network.update({"network": model, "cascade": cascade})
    config["name"] = f"{model}-cascade-{cascade}"
    return config


def consistency(model_name: str, result, fixed: sitk.Image, moving: sitk.Image, cascade: int) -> float:
    from regsuite.engine.transforms.dense import resample_field
    from regsuite.learning.consistency import inverse_consistency_error
    from regsuite.learning.inference import CanonicalPair, predict_cascade
    from regsuite.learning.models import load_model

    model = load_model(model_name)
    pair = CanonicalPair.build(model, fixed, moving, result.parts[0])
    swapped = CanonicalPair(pair.grid, pair.moving, pair.fixed)
    fields = []
    for canonical in (pair, swapped):
        chain = predict_cascade(model, canonical, cascade)
        with torch.no_grad():
            fields.append(resample_field(chain.displacement(), chain.grid, pair.grid))
    return inverse_consistency_error(fields[0], fields[1], pair.grid, pair.fixed > 0.05)


def summary(records: list[dict]) -> str:
    lines = ["| model | k | mean Dice | SD log\\|J\\| | J<=0 % | inverse-consistency error mm | time s | network s |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["model"], r["cascade"]) for r in records if "dice" in r})
    for model, k in keys:
        rows = [r for r in records if r["model"] == model and r["cascade"] == k and "dice" in r]

        def stat(key: str, digits: int) -> str:
            values = np.array([r[key] for r in rows], dtype=float)
            return f"{values.mean():.{digits}f} +- {values.std():.{digits}f}"

        lines.append(f"| {model} | {k} | {stat('dice', 3)} | {stat('sd_log_jac', 3)} | "
                     f"{stat('folding_percent', 3)} | {stat('ic_error_mm', 2)} | {stat('seconds', 1)} | "
                     f"{stat('network_seconds', 2)} |")
    lines += ["", "Per pair: Dice / SD log|J| / inverse-consistency error (mm)", "",
              "| model | k | " + " | ".join(sorted({r['pair'] for r in records})) + " |",
              "|---|---|" + "---|" * len({r['pair'] for r in records})]
    for model, k in keys:
        cells = []
        for pair in sorted({r["pair"] for r in records}):
            match = [r for r in records if r["model"] == model and r["cascade"] == k and r["pair"] == pair]
            cells.append(f"{match[0]['dice']:.3f} / {match[0]['sd_log_jac']:.3f} / {match[0]['ic_error_mm']:.2f}"
                         if match and "dice" in match[0] else "-")
        lines.append(f"| {model} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="8-9,9-10,10-8")
    parser.add_argument("--models", default="brain-t1-voxelmorph")
    parser.add_argument("--cascades", default="1,2,3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="benchmarks/results/learned_options")
    args = parser.parse_args(argv)
    from regsuite.engine.registration import register

    pairs = suites.checked_brain_pairs(parser, args.pairs, Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for case in suites.brain_cases(Path(args.data), pairs=pairs):
        fixed, fixed_labels, moving_labels = suites.read_brain_case(case)
        moving = sitk.ReadImage(case.moving, sitk.sitkFloat32)
        for model in args.models.split(","):
            for k in parse_ints(args.cascades):
                record = {"pair": case.pair, "model": model, "cascade": k}
                started = time.perf_counter()
                result = register(fixed, moving, preset_with(model, k), threads=args.threads, device="cpu")
                record["seconds"] = round(time.perf_counter() - started, 2)
                record["network_seconds"] = result.metrics["stages"][-1].get("seconds")
                scores = suites.score_brain_transform(result.transform, fixed, fixed_labels, moving_labels)
                record.update({key: value for key, value in scores.items() if key != "dice_per_label"})
                record["ic_error_mm"] = round(consistency(model, result, fixed, moving, k), 4)
                records.append(record)
                print(json.dumps(record), flush=True)
                (out / "options.json").write_text(json.dumps(records, indent=2) + "\n")
    (out / "options.md").write_text(summary(records))
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
