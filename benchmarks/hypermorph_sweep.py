"""HyperMorph lambda sweep: Dice and smoothness of ``brain-mri-hypermorph`` against its lambda.

Each brain pair is registered ONCE with the preset (affine stages + HyperMorph network, in this
process, at the preset's own lambda); a
:class:`regsuite.learning.session.LambdaSession` built from that result then gives the full
transform (the same affine, the network's field for the new lambda) for every lambda at the cost
of one forward pass and one field export. Every transform is scored exactly like the brain suite
of ``benchmarks/run.py`` (:func:`benchmarks.suites.score_brain_transform`: mean Dice over the
labels present in both maps, SD of log|J| and % J <= 0 inside the fixed brain).

Run from the repository root (default: the learned models' validation pairs 8-9, 9-10, 10-8,
fixed-moving, and lambdas 0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1)::

    python benchmarks/hypermorph_sweep.py --threads 2 --out benchmarks/results/hypermorph_sweep
    python benchmarks/hypermorph_sweep.py --pairs 8-9 --lambdas 0,0.5,1 --device cuda --out /tmp/sweep

Writes into ``--out``: ``sweep.json`` (every pair and lambda, per-label Dice included; rewritten
after each pair, so an interrupted sweep keeps its finished pairs), ``sweep.md`` (mean ± sd over
the pairs per lambda, then per pair) and ``sweep.png`` (Dice and SD log|J| against lambda).

Times: ``register_seconds`` is the one in-process registration per pair (no CLI start-up, so
shorter than the benchmark's ``seconds``), ``session_seconds`` building the session, ``seconds``
per lambda the new transform alone (scoring excluded). ``session_vs_engine_max_mm`` checks the
shortcut: the largest distance, over the fixed grid, between the engine's own result and the
session's transform at the preset's lambda (should be about 0; ``--no-check`` skips it).
The same pairs through the command line, one full registration per lambda, as a cross-check of
one lambda: ``python benchmarks/run.py --suite brain --brain-pairs validation --tools
regsuite@brain-mri-hypermorph:0.25``.

Example:
    >>> parse_lambdas("0, 0.25,1")
    [0.0, 0.25, 1.0]
    >>> summary_rows([{"pair": "8-9", "rows": [{"lambda": 0.5, "dice": 0.6, "sd_log_jac": 0.2}]},
    ...               {"pair": "9-10", "rows": [{"lambda": 0.5, "dice": 0.8, "sd_log_jac": 0.4}]}])[0]["dice_mean"]
    0.7
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, report, suites  # noqa: E402

DEFAULT_LAMBDAS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)
DEFAULT_PRESET = "brain-mri-hypermorph"
#: per-lambda measures averaged over the pairs (record key, table header, decimals)
MEASURES = (("dice", "mean Dice", 4), ("sd_log_jac", "SD log\\|J\\|", 3), ("folding_percent", "J<=0 %", 3),
            ("seconds", "s per lambda", 2))


def parse_lambdas(text: str) -> list[float]:
    """Comma-separated lambdas, each in [0, 1]; ``ValueError`` with a one-line message otherwise."""
    values = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"lambda {item!r} is not a number") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"lambda {item!r} is not in [0, 1]")
        values.append(value)
    if not values:
        raise ValueError("no lambda given")
    return values


def sweep_pair(case: suites.Case, lambdas: list[float], preset: str, threads: int, device: str,
               check: bool = True) -> dict:
    """Register ``case`` once with ``preset`` and score the session's transform at every lambda."""
    from regsuite.engine.config import load_preset  # noqa: PLC0415
    from regsuite.engine.registration import register, resolve_device  # noqa: PLC0415
    from regsuite.io.images import read_image  # noqa: PLC0415
    from regsuite.learning.session import LambdaSession  # noqa: PLC0415

    config = load_preset(preset)
    target = resolve_device(device)
    fixed = read_image(case.fixed, "fixed image")  # as the command line reads them
    moving = read_image(case.moving, "moving image")
    start = time.perf_counter()
    result = register(fixed, moving, config, device=device, threads=threads)
    out: dict = {"pair": case.pair, "register_seconds": time.perf_counter() - start,
                 "preset_lambda": config.stages[-1].hyper_lambda}
    start = time.perf_counter()
    session = LambdaSession.from_registration(result, fixed, moving, device=target)
    out["session_seconds"] = time.perf_counter() - start
    scored_fixed, fixed_labels, moving_labels = suites.read_brain_case(case)
    if check and out["preset_lambda"] is not None:
        ours = metrics.dense_displacement(session.transform(out["preset_lambda"]), scored_fixed)
        engine = metrics.dense_displacement(result.transform, scored_fixed)
        out["session_vs_engine_max_mm"] = float(np.sqrt(((ours - engine) ** 2).sum(axis=-1)).max())
        del ours, engine
    rows = []
    for lam in lambdas:
        start = time.perf_counter()
        transform = session.transform(lam)
        seconds = time.perf_counter() - start
        row = {"lambda": lam, "seconds": seconds}
        row.update(suites.score_brain_transform(transform, scored_fixed, fixed_labels, moving_labels))
        rows.append(row)
        print(f"[{case.pair}] lambda {lam:g}: Dice {row['dice']:.4f}, SD log|J| {row['sd_log_jac']:.3f}, "
              f"J<=0 {row['folding_percent']:.3f} %", flush=True)
    out["rows"] = rows
    return out


