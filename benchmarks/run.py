"""Run RegistrationSuite and peer tools on the benchmark suites and write the results.

Usage (from the repository root)::

    python benchmarks/run.py --suite brain --pairs 3 --tools regsuite,greedy,ants,elastix,sitk \
        --threads 2 --out benchmarks/results
    python benchmarks/run.py --suite brain --brain-pairs confirm --tools regsuite,greedy \
        --regsuite-preset candidate.json --out benchmarks/results/confirm

Each (tool, pair) runs in its own fresh child process (``benchmarks/_worker.py``) with
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` set to
``--threads``; the child reports its registration time and peak resident memory. The parent then
scores the transform (``benchmarks/suites.py``), checks each tool's transform conversion on the
first pair of each suite (``benchmarks/verify.py``) and writes ``results.json``, ``results.md``
and PNG plots into ``--out``. ``results.json`` is rewritten after every run, so an interrupted
benchmark keeps what it finished; ``--reuse`` skips runs whose ``run.json`` already says ok.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, report, suites, verify  # noqa: E402
from benchmarks.peers import MODULES, TOOLS  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
#: keys of a run record that are too bulky for the summary tables (kept in results.json)
BULKY = ("dice_per_label",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RegistrationSuite benchmark against peer tools.")
    parser.add_argument("--suite", default="brain", choices=[*suites.SUITES, "all"])
    parser.add_argument("--pairs", type=int, default=None, help="use the first N pairs of each suite")
    parser.add_argument("--brain-pairs", default=None, metavar="PAIRS",
                        help="brain pairs to run instead of the default list: 'tune', 'confirm' (the subject "
                             "split of benchmarks/suites.py) or FIXED-MOVING subjects, e.g. 6-8,7-9")
    parser.add_argument("--regsuite-preset", default=None, metavar="PRESET",
                        help="preset name or JSON file for the regsuite tool (default: the suite's preset)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, from {', '.join(sorted(MODULES))}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per run")
    parser.add_argument("--verify", choices=["first", "all", "none"], default="first",
                        help="check transform conversions on the first pair of each suite, all pairs, or none")
    parser.add_argument("--no-mask", default="", metavar="TOOLS",
                        help="comma-separated tools that get no fixed mask where the suite has one "
                             "(e.g. elastix: its default B-spline stage folds with the lung mask)")
    parser.add_argument("--reuse", action="store_true", help="keep runs whose run.json says ok")
    parser.add_argument("--dry-run", action="store_true", help="print the child commands and stop")
    args = parser.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    args.no_mask = {t.strip() for t in args.no_mask.split(",") if t.strip()}
    unknown = [t for t in [*args.tools, *sorted(args.no_mask)] if t not in MODULES]
    if unknown:
        parser.error(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(sorted(MODULES))}")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not args.data.is_dir():
        parser.error(f"data folder {args.data} not found (use --data)")
    if args.brain_pairs is not None:
        try:
            args.brain_pairs = suites.parse_brain_pairs(args.brain_pairs)
        except ValueError as error:
            parser.error(f"--brain-pairs: {error}")
    if args.regsuite_preset is not None:
        preset = Path(args.regsuite_preset)
        if args.regsuite_preset.lower().endswith(".json"):
            if not preset.is_file():
                parser.error(f"--regsuite-preset: preset file {preset} not found")
            args.regsuite_preset = str(preset.resolve())  # the child runs in the repository root
    return args


def child_environment(threads: int) -> dict:
    """The environment of a run: thread limits and the package sources on PYTHONPATH."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        env[name] = str(threads)
    paths = [str(REPO), str(REPO / "RegistrationSuite")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def child_command(tool: str, case: suites.Case, run_dir: Path, threads: int, use_mask: bool = True,
                  preset: str | None = None) -> list[str]:
    """The worker invocation for one (tool, case); ``use_mask=False`` leaves the fixed mask out;
    ``preset`` (regsuite only) replaces the suite's preset."""
    command = [sys.executable, str(REPO / "benchmarks" / "_worker.py"), "--tool", tool, "--suite", case.suite,
               "--fixed", case.fixed, "--moving", case.moving, "--out-dir", str(run_dir),
               "--threads", str(threads)]
    if case.fixed_mask and use_mask:
        command += ["--fixed-mask", case.fixed_mask]
    if preset and tool == "regsuite":
        command += ["--preset", preset]
    return command


def run_child(tool: str, case: suites.Case, run_dir: Path, threads: int, timeout: float,
              use_mask: bool = True, preset: str | None = None) -> dict:
    """Run one registration in a fresh process group; return its ``run.json`` record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    result_file = run_dir / "run.json"
    result_file.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]  # other work on the machine skews the timings
    start = time.perf_counter()
    with open(run_dir / "child.log", "w") as log:
        child = subprocess.Popen(child_command(tool, case, run_dir, threads, use_mask, preset), stdout=log,
                                 stderr=subprocess.STDOUT, env=child_environment(threads), cwd=str(REPO),
                                 start_new_session=True)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return {"status": "failed", "error": f"timed out after {timeout:.0f} s",
                    "child_wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if not result_file.is_file():
        return {"status": "failed", "error": f"child exited with status {child.returncode} without a result "
                f"(see {run_dir / 'child.log'})", "child_wall_s": wall}
    record = json.loads(result_file.read_text())
    record["child_wall_s"] = wall
    record["load_avg_1min_before"] = load_before
    return record


def score(case: suites.Case, record: dict, check: bool) -> dict:
    """Suite measures and, if ``check``, the conversion check for one finished run."""
    out: dict = {}
    try:
        out.update(suites.EVALUATORS[case.suite](case, record))
    except Exception as error:  # noqa: BLE001 - a scoring failure is recorded, not fatal
        out["eval_error"] = f"{type(error).__name__}: {error}".splitlines()[0]
    if check and record.get("tool_warped_path"):
        try:
            corr = verify.conversion_correlation(case.fixed, case.moving, record["transform_path"],
                                                 record["tool_warped_path"])
            out["verify_corr"] = corr
            out["verify_ok"] = bool(corr > verify.THRESHOLD)
        except Exception as error:  # noqa: BLE001
            out["verify_error"] = f"{type(error).__name__}: {error}".splitlines()[0]
    return out


def write_results(out: Path, records: list[dict], machine: dict, tools: list[str]) -> None:
    """``results.json``, ``results.md`` and the plots, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "implementations": dict(metrics.IMPLEMENTATION), "runs": records}
    for name, text in (("results.json", json.dumps(payload, indent=2, default=str)),
                       ("results.md", report.markdown(records, machine, tools))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    report.plots(records, out, tools)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suite_names = list(suites.SUITES) if args.suite == "all" else [args.suite]
    machine = report.machine_info(REPO)
    machine["threads"] = args.threads
    if args.brain_pairs is not None:
        machine["brain_pairs"] = ",".join(f"{i}-{j}" for i, j in args.brain_pairs)
    if args.regsuite_preset is not None:
        machine["regsuite_preset"] = args.regsuite_preset
    records: list[dict] = []
    for suite in suite_names:
        suite_cases = suites.cases(suite, args.data, args.pairs, args.brain_pairs)
        for index, case in enumerate(suite_cases):
            t1pd_runs: dict[str, dict] = {}
            for tool in args.tools:
                run_dir = args.out / "runs" / suite / case.pair / tool
                use_mask = tool not in args.no_mask
                if args.dry_run:
                    print(" ".join(child_command(tool, case, run_dir, args.threads, use_mask, args.regsuite_preset)))
                    continue
                previous = run_dir / "run.json"
                if args.reuse and previous.is_file() and json.loads(previous.read_text()).get("status") == "ok":
                    run = json.loads(previous.read_text())
                else:
                    print(f"[{suite} {case.pair}] {tool} ...", flush=True)
                    run = run_child(tool, case, run_dir, args.threads, args.timeout, use_mask, args.regsuite_preset)
                record = {"suite": suite, "pair": case.pair, "tool": tool, **run,
                          "fixed_mask_used": bool(case.fixed_mask and use_mask)}
                if record.get("status") == "ok":
                    check = args.verify == "all" or (args.verify == "first" and index == 0)
                    record.update(score(case, record, check))
                    t1pd_runs[tool] = record
                summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                           if k in ("status", "error", "dice", "dice_affine", "sd_log_jac", "folding_percent",
                                    "tre_mean", "tre_max", "seconds", "peak_rss_mb", "verify_corr",
                                    "eval_error")}
                print(f"[{suite} {case.pair}] {tool}: {summary}", flush=True)
                records.append(record)
                write_results(args.out, records, machine, args.tools)
            if suite == "t1pd" and t1pd_runs and not args.dry_run:
                for tool, distances in suites.compare_mappings(case, t1pd_runs).items():
                    t1pd_runs[tool].update(distances)
                    print(f"[{suite} {case.pair}] {tool}: {distances}", flush=True)
                write_results(args.out, records, machine, args.tools)
    if not args.dry_run:
        print(f"results in {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
