"""The ``regsuite`` command line run in a background process and followed from the main thread.

Slicer's own Python cannot host the process pools the population workflows use, so they run as
``<python> -m regsuite <command> ...`` in a child process of their own (its own process group, or
on Windows its own console process group), with the interpreter and environment of
:mod:`regsuite.jobs.process` (``PythonSlicer`` inside Slicer, the ``regsuite`` package first on
``PYTHONPATH``). Its stdout and stderr go to one file that :meth:`CommandProcess.poll` reads: each
new complete line becomes a record:

* ``{"kind": "task", "done": i, "total": n, "key": ..., "status": ..., "detail": ...}`` for the
  command's progress lines ``regsuite: [i/n] <task key> done|skipped|failed[ detail]``;
* ``{"kind": "error", "message": ...}`` for its one-line error ``regsuite: error: ...``;
* ``{"kind": "log", "message": line}`` for any other line.

:meth:`CommandProcess.cancel` sends SIGTERM to the process group (the command exits with status
143 and writes no partial output), then SIGKILL to whatever is left after ``grace`` seconds.

Example:
    >>> parse_line("regsuite: [2/3] register-a2 done (1.9 s)")["key"]
    'register-a2'
    >>> parse_line("regsuite: error: no atlas given")
    {'kind': 'error', 'message': 'no atlas given'}
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["CommandProcess", "LineReader", "parse_line", "TERMINATED_STATUS"]

#: The exit status of a command stopped by SIGTERM (128 + 15).
TERMINATED_STATUS = 143

_TASK_LINE = re.compile(r"^regsuite: \[(\d+)/(\d+)\] (\S+) (done|skipped|failed)\b(.*)$")
_ERROR_PREFIX = "regsuite: error:"
_TAIL_LINES = 4


def parse_line(line: str) -> dict[str, Any]:
    """One output line of the ``regsuite`` command as a record (see the module's description)."""
    text = line.rstrip()
    match = _TASK_LINE.match(text)
    if match:
        done, total, key, status, rest = match.groups()
        detail = rest.strip()
        if detail.startswith(":"):
            detail = detail[1:].strip()
        elif detail.startswith("(") and detail.endswith(")"):
            detail = detail[1:-1]
        return {"kind": "task", "done": int(done), "total": int(total), "key": key, "status": status,
                "detail": detail}
    if text.startswith(_ERROR_PREFIX):
        return {"kind": "error", "message": text[len(_ERROR_PREFIX):].strip()}
    return {"kind": "log", "message": text}


class LineReader:
    """The new complete lines of a growing text file; a last line without its newline waits."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._offset = 0

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        lines = chunk[:end].decode("utf-8", "replace").splitlines()
        return [line.rstrip() for line in lines if line.strip()]


def _own_group() -> dict[str, Any]:
    """Popen options that start the command in a process group of its own."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


class CommandProcess:
    """``<python> -m regsuite <arguments>`` running in the background; :meth:`poll` it.

    ``folder`` (existing) receives ``output.txt`` (the command's stdout and stderr) and is the
    command's working folder. ``python`` defaults to :func:`regsuite.jobs.process.default_python`.
    """

    def __init__(self, arguments: list[str], folder: str, python: str | None = None) -> None:
        self.arguments = [str(argument) for argument in arguments]
        self.folder = str(folder)
        self.python = python
        self.outputPath = os.path.join(self.folder, "output.txt")
        self.cancelled = False
        self._process: subprocess.Popen | None = None
        self._reader = LineReader(self.outputPath)
        self._lines: list[str] = []  # every line read so far (for the error message)
        self._lastError = ""

    # ------------------------------------------------------------------ control
    def start(self) -> "CommandProcess":
        """Launch the command; raises ``OSError`` (or ``RegSuiteError`` when no Python is found)."""
        from regsuite.jobs.process import default_python, worker_environment  # noqa: PLC0415

        python = self.python or default_python()
        with open(self.outputPath, "wb") as output:
            self._process = subprocess.Popen([python, "-m", "regsuite", *self.arguments], stdin=subprocess.DEVNULL,
                                             stdout=output, stderr=subprocess.STDOUT, cwd=self.folder,
                                             env=worker_environment(), **_own_group())
        return self

    def poll(self) -> list[dict[str, Any]]:
        """Records of the lines written since the last call, oldest first."""
        records = []
        for line in self._reader.read():
            self._lines = (self._lines + [line])[-200:]
            record = parse_line(line)
            if record["kind"] == "error":
                self._lastError = record["message"]
            records.append(record)
        return records

    @property
    def returncode(self) -> int | None:
        """The exit status once the command has ended (negative: killed by that signal), else None."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def cancel(self, grace: float = 5.0) -> None:
        """Stop the command and everything it started: SIGTERM to its group, SIGKILL after ``grace`` s."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.cancelled = True
        if os.name == "nt":
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True,
                               timeout=grace)
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2.0)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)  # the command leads its own process group
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2.0)

    # ------------------------------------------------------------------ outcome
    def errorMessage(self) -> str:
        """One line: why the command failed (its own ``regsuite: error:`` line when it wrote one)."""
        self.poll()
        if self._lastError:
            return self._lastError
        code = self.returncode
        command = self.arguments[0] if self.arguments else "regsuite"
        how = f"exited with status {code}"
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        tail = " | ".join(" ".join(line.split()) for line in self._lines[-_TAIL_LINES:])
        return f"the regsuite {command} command {how}" + (f"; last output: {tail}" if tail else "")
