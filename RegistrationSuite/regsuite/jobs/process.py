"""Run a registration in a background process and follow it from a GUI's main thread.

The parent (3D Slicer, a notebook, a script) never imports torch or Slicer here: it starts
``python -m regsuite.jobs.worker request.json`` in the job folder and then only reads files:
progress from ``progress.jsonl`` (JSON lines the worker appends and flushes; a partly written
last line is kept for the next :meth:`BackgroundRegistration.poll`), the outcome from
``result.json`` / ``error.json``. Cancelling creates ``cancel.flag``, which the worker's
``cancel`` callback checks every optimiser iteration; a worker that has not stopped after
``grace`` seconds is terminated, then killed (with anything it started).

Example (a Slicer panel polling from a ``qt.QTimer``):
    >>> job = BackgroundRegistration(RegistrationRequest("f.nii.gz", "m.nii.gz", "rigid")).start()  # doctest: +SKIP
    >>> def on_timer():  # doctest: +SKIP
    ...     for event in job.poll():
    ...         if event["kind"] == "progress":
    ...             bar.setValue(100 * event["iteration"] // max(event["iterations"], 1))
    ...     if not job.is_running:
    ...         timer.stop()
    ...         show(job.result.load_transform() if job.state == "completed" else job.error)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import RegSuiteError
from .request import (CANCELLED_MESSAGE, PARENT_PID_VARIABLE, JobFiles, JobResult, RegistrationRequest,
                      one_line, write_text_atomic)

__all__ = ["BackgroundRegistration", "EventReader", "default_python", "worker_environment", "STATES"]

STATES = ("pending", "running", "completed", "failed", "cancelled")

#: The folder that holds the ``regsuite`` package (put first on the worker's PYTHONPATH).
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

_LOG_TAIL_LINES = 5


def default_python() -> str:
    """The Python that runs the worker: ``sys.executable``, or ``PythonSlicer`` inside Slicer.

    Inside Slicer (module ``slicer`` loaded, with an ``app``) ``sys.executable`` is Slicer itself,
    so the ``PythonSlicer`` launcher is used: from ``PATH``, else ``<slicerHome>/bin``.
    The module ``slicer`` is only looked up, never imported.

    Example:
        >>> default_python() == sys.executable  # outside Slicer
        True
    """
    app = getattr(sys.modules.get("slicer"), "app", None)
    if app is None:
        return sys.executable
    found = shutil.which("PythonSlicer")
    if found:
        return found
    candidate = Path(str(app.slicerHome)) / "bin" / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    if candidate.is_file():
        return str(candidate)
    raise RegSuiteError(f"PythonSlicer was found neither on PATH nor in '{candidate.parent}'; "
                        "pass python=... to BackgroundRegistration")


def worker_environment() -> dict[str, str]:
    """This process's environment with the ``regsuite`` package folder first on PYTHONPATH
    (and this process's pid, which the worker watches to stop when it is orphaned).

    Example:
        >>> worker_environment()["PYTHONPATH"].split(os.pathsep)[0] == PACKAGE_ROOT
        True
    """
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != PACKAGE_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + paths)
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    return env


class EventReader:
    """Reads the new complete lines of a JSON-lines file, each as a dict.

    A last line without its newline yet (the writer is still at it) is left for the next read.
    A line that is not a JSON object comes back as ``{"kind": "log", "message": line}``.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "p.jsonl")
        >>> reader = EventReader(path)
        >>> reader.read()
        []
        >>> _ = open(path, "w").write('{"kind": "log", "message": "a"}\\n{"kind": "lo')
        >>> [e["message"] for e in reader.read()], reader.read()
        (['a'], [])
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        events = []
        for line in chunk[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"kind": "log", "message": line.decode("utf-8", "replace").rstrip()}
            events.append(event)
        return events


def _log_tail(path: Path) -> str:
    """The last lines of the worker's log, on one line."""
    try:
        with open(path, "rb") as stream:
            stream.seek(max(0, path.stat().st_size - 8192))
            text = stream.read().decode("utf-8", "replace")
    except OSError:
        return f"{path.name} cannot be read"
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()][-_LOG_TAIL_LINES:]
    tail = " | ".join(lines)
    return f"{path.name} is empty" if not tail else (tail if len(tail) <= 800 else "..." + tail[-797:])