def summary_rows(pairs: list[dict]) -> list[dict]:
    """Per lambda: mean and sample sd over the pairs of each measure in :data:`MEASURES`."""
    done = [p for p in pairs if p.get("rows")]
    lambdas = sorted({row["lambda"] for p in done for row in p["rows"]})
    out = []
    for lam in lambdas:
        rows = [row for p in done for row in p["rows"] if row["lambda"] == lam]
        entry: dict = {"lambda": lam, "pairs": len(rows)}
        for key, _, _ in MEASURES:
            values = [row[key] for row in rows if isinstance(row.get(key), (int, float))]
            if values:
                entry[f"{key}_mean"] = round(float(np.mean(values)), 10)
                entry[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def markdown(payload: dict) -> str:
    """The ``sweep.md`` text: the mean table, the per-pair table, the per-pair times and checks."""
    pairs = [p for p in payload["pairs"] if p.get("rows")]
    names = [p["pair"] for p in pairs]
    lines = ["# HyperMorph lambda sweep", "",
             f"Preset `{payload['preset']}` (its own lambda: {payload.get('preset_lambda')}), registered once per "
             f"pair, the lambda changed with `LambdaSession`; pairs (fixed-moving): {', '.join(names) or '-'}; "
             f"threads {payload.get('threads')}, device {payload.get('device')}.", "",
             "Mean ± sd over the pairs:", "",
             "| lambda | pairs | " + " | ".join(header for _, header, _ in MEASURES) + " |",
             "|---|---|" + "---|" * len(MEASURES)]
    for lam in sorted({row["lambda"] for p in pairs for row in p["rows"]}):
        rows = [row for p in pairs for row in p["rows"] if row["lambda"] == lam]
        cells = [report.summarize(rows, key, decimals) for key, _, decimals in MEASURES]
        lines.append(f"| {lam:g} | {len(rows)} | " + " | ".join(cells) + " |")
    if pairs:
        lines += ["", "Per pair, Dice / SD log\\|J\\| / J<=0 %:", "",
                  "| lambda | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for lam in sorted({row["lambda"] for p in pairs for row in p["rows"]}):
            cells = []
            for p in pairs:
                row = next((r for r in p["rows"] if r["lambda"] == lam), None)
                cells.append("-" if row is None else
                             f"{row['dice']:.4f} / {row['sd_log_jac']:.3f} / {row['folding_percent']:.3f}")
            lines.append(f"| {lam:g} | " + " | ".join(cells) + " |")
        lines += ["", "| pair | registration s | session s | session vs engine at the preset's lambda, max mm |",
                  "|---|---|---|---|"]
        for p in pairs:
            check = p.get("session_vs_engine_max_mm")
            lines.append(f"| {p['pair']} | {p['register_seconds']:.1f} | {p['session_seconds']:.1f} | "
                         f"{'-' if check is None else f'{check:.2e}'} |")
    for p in payload["pairs"]:
        if p.get("error"):
            lines.append(f"\n- {p['pair']} failed: {p['error']}")
    lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> Optional[str]:
    """``sweep.png``: mean Dice and mean SD log|J| against lambda (thin lines: the pairs)."""
    pairs = [p for p in payload["pairs"] if p.get("rows")]
    if not pairs:
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    summary = summary_rows(pairs)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (key, label) in zip(axes, (("dice", "mean Dice (99 labels)"), ("sd_log_jac", "SD log|J| (brain)"))):
        for p in pairs:
            rows = sorted(p["rows"], key=lambda r: r["lambda"])
            ax.plot([r["lambda"] for r in rows], [r[key] for r in rows], color="grey", alpha=0.5, lw=1,
                    label="pairs" if p is pairs[0] else None)
        ax.plot([s["lambda"] for s in summary], [s[f"{key}_mean"] for s in summary], color="tab:blue", marker="o",
                lw=2, label="mean")
        if payload.get("preset_lambda") is not None:
            ax.axvline(payload["preset_lambda"], color="tab:red", ls="--", lw=1, label="preset's lambda")
        ax.set_xlabel("lambda")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{payload['preset']}: lambda sweep on {', '.join(p['pair'] for p in pairs)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def write(out: Path, payload: dict) -> None:
    """``sweep.json``, ``sweep.md`` (each written atomically) and ``sweep.png``."""
    out.mkdir(parents=True, exist_ok=True)
    payload["summary"] = summary_rows(payload["pairs"])
    for name, text in (("sweep.json", json.dumps(payload, indent=2, default=str)), ("sweep.md", markdown(payload))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    plot(payload, out / "sweep.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="validation",
                        help="fixed-moving subject pairs, comma-separated, or a set name of benchmarks/suites.py "
                             "(default: validation = 8-9,9-10,10-8)")
    parser.add_argument("--lambdas", default=",".join(f"{v:g}" for v in DEFAULT_LAMBDAS),
                        help="comma-separated lambdas in [0, 1] (default: %(default)s)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="a preset ending with a HyperMorph network stage")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "hypermorph_sweep")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the session's transform with the engine's result")
    args = parser.parse_args(argv)
    try:
        pairs = suites.parse_brain_pairs(args.pairs)
        lambdas = parse_lambdas(args.lambdas)
    except ValueError as error:
        parser.error(str(error))
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not args.data.is_dir():
        parser.error(f"data folder {args.data} not found (use --data)")
    from regsuite.engine.config import load_preset  # noqa: PLC0415

    config = load_preset(args.preset)
    if not (config.stages[-1].is_network and config.stages[-1].hyper_lambda is not None):
        parser.error(f"--preset: {args.preset} does not end with a HyperMorph network stage")
    machine = report.machine_info(REPO)
    payload: dict = {"preset": args.preset, "preset_lambda": config.stages[-1].hyper_lambda, "lambdas": lambdas,
                     "threads": args.threads, "device": args.device, "machine": machine, "pairs": []}
    for case in suites.cases("brain", args.data, None, pairs):
        print(f"[{case.pair}] registering with {args.preset} ...", flush=True)
        try:
            entry = sweep_pair(case, lambdas, args.preset, args.threads, args.device, check=not args.no_check)
        except Exception as error:  # noqa: BLE001 - a failed pair is recorded, the others still run
            entry = {"pair": case.pair, "error": f"{type(error).__name__}: {error}".splitlines()[0]}
            print(f"[{case.pair}] failed: {entry['error']}", flush=True)
        payload["pairs"].append(entry)
        payload["implementations"] = dict(metrics.IMPLEMENTATION)
        write(args.out, payload)
    print(f"results in {args.out / 'sweep.md'}")
    return 0 if all(not p.get("error") for p in payload["pairs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
