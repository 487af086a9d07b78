"""Run RegistrationSuite and peer tools on the benchmark suites and write the results.

Usage (from the repository root)::

    python benchmarks/run.py --suite brain --pairs 3 --tools regsuite,greedy,ants,elastix,sitk \
        --threads 2 --out benchmarks/results
    python benchmarks/run.py --suite brain --brain-pairs confirm --tools regsuite,greedy \
        --regsuite-preset candidate.json --out benchmarks/results/confirm
    python benchmarks/run.py --suite brain --brain-pairs validation --threads 2 \
        --tools regsuite@brain-mri,regsuite@brain-mri-fast,regsuite@brain-mri-hypermorph:0.3,greedy \
        --out benchmarks/results/learned

A tool ``regsuite@PRESET`` is the regsuite command line with that preset (a shipped preset's name
or a JSON file), ``regsuite@PRESET:LAMBDA`` adds ``--lambda LAMBDA`` (HyperMorph presets); each such
tool has its own run folder and its own rows, labelled as written (see :func:`parse_tool`), so
several presets run side by side with the peers. Plain ``regsuite`` runs ``--regsuite-preset`` or
the suite's preset.

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
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, report, suites, verify  # noqa: E402
from benchmarks.peers import MODULES, TOOLS  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
#: keys of a run record that are too bulky for the summary tables (kept in results.json)
BULKY = ("dice_per_label",)


@dataclass(frozen=True)
class ToolSpec:
    """One entry of ``--tools``: ``name`` labels its rows, ``tool`` is the key of
    :data:`benchmarks.peers.MODULES` that runs it, ``preset``/``hyper_lambda`` (regsuite only) are
    passed as the CLI's ``--preset``/``--lambda``."""

    name: str
    tool: str
    preset: Optional[str] = None
    hyper_lambda: Optional[float] = None

    @property
    def folder(self) -> str:
        """The run folder's name: the label with ``:`` (lambda) spelled ``_lambda``.

        >>> ToolSpec("regsuite@brain-mri-hypermorph:0.3", "regsuite").folder
        'regsuite@brain-mri-hypermorph_lambda0.3'
        """
        return self.name.replace(":", "_lambda").replace(os.sep, "_")


def _lambda_text(value: float) -> str:
    """Shortest text for a lambda in a label: ``0.3``, ``1``, ``0``."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def parse_tool(text: str) -> ToolSpec:
    """A ``--tools`` entry: a tool of :data:`MODULES`, ``regsuite@PRESET`` or ``regsuite@PRESET:LAMBDA``.

    ``PRESET`` is a shipped preset's name or a JSON file (resolved to an absolute path; the label
    keeps the file's name); ``LAMBDA`` (in [0, 1]) is passed as ``--lambda``. When ``regsuite`` is
    importable the preset is loaded (and given the lambda) here, so a typo fails before any run.
    Raises ``ValueError`` with a one-line message.

    Example:
        >>> spec = parse_tool("regsuite@brain-mri-hypermorph:0.30")
        >>> spec.name, spec.tool, spec.preset, spec.hyper_lambda
        ('regsuite@brain-mri-hypermorph:0.3', 'regsuite', 'brain-mri-hypermorph', 0.3)
        >>> parse_tool("greedy")
        ToolSpec(name='greedy', tool='greedy', preset=None, hyper_lambda=None)
    """
    text = text.strip()
    base, at, preset = text.partition("@")
    if not at:
        if base not in MODULES:
            raise ValueError(f"unknown tool {base!r}; choose from {', '.join(sorted(MODULES))} "
                             "or regsuite@PRESET[:LAMBDA]")
        return ToolSpec(base, base)
    if base != "regsuite":
        raise ValueError(f"tool {text!r}: only regsuite takes @PRESET (e.g. regsuite@brain-mri-fast)")
    hyper_lambda = None
    if ":" in preset:
        preset, _, value = preset.rpartition(":")
        try:
            hyper_lambda = float(value)
        except ValueError:
            raise ValueError(f"tool {text!r}: lambda {value!r} is not a number") from None
        if not (math.isfinite(hyper_lambda) and 0.0 <= hyper_lambda <= 1.0):
            raise ValueError(f"tool {text!r}: lambda must be in [0, 1]")
    if not preset:
        raise ValueError(f"tool {text!r}: no preset after '@'")
    label = preset
    if preset.lower().endswith(".json"):
        if not Path(preset).is_file():
            raise ValueError(f"tool {text!r}: preset file {preset} not found")
        label, preset = Path(preset).name, str(Path(preset).resolve())  # the child runs in the repository root
    _check_preset(text, preset, hyper_lambda)
    name = f"regsuite@{label}" + (f":{_lambda_text(hyper_lambda)}" if hyper_lambda is not None else "")
    return ToolSpec(name, "regsuite", preset, hyper_lambda)


def _check_preset(text: str, preset: str, hyper_lambda: Optional[float]) -> None:
    """Load the preset (and set its lambda) with the engine's own code; skipped without ``regsuite``."""
    try:
        from regsuite.engine.config import load_preset, with_lambda  # noqa: PLC0415
        from regsuite.errors import RegSuiteError  # noqa: PLC0415
    except ImportError:
        return
    try:
        config = load_preset(preset)
        if hyper_lambda is not None:
            with_lambda(config, hyper_lambda, "lambda")
    except RegSuiteError as error:
        raise ValueError(f"tool {text!r}: {str(error).splitlines()[0]}") from None


