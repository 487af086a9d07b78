"""RegistrationSuite through its command line, exactly as a user runs it.

``regsuite register --fixed F --moving M --preset P --output-transform T.h5 --threads N --quiet``
(plus ``--fixed-mask`` where the suite has one, and ``--lambda L`` for a HyperMorph preset run as
the benchmark tool ``regsuite@brain-mri-hypermorph:L``). When the ``regsuite`` console script is not on
PATH, ``python -m regsuite.cli.main`` is used with ``RegistrationSuite/`` on PYTHONPATH. The
measured time therefore includes interpreter start-up and image reading, like a user's run.

Example:
    >>> command("f.nii.gz", "m.nii.gz", "t.h5", "brain-mri", None, 2)[-7:]
    ['--preset', 'brain-mri', '--output-transform', 't.h5', '--threads', '2', '--quiet']
    >>> command("f.nii.gz", "m.nii.gz", "t.h5", "brain-mri-hypermorph", None, 2, 0.3)[-9:-5]
    ['--preset', 'brain-mri-hypermorph', '--lambda', '0.3']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from benchmarks.peers._common import out_path, peak_rss_mb, stopwatch

#: benchmark suite -> preset name
PRESETS = {"brain": "brain-mri", "lung": "lung-ct", "t1pd": "multimodal-rigid"}

REPO = Path(__file__).resolve().parents[2]


def _head() -> list[str]:
    executable = shutil.which("regsuite")
    return [executable] if executable else [sys.executable, "-m", "regsuite.cli.main"]


def command(fixed_path: str, moving_path: str, transform_path: str, preset: str,
            fixed_mask: Optional[str], threads: int, hyper_lambda: Optional[float] = None) -> list[str]:
    """The argument list that runs one registration (edit here if the CLI changes);
    ``hyper_lambda`` adds ``--lambda`` (HyperMorph presets)."""
    args = _head() + ["register", "--fixed", str(fixed_path), "--moving", str(moving_path)]
    if fixed_mask:
        args += ["--fixed-mask", str(fixed_mask)]
    args += ["--preset", preset]
    if hyper_lambda is not None:
        args += ["--lambda", repr(float(hyper_lambda))]
    return args + ["--output-transform", str(transform_path), "--threads", str(int(threads)), "--quiet"]


def _environment() -> dict:
    env = dict(os.environ)
    if not shutil.which("regsuite"):
        source = str(REPO / "RegistrationSuite")
        env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain", preset: Optional[str] = None,
        hyper_lambda: Optional[float] = None) -> dict:
    """Run the CLI in a subprocess; its peak memory is the child's ``ru_maxrss``.

    ``preset`` (a name or a JSON file) replaces the suite's preset of :data:`PRESETS`;
    ``hyper_lambda`` is passed as ``--lambda`` (HyperMorph presets only).

    Afterwards (outside the timing) ``regsuite apply`` resamples the moving image with the written
    transform, linearly (``apply`` picks nearest for integer images such as the int16 brains): the
    harness's conversion check then compares it with SimpleITK's linear resampling.
    """
    transform_path = str(out_path(out_dir, "transform.h5"))
    log_path = out_path(out_dir, "regsuite.log")
    args = command(fixed_path, moving_path, transform_path, preset or PRESETS[suite], fixed_mask, threads,
                   hyper_lambda)
    with open(log_path, "w") as log, stopwatch() as clock:
        completed = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=_environment())
    peak = peak_rss_mb()
    if completed.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"regsuite exited with status {completed.returncode}: {tail[0]}")
    result = dict(transform_path=transform_path, seconds=clock["seconds"], peak_rss_mb=peak, command=" ".join(args),
                  preset=preset or PRESETS[suite])
    if hyper_lambda is not None:
        result["lambda"] = float(hyper_lambda)
    warped = str(out_path(out_dir, "tool_warped.nii.gz"))
    apply = _head() + ["apply", "--reference", str(fixed_path), "--input", str(moving_path),
                       "--transform", transform_path, "--output", warped, "--interpolation", "linear"]
    with open(log_path, "a") as log:
        if subprocess.run(apply, stdout=log, stderr=subprocess.STDOUT, env=_environment()).returncode == 0:
            result["tool_warped_path"] = warped
    return result
