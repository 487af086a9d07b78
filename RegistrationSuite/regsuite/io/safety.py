"""Checks a command-line run (regsuite or Slicer batch) makes before any work, and its signal handling.

- :func:`check_output` / :func:`check_distinct`: every output has a known extension and a
  writable folder, is not an existing folder, and differs from every other output and from
  every input (preset file and point files included; symbolic and hard links are seen through);
- :func:`usable_threads`: ``--threads`` is capped to the CPU cores this process may use;
- :func:`check_seed`: seeds outside what torch and numpy accept are refused;
- :func:`termination_as_exception`: SIGTERM/SIGHUP (what batch schedulers send) raise
  :class:`Terminated`, so staged outputs are cleaned up as for Ctrl-C.

Example:
    >>> check_seed(7)
    7
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError
from .atomic import check_output_path, check_suffix, split_suffix

#: Largest seed: torch.manual_seed takes 64-bit unsigned values, numpy's generators any
#: non-negative integer.
MAX_SEED = 2**64 - 1


class Terminated(BaseException):
    """A termination signal arrived; ``signum`` is its number (exit status 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def check_output(path: str | None, allowed: Sequence[str], what: str) -> None:
    """Raise :class:`InputError` unless ``path`` (if given) can be written as one of ``allowed``."""
    if path is None:
        return
    check_suffix(path, allowed, what)
    check_output_path(path, what)
    for data in _data_files(path):  # the pixel data file a detached header gets beside it
        check_output_path(data, f"data file of the {what}")


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_distinct(inputs: Sequence[str | os.PathLike[str] | None],
                   outputs: Sequence[str | None]) -> None:
    """Outputs must differ from each other and from every input (inputs are never modified).

    A detached header's data file (``out.mhd`` -> ``out.zraw``) counts as an output too.
    """
    named = [str(path) for path in outputs if path is not None]
    for number, path in enumerate(named):
        for other in named[:number]:
            if _same(path, other):
                raise InputError(f"output '{path}' is given twice (also as '{other}')")
    written = named + [str(data) for path in named for data in _data_files(path)]
    for path in inputs:
        if path is None:
            continue
        for output in written:
            if _same(output, str(path)):
                raise InputError(f"output '{output}' would overwrite the input '{path}'")


def _data_files(path: str) -> list[Path]:
    stem, suffix = split_suffix(Path(path).name)
    extensions = {".mhd": (".zraw", ".raw"), ".nhdr": (".raw.gz", ".raw")}.get(suffix.lower(), ())
    return [Path(path).with_name(stem + extension) for extension in extensions]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def usable_threads(threads: int | None, warn: Any = None) -> int | None:
    """``threads`` capped to :func:`usable_cores` (with a one-line warning); refuse ``< 1``."""
    if threads is None:
        return None
    if threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    cores = usable_cores()
    if threads > cores:
        message = f"regsuite: warning: --threads {threads} is more than the {cores} usable CPU cores; using {cores}"
        print(message, file=warn if warn is not None else sys.stderr)
        return cores
    return threads


def check_seed(seed: int) -> int:
    """Return ``seed``; raise :class:`InputError` outside 0 .. :data:`MAX_SEED`."""
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be between 0 and 2**64 - 1, got {seed}")
    return seed


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def termination_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only).

    The previous handlers come back afterwards, so calling ``main`` from Python is harmless.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {}
    for name in names:
        number = getattr(signal, name)
        previous[number] = signal.signal(number, _raise_terminated)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