def parse_tools(text: str) -> list[ToolSpec]:
    """The comma-separated ``--tools`` list; a label given twice is a ``ValueError``.

    Example:
        >>> [t.name for t in parse_tools("regsuite, regsuite@brain-mri-fast,greedy")]
        ['regsuite', 'regsuite@brain-mri-fast', 'greedy']
    """
    specs = [parse_tool(item) for item in text.split(",") if item.strip()]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"tool(s) given twice: {', '.join(twice)}")
    if not specs:
        raise ValueError("no tool given")
    return specs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RegistrationSuite benchmark against peer tools.")
    parser.add_argument("--suite", default="brain", choices=[*suites.SUITES, "all"])
    parser.add_argument("--pairs", type=int, default=None, help="use the first N pairs of each suite")
    parser.add_argument("--brain-pairs", default=None, metavar="PAIRS",
                        help="brain pairs to run instead of the default list: 'tune', 'confirm' (the subject "
                             "split of benchmarks/suites.py), 'validation' (8-9,9-10,10-8: the learned "
                             "models' held-out pairs) or FIXED-MOVING subjects, e.g. 6-8,7-9")
    parser.add_argument("--regsuite-preset", default=None, metavar="PRESET",
                        help="preset name or JSON file for the plain regsuite tool (default: the suite's preset)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, from {', '.join(sorted(MODULES))}; also regsuite@PRESET and "
                             "regsuite@PRESET:LAMBDA (HyperMorph lambda), each with its own rows")
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
    try:
        args.specs = parse_tools(args.tools)
    except ValueError as error:
        parser.error(f"--tools: {error}")
    args.tools = [spec.name for spec in args.specs]
    args.no_mask = {t.strip() for t in args.no_mask.split(",") if t.strip()}
    unknown = [t for t in sorted(args.no_mask) if t not in MODULES and t not in args.tools]
    if unknown:
        parser.error(f"--no-mask: unknown tool(s) {', '.join(unknown)}; choose from {', '.join(sorted(MODULES))} "
                     "or a --tools entry")
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


def child_command(tool: Union[str, ToolSpec], case: suites.Case, run_dir: Path, threads: int,
                  use_mask: bool = True, preset: str | None = None) -> list[str]:
    """The worker invocation for one (tool, case); ``tool`` is a ``--tools`` entry or its
    :class:`ToolSpec`; ``use_mask=False`` leaves the fixed mask out; ``preset`` replaces the suite's
    preset for the plain ``regsuite`` tool (a ``regsuite@PRESET`` tool runs its own preset)."""
    spec = tool if isinstance(tool, ToolSpec) else parse_tool(tool)
    command = [sys.executable, str(REPO / "benchmarks" / "_worker.py"), "--tool", spec.tool, "--suite", case.suite,
               "--fixed", case.fixed, "--moving", case.moving, "--out-dir", str(run_dir),
               "--threads", str(threads)]
    if case.fixed_mask and use_mask:
        command += ["--fixed-mask", case.fixed_mask]
    chosen = spec.preset or (preset if spec.tool == "regsuite" else None)
    if chosen:
        command += ["--preset", chosen]
    if spec.hyper_lambda is not None:
        command += ["--lambda", repr(spec.hyper_lambda)]
    return command


def run_child(tool: Union[str, ToolSpec], case: suites.Case, run_dir: Path, threads: int, timeout: float,
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
            for spec in args.specs:
                tool = spec.name
                run_dir = args.out / "runs" / suite / case.pair / spec.folder
                use_mask = tool not in args.no_mask and spec.tool not in args.no_mask
                if args.dry_run:
                    print(" ".join(child_command(spec, case, run_dir, args.threads, use_mask, args.regsuite_preset)))
                    continue
                previous = run_dir / "run.json"
                if args.reuse and previous.is_file() and json.loads(previous.read_text()).get("status") == "ok":
                    run = json.loads(previous.read_text())
                else:
                    print(f"[{suite} {case.pair}] {tool} ...", flush=True)
                    run = run_child(spec, case, run_dir, args.threads, args.timeout, use_mask, args.regsuite_preset)
                # the label last: the worker's run.json names the base tool ("regsuite")
                record = {**run, "suite": suite, "pair": case.pair, "tool": tool, "base_tool": spec.tool,
                          "fixed_mask_used": bool(case.fixed_mask and use_mask)}
                if spec.hyper_lambda is not None:
                    record["lambda"] = spec.hyper_lambda
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
