"""Machine description, ``results.md`` tables and PNG plots from the benchmark records.

Example:
    >>> summarize([{"x": 1.0}, {"x": 3.0}], "x")
    '2.00 ± 1.41'
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

#: (column header, record key, decimals) per suite
COLUMNS = {
    "brain": [("Dice", "dice", 3), ("Dice affine", "dice_affine", 3), ("SD log|J|", "sd_log_jac", 3),
              ("J<=0 %", "folding_percent", 3), ("time s", "seconds", 1), ("peak MB", "peak_rss_mb", 0)],
    "lung": [("TRE mean mm", "tre_mean", 2), ("TRE max mm", "tre_max", 2), ("TRE affine mm", "tre_mean_affine", 2),
             ("SD log|J|", "sd_log_jac", 3), ("J<=0 %", "folding_percent", 3), ("time s", "seconds", 1),
             ("peak MB", "peak_rss_mb", 0)],
    "t1pd": [("vs elastix mean mm", "dist_to_elastix_mean", 2), ("vs elastix max mm", "dist_to_elastix_max", 2),
             ("vs regsuite mean mm", "dist_to_regsuite_mean", 2), ("vs regsuite max mm", "dist_to_regsuite_max", 2),
             ("time s", "seconds", 1), ("peak MB", "peak_rss_mb", 0)],
}

PACKAGES = ("regsuite", "torch", "SimpleITK", "numpy", "itk-elastix", "itk", "antspyx", "picsl_greedy")


def machine_info(repo: Path) -> dict:
    """CPU model, core count, memory, Python and package versions, and the repository commit."""
    info: dict = {"platform": platform.platform(), "python": platform.python_version(),
                  "logical_cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("regsuite") is None:
        try:
            import regsuite  # noqa: PLC0415
            versions["regsuite"] = getattr(regsuite, "__version__", "source tree")
        except ImportError:
            pass
    info["versions"] = versions
    try:
        info["commit"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, check=False).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def _values(records: Iterable[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in records if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])])


def summarize(records: list[dict], key: str, decimals: int = 2) -> str:
    """``mean ± sd`` (sample sd) over the records that have ``key``; ``-`` if none."""
    values = _values(records, key)
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f}"


def markdown(records: list[dict], machine: dict, tools_order: list[str]) -> str:
    """The ``results.md`` text: one table per suite (mean ± sd over pairs), verification, machine."""
    lines = ["# Benchmark results", ""]
    for suite, columns in COLUMNS.items():
        rows = [r for r in records if r["suite"] == suite]
        if not rows:
            continue
        pairs = sorted({r["pair"] for r in rows})
        lines += [f"## {suite} ({len(pairs)} pair{'s' if len(pairs) != 1 else ''}: {', '.join(pairs)})", "",
                  "| tool | runs ok | " + " | ".join(c[0].replace("|", "\\|") for c in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for tool in tools_order:
            mine = [r for r in rows if r["tool"] == tool]
            if not mine:
                continue
            ok = [r for r in mine if r.get("status") == "ok"]
            cells = [summarize(ok, key, decimals) for _, key, decimals in columns]
            lines.append(f"| {tool} | {len(ok)}/{len(mine)} | " + " | ".join(cells) + " |")
        failures = [r for r in rows if r.get("status") != "ok"]
        for r in failures:
            lines.append(f"\n- {r['tool']} on {r['pair']} failed: {r.get('error', '?')}")
        lines.append("")
    checks = [r for r in records if r.get("verify_corr") is not None]
    if checks:
        lines += ["## Conversion checks", "",
                  "Correlation between the moving image resampled with the converted transform and the "
                  "tool's own warped image (first pair of each suite).", "",
                  "| suite | pair | tool | correlation | ok |", "|---|---|---|---|---|"]
        for r in checks:
            lines.append(f"| {r['suite']} | {r['pair']} | {r['tool']} | {r['verify_corr']:.4f} | "
                         f"{'yes' if r.get('verify_ok') else 'NO'} |")
        lines.append("")
    lines += ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items() if key != "versions"]
    lines += [f"- {name}: {version}" for name, version in machine.get("versions", {}).items()]
    lines.append("")
    return "\n".join(lines)


def plots(records: list[dict], out_dir: Path, tools_order: list[str]) -> list[str]:
    """Dice-vs-time scatter (brain) and per-tool bar charts per suite; returns the PNG paths."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    written: list[str] = []
    ok = [r for r in records if r.get("status") == "ok"]
    colours = {tool: plt.cm.tab10(i % 10) for i, tool in enumerate(tools_order)}
    brain = [r for r in ok if r["suite"] == "brain" and "dice" in r]
    if brain:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for tool in tools_order:
            mine = [r for r in brain if r["tool"] == tool]
            if not mine:
                continue
            ax.scatter([r["seconds"] for r in mine], [r["dice"] for r in mine], color=colours[tool], alpha=0.4)
            ax.scatter([np.mean([r["seconds"] for r in mine])], [np.mean([r["dice"] for r in mine])],
                       color=colours[tool], s=120, edgecolor="black", label=tool)
        ax.set_xlabel("registration time (s)")
        ax.set_ylabel("mean Dice (99 labels)")
        ax.set_title("brain: Dice vs time (big marker = mean)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / "brain_dice_vs_time.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    for suite, columns in COLUMNS.items():
        rows = [r for r in ok if r["suite"] == suite]
        keys = [(label, key) for label, key, _ in columns if _values(rows, key).size]
        tools = [t for t in tools_order if any(r["tool"] == t for r in rows)]
        if not rows or not keys:
            continue
        columns_per_row = min(4, len(keys))
        rows_of_panels = -(-len(keys) // columns_per_row)
        fig, axes = plt.subplots(rows_of_panels, columns_per_row, figsize=(3.2 * columns_per_row, 3.4 * rows_of_panels),
                                 squeeze=False)
        for ax in axes.ravel()[len(keys):]:
            ax.set_visible(False)
        for ax, (label, key) in zip(axes.ravel(), keys):
            means, sds = [], []
            for tool in tools:
                values = _values([r for r in rows if r["tool"] == tool], key)
                means.append(values.mean() if values.size else np.nan)
                sds.append(values.std(ddof=1) if values.size > 1 else 0.0)
            ax.bar(range(len(tools)), means, yerr=sds, color=[colours[t] for t in tools], capsize=3)
            ax.set_xticks(range(len(tools)))
            ax.set_xticklabels(tools, rotation=45, ha="right")
            ax.set_title(label)
        fig.suptitle(f"{suite}: mean ± sd over pairs")
        fig.tight_layout()
        path = out_dir / f"{suite}_bars.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def load_records(path: Path) -> Optional[list[dict]]:
    """Records of an earlier ``results.json`` (or None)."""
    import json  # noqa: PLC0415

    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("runs")
