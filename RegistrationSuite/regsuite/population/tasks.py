"""One task = one registration, one warp or one fusion, described by file paths only.

A :class:`Task` names a top-level function (``"module:function"``), its keyword arguments
(plain JSON values: paths are strings, never images) and the files it writes. Workers import
the function and call it, so nothing heavier than a few strings travels between processes.
Each step writes its outputs atomically; when it has returned, :func:`execute` writes a
*stamp* (``<stamp>.json``: the task's arguments, the size and modification time of the input
files they name, and what it returned). A task whose stamp matches its arguments and inputs and
whose outputs all exist is finished: ``--resume`` skips it (an input rewritten since is read
again), and a task retried after a crash simply writes its outputs again.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> task = Task("copy", "regsuite.population.tasks:example_step",
    ...             {"text": "hi", "output": os.path.join(folder, "out.txt")},
    ...             outputs=(os.path.join(folder, "out.txt"),), stamp=os.path.join(folder, "copy.json"))
    >>> task.finished()
    False
    >>> execute(task)["result"]
    {'characters': 2}
    >>> task.finished()
    True
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import InputError
from ..io.atomic import atomic_output

__all__ = ["Task", "execute", "limited_threads", "example_step"]


@dataclass(frozen=True)
class Task:
    """A unit of work: ``function(**kwargs)`` writing ``outputs``; ``stamp`` marks it finished."""

    key: str
    function: str
    kwargs: Mapping[str, Any]
    outputs: tuple[str, ...]
    stamp: str
    #: keys of tasks whose outputs this one reads (the runner orders them; see ``runner``)
    after: tuple[str, ...] = field(default=())

    def finished(self) -> bool:
        """True when the stamp records these very arguments, its input files are unchanged (size
        and modification time) and every output exists."""
        try:
            recorded = json.loads(Path(self.stamp).read_text())
        except (OSError, ValueError):
            return False
        if recorded.get("function") != self.function or recorded.get("kwargs") != _plain(self.kwargs):
            return False
        if "inputs" in recorded and recorded["inputs"] != self.input_signature():
            return False
        return all(os.path.exists(path) for path in self.outputs)

    def input_signature(self) -> dict[str, list[int]]:
        """Size and modification time of every existing file the arguments name (outputs excepted)."""
        found: dict[str, list[int]] = {}

        def visit(value: Any) -> None:
            if isinstance(value, str):
                if value not in self.outputs and os.path.isfile(value):
                    info = os.stat(value)
                    found[value] = [info.st_size, info.st_mtime_ns]
            elif isinstance(value, (list, tuple)):
                for item in value:
                    visit(item)
            elif isinstance(value, Mapping):
                for item in value.values():
                    visit(item)

        visit(dict(self.kwargs))
        return found

    def recorded_result(self) -> dict[str, Any]:
        """What a finished task returned (from its stamp)."""
        return json.loads(Path(self.stamp).read_text()).get("result", {})


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def resolve(function: str) -> Callable[..., Any]:
    """The callable named ``"package.module:function"``."""
    module_name, _, name = function.partition(":")
    if not name:
        raise InputError(f"task function '{function}' must be written 'module:function'")
    return getattr(importlib.import_module(module_name), name)


@contextlib.contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Within the block, torch, SimpleITK/ITK and OpenMP use ``threads`` threads (None: as they are).

    ITK otherwise starts one thread per core in every worker, and N workers on N cores would
    run N^2 threads. The previous settings come back afterwards (a task run inside a Python
    session leaves that session as it was).
    """
    if threads is None:
        yield
        return
    import SimpleITK as sitk
    import torch

    saved = (torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
             os.environ.get("OMP_NUM_THREADS"))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(int(threads))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved[1])
        if saved[2] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved[2]


def execute(task: Task, threads: int | None = None) -> dict[str, Any]:
    """Run ``task`` here (threads limited to ``threads``), stamp it, return the stamp's content."""
    start = time.perf_counter()
    inputs = task.input_signature()  # before the run: what it read
    with limited_threads(threads):
        result = resolve(task.function)(**task.kwargs) or {}
    record = {"key": task.key, "function": task.function, "kwargs": _plain(task.kwargs), "inputs": inputs,
              "result": _plain(result), "seconds": round(time.perf_counter() - start, 3)}
    os.makedirs(os.path.dirname(os.path.abspath(task.stamp)), exist_ok=True)
    with atomic_output(task.stamp) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    return record


def example_step(text: str, output: str) -> dict[str, int]:
    """A tiny step for examples and tests: write ``text`` to ``output``."""
    with atomic_output(output) as tmp:
        Path(tmp).write_text(text)
    return {"characters": len(text)}