def _exit_description(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by signal {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _detached() -> dict[str, Any]:
    """Popen options: its own process group (so that it and what it starts can be stopped together)."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _stop(process: subprocess.Popen, seconds: float) -> None:
    """Terminate, then kill, the worker with what it started (``PythonSlicer`` is a launcher
    whose child is the real Python); return within about ``seconds``."""
    deadline = time.monotonic() + seconds

    def wait_until(moment: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, moment - time.monotonic()))

    if os.name == "nt":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True,
                           timeout=seconds / 2)
        with contextlib.suppress(OSError):
            process.kill()
    else:
        for sig, moment in ((signal.SIGTERM, deadline - seconds / 2), (signal.SIGKILL, deadline)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)  # the worker leads its own session and process group
            wait_until(moment)
    wait_until(deadline)


class BackgroundRegistration:
    """A registration running in a child process, followed by polling (never blocks a GUI).

    ``state`` is ``"pending"`` (not started), ``"running"``, ``"completed"`` (``result`` is a
    :class:`JobResult`), ``"failed"`` (``error`` is a one-line message, e.g. the ``InputError``
    the worker raised, and ``error_type`` the name of its class in :mod:`regsuite.errors`) or
    ``"cancelled"``. ``python`` is the interpreter that runs the worker
    (default :func:`default_python`). An empty ``request.output_dir`` means a fresh temporary
    folder, removed by :meth:`cleanup`.

    Example:
        >>> job = BackgroundRegistration(RegistrationRequest("f.nii.gz", "m.nii.gz", "rigid", seed=1))
        >>> job.state
        'pending'
        >>> job.start().wait(callback=print)  # doctest: +SKIP
        'completed'
        >>> job.result.load_transform()  # doctest: +SKIP
    """

    def __init__(self, request: RegistrationRequest, python: str | None = None) -> None:
        self.request = request
        self.python = python
        self.error: str | None = None
        self.error_type: str | None = None
        self.result: JobResult | None = None
        self.output_dir = ""
        self._state = "pending"
        self._owns_dir = False
        self._process: subprocess.Popen | None = None
        self._files: JobFiles | None = None
        self._reader: EventReader | None = None
        self._pending: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"BackgroundRegistration(state={self._state!r}, output_dir={self.output_dir!r})"

    def __enter__(self) -> "BackgroundRegistration":
        return self

    def __exit__(self, *exc: Any) -> None:
        """Leaving a ``with`` block cancels a job still running (its files are kept)."""
        self.cancel()

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        """One of :data:`STATES`, refreshed from the worker process (events are kept for poll)."""
        self._refresh()
        return self._state

    @property
    def is_running(self) -> bool:
        return self.state == "running"

    @property
    def pid(self) -> int | None:
        """The worker's process id (None before start)."""
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The worker's exit status once it has exited (negative: killed by that signal), else None."""
        return self._process.poll() if self._process is not None else None

    @property
    def log_path(self) -> str:
        """The worker's stdout/stderr file ("" before start)."""
        return str(self._files.log) if self._files is not None else ""

    # ------------------------------------------------------------------ control
    def start(self) -> "BackgroundRegistration":
        """Write the request into the job folder and launch the worker; return ``self``.

        Result files of an earlier run in the same folder are removed first. A worker that
        cannot be launched (no such interpreter, folder not writable) makes the state
        ``"failed"`` with a one-line ``error``; nothing is raised.
        """
        if self._state != "pending":
            raise RuntimeError(f"a BackgroundRegistration starts once; this one is {self._state}")
        folder = self.request.output_dir
        if not folder:
            folder, self._owns_dir = tempfile.mkdtemp(prefix="regsuite-job-"), True
        self._files = files = JobFiles(os.path.abspath(folder))
        self.output_dir = str(files.folder)
        self._reader = EventReader(files.progress)
        self._state = "running"
        python = self.python
        try:
            python = python or default_python()
            files.prepare()
            write_text_atomic(files.request, self.request.resolved(self.output_dir).to_json())
            with open(files.log, "wb") as log:
                self._process = subprocess.Popen(
                    [python, "-m", "regsuite.jobs.worker", str(files.request)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.output_dir, env=worker_environment(),
                    **_detached())
        except (OSError, RegSuiteError) as error:
            self._end("failed", f"the registration worker cannot be started ({one_line(error)})")
        return self

    def poll(self) -> list[dict[str, Any]]:
        """Events written since the last call, oldest first; also refreshes :attr:`state`.

        Each event has ``kind``: ``"progress"`` (``stage``, ``stages``, ``stage_name``,
        ``level``, ``levels``, ``iteration``, ``iterations``, ``metric``, ``elapsed``; 1-based
        counters as the engine reports them) or ``"log"`` (``message``, ``elapsed``).
        """
        if self._reader is not None:
            self._pending.extend(self._reader.read())
        self._refresh()
        events, self._pending = self._pending, []
        return events

    def wait(self, timeout: float | None = None, callback: Callable[[dict[str, Any]], None] | None = None,
             interval: float = 0.05) -> str:
        """Poll until the job ends (or ``timeout`` s pass), calling ``callback(event)`` per event;
        return :attr:`state`. Blocks: a GUI calls :meth:`poll` from a timer instead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for event in self.poll():
                if callback is not None:
                    callback(event)
            if self._state != "running" or (deadline is not None and time.monotonic() >= deadline):
                return self._state
            time.sleep(interval)

    def cancel(self, grace: float = 3.0) -> None:
        """Stop the job: ask through the cancel flag, terminate after ``grace`` s, then kill.

        Returns within about ``grace + 1`` s with the state ``"cancelled"`` and no result files
        left in the folder (half-written ones included). A job that has already ended is left
        as it is; unread events stay available to :meth:`poll`.
        """
        self._refresh()
        if self._state == "pending":
            self._end("cancelled", CANCELLED_MESSAGE, "RegistrationCancelled")
        if self._state != "running":
            return
        assert self._process is not None and self._files is not None
        with contextlib.suppress(OSError):
            self._files.cancel.touch()
        deadline = time.monotonic() + max(0.0, grace)
        while self._process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._process.poll() is None:
            _stop(self._process, 0.9)
        self._pending.extend(self._reader.read() if self._reader is not None else [])
        self._end("cancelled", CANCELLED_MESSAGE, "RegistrationCancelled")
        with contextlib.suppress(OSError):
            self._files.remove_outputs()

    def cleanup(self) -> None:
        """Cancel a running job, then remove the job folder if this object created it."""
        self.cancel(grace=0.5)
        if self._owns_dir and self.output_dir:
            shutil.rmtree(self.output_dir, ignore_errors=True)
            self._owns_dir = False

    # ------------------------------------------------------------------ internals
    def _end(self, state: str, error: str | None = None, error_type: str = "RegistrationFailed") -> None:
        self._state, self.error, self.error_type = state, error, error_type if error else None
        if state != "completed":
            self.result = None

    def _refresh(self) -> None:
        if self._state != "running" or self._process is None:
            return
        code = self._process.poll()
        if code is None:
            return
        if self._reader is not None:
            self._pending.extend(self._reader.read())
        self._finish(code)

    def _finish(self, code: int) -> None:
        """Read the worker's outcome files once it has exited with status ``code``."""
        files = self._files
        assert files is not None
        if code == 0 and files.result.is_file():
            try:
                result = JobResult.from_json(files.result.read_text(encoding="utf-8"))
            except (OSError, RegSuiteError) as error:
                self._end("failed", f"the job result '{files.result}' cannot be read ({one_line(error)})")
                return
            self._end("completed")
            self.result = result
            return
        report: Any = None
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(files.error.read_text(encoding="utf-8"))
        if isinstance(report, dict) and report.get("message"):
            kind = str(report.get("type") or "RegistrationFailed")
            self._end("cancelled" if kind == "RegistrationCancelled" else "failed", str(report["message"]), kind)
            return
        self._end("failed", f"the registration worker {_exit_description(code)} without reporting an error; "
                            f"last lines of {files.log}: {_log_tail(files.log)}")
