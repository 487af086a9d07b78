"""The registration worker: reads a request, registers, writes the result files of a job folder.

Run as a child process by :class:`~regsuite.jobs.process.BackgroundRegistration`::

    python -m regsuite.jobs.worker /path/to/job/request.json

or in the calling process with :func:`run_in_process` (batch use, tests). Inputs and the preset
are checked before the engine (and so torch) is imported, so a bad request fails in well under
a second. Progress goes to ``progress.jsonl``, the outcome to ``result.json`` or ``error.json``
(see :mod:`regsuite.jobs.request` for the folder layout); the exit status is 0 on success,
the error's ``exit_code`` otherwise (2 for bad input).

Example:
    >>> from regsuite.jobs import RegistrationRequest, run_in_process
    >>> result = run_in_process(RegistrationRequest("f.nii.gz", "m.nii.gz", "rigid"))  # doctest: +SKIP
    >>> result.load_transform()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from ..errors import InputError, RegistrationCancelled, RegSuiteError
from .request import (CANCELLED_MESSAGE, PARENT_PID_VARIABLE, JobFiles, JobResult, RegistrationRequest,
                      one_line, write_text_atomic)

__all__ = ["run_in_process", "main", "part_kind"]

Event = dict  # {"kind": "progress" | "log", ...}
ProgressSink = Callable[[Event], None]


def part_kind(transform: Any) -> str:
    """``"linear"``, ``"bspline"`` or ``"field"`` (any other non-linear transform).

    Example:
        >>> import SimpleITK as sitk
        >>> part_kind(sitk.Euler3DTransform()), part_kind(sitk.BSplineTransform(3))
        ('linear', 'bspline')
    """
    from ..io.transforms import is_linear

    if is_linear(transform):
        return "linear"
    return "bspline" if transform.GetName() == "BSplineTransform" else "field"


class _Job:
    """One run of a request: emits events, honours cancel, writes outputs."""

    def __init__(self, request: RegistrationRequest, progress: ProgressSink | None,
                 cancel: Callable[[], bool] | None) -> None:
        self.request, self.progress, self.cancel = request, progress, cancel
        self.files = JobFiles(request.output_dir)
        self.start = time.perf_counter()

    def log(self, message: str) -> None:
        if self.progress is not None:
            self.progress({"kind": "log", "message": message,
                           "elapsed": round(time.perf_counter() - self.start, 3)})

    def on_progress(self, event: Any) -> None:
        if self.progress is not None:
            self.progress({"kind": "progress", **asdict(event)})

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise RegistrationCancelled(CANCELLED_MESSAGE)

    def run(self) -> JobResult:
        from ..engine.config import load_preset
        from ..io.images import read_image, read_mask
        from ..io.transforms import read_transform

        request = self.request
        config = load_preset(request.preset)
        self.log(f"preset {config.name}: {', '.join(stage.model for stage in config.stages)}")
        fixed = read_image(request.fixed, "fixed image")
        moving = read_image(request.moving, "moving image")
        fixed_mask = read_mask(request.fixed_mask, fixed, "fixed mask") if request.fixed_mask else None
        moving_mask = read_mask(request.moving_mask, moving, "moving mask") if request.moving_mask else None
        initial = read_transform(request.initial_transform) if request.initial_transform else None
        self.check_cancel()
        self.log("loading the registration engine")
        from ..engine.registration import register

        self.check_cancel()
        self.log("registering")
        result = register(fixed, moving, config, fixed_mask=fixed_mask, moving_mask=moving_mask,
                          initial_transform=initial, device=request.device, threads=request.threads,
                          seed=request.seed, progress=self.on_progress, cancel=self.cancel)
        self.check_cancel()
        self.log(f"registration finished in {result.elapsed:.1f} s on {result.metrics.get('device', '?')}; writing results")
        job_result = self.write(result)
        self.log("done")
        return job_result

    def write(self, result: Any) -> JobResult:
        """Write the parts, the composite, the inverse, then ``result.json``; all or nothing."""
        from ..io.transforms import write_composite_from_parts, write_transform

        from ..io.compact_h5 import h5py_available

        files = self.files
        try:
            kinds = [part_kind(part) for part in result.parts]
            if "field" in kinds and not h5py_available():
                self.log("h5py is not installed: the displacement field is written at full precision, "
                         "uncompressed (about 10x larger; 'pip install h5py' makes it compact)")
            paths = [files.part(number, kind) for number, kind in enumerate(kinds, 1)]
            for part, path in zip(result.parts, paths):
                write_transform(part, path)
            # the composite reuses the parts' compressed field instead of compressing it again
            write_composite_from_parts(result.parts, paths, files.transform)
            inverse = result.inverse if self.request.write_inverse else None
            if inverse is not None:
                write_transform(inverse, files.inverse)
            job_result = JobResult(
                transform_path=str(files.transform), part_paths=[str(p) for p in paths], part_kinds=kinds,
                inverse_path=str(files.inverse) if inverse is not None else None,
                metrics=result.metrics, history=result.history, elapsed=float(result.elapsed))
            write_text_atomic(files.result, job_result.to_json())
        except BaseException:
            files.remove_outputs()
            raise
        return job_result


def run_in_process(request: RegistrationRequest, progress: ProgressSink | None = None,
                   cancel: Callable[[], bool] | None = None) -> JobResult:
    """Run ``request`` in this process with the worker's code; return its :class:`JobResult`.

    ``progress(event)`` gets the same dicts as ``BackgroundRegistration.poll()``; ``cancel()``
    returning True stops the run with :class:`~regsuite.errors.RegistrationCancelled`. Errors are
    raised (``InputError``/``PresetError`` for bad requests); no result file is left behind then.
    An empty ``output_dir`` becomes a fresh temporary folder (the caller removes it).

    Example:
        >>> events = []
        >>> result = run_in_process(RegistrationRequest("f.nii.gz", "m.nii.gz", "rigid"),
        ...                         progress=events.append)  # doctest: +SKIP
        >>> result.part_kinds  # doctest: +SKIP
        ['linear']
    """
    folder = request.output_dir or tempfile.mkdtemp(prefix="regsuite-job-")
    request = request.resolved(folder)
    JobFiles(folder).prepare()
    return _Job(request, progress, cancel).run()


def _append(stream: TextIO, event: Event) -> None:
    """Append one JSON line and flush, so that the parent can read it at once."""
    stream.write(json.dumps(event) + "\n")
    stream.flush()


def _cancel_check(files: JobFiles) -> Callable[[], bool]:
    """True once the cancel flag exists, or (POSIX) once the parent named in the environment has
    gone, so that a worker orphaned by a crashed GUI stops (also through a PythonSlicer launcher)."""
    flag = files.cancel
    parent = int(os.environ.get(PARENT_PID_VARIABLE, "0") or 0) if os.name == "posix" else 0

    def parent_gone() -> bool:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            return False
        return False

    return lambda: flag.exists() or (parent > 0 and parent_gone())


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwind through ``finally`` blocks so that atomic writes remove their temporary files.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m regsuite.jobs.worker REQUEST_JSON``; returns the exit status.

    The job folder is the request's ``output_dir``, or the folder of ``REQUEST_JSON`` when empty.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m regsuite.jobs.worker REQUEST_JSON", file=sys.stderr)
        return 2
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _on_sigterm)
    request_path = Path(args[0])
    files = JobFiles(request_path.parent)
    try:
        try:
            request = RegistrationRequest.from_json(request_path.read_text(encoding="utf-8"))
        except OSError as error:
            raise InputError(f"registration request '{request_path}' cannot be read ({one_line(error)})") from None
        files = JobFiles(request.output_dir or request_path.parent)
        files.folder.mkdir(parents=True, exist_ok=True)
        with open(files.progress, "a", encoding="utf-8") as stream:
            _Job(request.resolved(str(files.folder)), functools.partial(_append, stream), _cancel_check(files)).run()
        return 0
    except RegSuiteError as error:
        kind, status, message = type(error).__name__, int(error.exit_code), one_line(error)
    except Exception as error:  # a bug or the environment (memory, CUDA): keep the traceback in the log
        traceback.print_exc()
        kind, status = "RegistrationFailed", 1
        message = (f"unexpected {type(error).__name__} in the registration worker: {one_line(error)} "
                   f"(traceback in {files.log})")
    with contextlib.suppress(OSError, RegSuiteError):  # the folder itself may be the problem
        with open(files.progress, "a", encoding="utf-8") as stream:
            _append(stream, {"kind": "log", "message": f"error: {message}"})
        write_text_atomic(files.error, json.dumps({"type": kind, "message": message, "exit_code": status}))
    print(f"regsuite worker: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every output is on disk and closed: skip the interpreter's teardown, which takes about a
    # second once torch is loaded, so that the parent sees the job end that much sooner.
    os._exit(code)
