"""Child-process entry point: run ONE tool on ONE pair and write ``run.json`` in its folder.

The parent starts a fresh interpreter for every (tool, pair) so that peak memory
(``ru_maxrss``) belongs to that run alone and no library state leaks between tools.

Example (what ``benchmarks/run.py`` executes)::

    python benchmarks/_worker.py --tool greedy --suite brain --fixed F --moving M \
        --out-dir benchmarks/results/runs/brain/1-2/greedy --threads 2
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.peers import MODULES  # noqa: E402
from benchmarks.peers._common import peak_rss_mb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", required=True, choices=sorted(MODULES))
    parser.add_argument("--suite", required=True)
    parser.add_argument("--fixed", required=True)
    parser.add_argument("--moving", required=True)
    parser.add_argument("--fixed-mask")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", help="regsuite only: preset name or JSON file instead of the suite's")
    parser.add_argument("--lambda", dest="hyper_lambda", type=float,
                        help="regsuite only: HyperMorph regularization weight, passed as the CLI's --lambda")
    args = parser.parse_args(argv)
    if args.tool != "regsuite" and (args.preset or args.hyper_lambda is not None):
        parser.error("--preset and --lambda are for the regsuite tool only")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict = {"tool": args.tool, "suite": args.suite}
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.peers.{MODULES[args.tool]}")
        extra = {"preset": args.preset} if args.preset else {}
        if args.hyper_lambda is not None:
            extra["hyper_lambda"] = args.hyper_lambda
        result = module.run(args.fixed, args.moving, str(out_dir), fixed_mask=args.fixed_mask,
                            threads=args.threads, suite=args.suite, **extra)
        record.update(result)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - every failure is recorded, not raised
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        traceback.print_exc()
    record["child_seconds"] = time.perf_counter() - start
    record["child_peak_rss_mb"] = peak_rss_mb()
    tmp = out_dir / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(out_dir / "run.json")
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
