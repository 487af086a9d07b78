"""Run many :class:`~.tasks.Task` objects: in this process, or on Dask workers.

:func:`make_runner` chooses:

- ``scheduler="tcp://host:8786"``: the Dask scheduler already running there (a lab server,
  SLURM through dask-jobqueue, Kubernetes); it must answer within ``timeout`` seconds;
- ``workers=N`` (N > 1): a Dask ``LocalCluster`` of N worker processes, one task at a time
  each, every task limited to ``threads_per_worker`` threads (torch, ITK, OpenMP);
- neither: as many workers as this machine's cores and memory hold (:func:`default_workers`);
  when that is one, or when Dask is not installed, the tasks run one after another in this
  process with the same outputs.

Finished tasks (:meth:`Task.finished`) are skipped. A failed task is tried once more (on Dask,
possibly on another worker; a worker that dies mid-task has its task rescheduled by Dask), and a
task that still fails is reported with its one-line error after the others have finished
(:class:`TasksFailed`).

Example:
    >>> import os, tempfile
    >>> from regsuite.population.tasks import Task
    >>> folder = tempfile.mkdtemp()
    >>> tasks = [Task(f"t{i}", "regsuite.population.tasks:example_step",
    ...               {"text": "x" * i, "output": os.path.join(folder, f"{i}.txt")},
    ...               (os.path.join(folder, f"{i}.txt"),), os.path.join(folder, f"t{i}.json")) for i in range(3)]
    >>> with make_runner(workers=None, local=True) as runner:
    ...     [outcome.status for outcome in runner.run(tasks)]
    ['done', 'done', 'done']
    >>> with make_runner(local=True) as runner:  # a second time: nothing to do
    ...     [outcome.status for outcome in runner.run(tasks)]
    ['skipped', 'skipped', 'skipped']
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import InputError, RegSuiteError
from ..io.safety import usable_cores
from .tasks import Task, execute

__all__ = ["TaskOutcome", "TasksFailed", "Runner", "SerialRunner", "DaskRunner", "make_runner", "default_workers",
           "dask_available", "PER_TASK_BYTES"]

#: Memory one brain registration may take at its peak (measured 2.0-2.9 GB for brain-mri).
PER_TASK_BYTES = 4 << 30


@dataclass
class TaskOutcome:
    """What became of one task: ``status`` is ``done``, ``skipped`` (finished before) or ``failed``."""

    key: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


class TasksFailed(RegSuiteError):
    """Some tasks failed twice; the others finished. ``outcomes`` lists every task."""

    def __init__(self, outcomes: list[TaskOutcome]) -> None:
        failed = [outcome for outcome in outcomes if outcome.status == "failed"]
        shown = "; ".join(f"{outcome.key}: {outcome.error}" for outcome in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        super().__init__(f"{len(failed)} of {len(outcomes)} tasks failed ({shown}{more})")
        self.outcomes = outcomes


Progress = Callable[[int, int, TaskOutcome], None]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def dask_available() -> bool:
    """True when ``dask.distributed`` can be imported (the ``dask`` extra)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def total_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_workers(threads_per_worker: int) -> int:
    """Workers this machine holds: its cores shared out, and :data:`PER_TASK_BYTES` each."""
    by_cores = max(1, usable_cores() // max(1, threads_per_worker))
    memory = total_memory()
    by_memory = max(1, memory // PER_TASK_BYTES) if memory else by_cores
    return int(min(by_cores, by_memory))


class Runner:
    """Runs tasks; use as a context manager so that workers are shut down."""

    description = "runner"

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release workers (nothing to do for the serial runner)."""

    def run(self, tasks: Sequence[Task], progress: Progress | None = None) -> list[TaskOutcome]:
        """Run the unfinished ``tasks``; raise :class:`TasksFailed` if any failed twice."""
        keys = [task.key for task in tasks]
        if len(set(keys)) != len(keys):
            raise InputError("task keys must be unique")
        outcomes: dict[str, TaskOutcome] = {}
        pending = []
        for task in tasks:
            if task.finished():
                outcomes[task.key] = TaskOutcome(task.key, "skipped", task.recorded_result())
                if progress is not None:
                    progress(len(outcomes), len(tasks), outcomes[task.key])
            else:
                pending.append(task)

        def report(outcome: TaskOutcome) -> None:
            outcomes[outcome.key] = outcome
            if progress is not None:
                progress(len(outcomes), len(tasks), outcome)

        if pending:
            self._run_pending(pending, report)
        ordered = [outcomes[key] for key in keys]
        if any(outcome.status == "failed" for outcome in ordered):
            raise TasksFailed(ordered)
        return ordered

    def _run_pending(self, tasks: list[Task], report: Callable[[TaskOutcome], None]) -> None:
        raise NotImplementedError


class SerialRunner(Runner):
    """Every task in this process, one after another, each tried at most twice."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.description = "in this process" + (f", {threads} threads" if threads else "")

    def _run_pending(self, tasks: list[Task], report: Callable[[TaskOutcome], None]) -> None:
        for task in tasks:
            error: BaseException | None = None
            for attempt in range(2):
                try:
                    record = execute(task, self.threads)
                    report(TaskOutcome(task.key, "done", record["result"]))
                    error = None
                    break
                except InputError as bad:  # bad input fails the same way twice
                    error = bad
                    break
                except Exception as failure:  # noqa: BLE001 - reported, others go on
                    error = failure
            if error is not None:
                report(TaskOutcome(task.key, "failed", error=_one_line(error)))


def _execute_on_worker(task: Task, threads: int | None) -> dict[str, Any]:
    """Dask entry point: run ``task`` with this worker's share of the machine's threads."""
    if threads is None:
        try:
            from distributed import get_worker

            threads = max(1, usable_cores() // max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            threads = None
    return execute(task, threads)


class DaskRunner(Runner):
    """Tasks on a Dask cluster: a new ``LocalCluster`` or a running scheduler."""

    def __init__(self, workers: int | None = None, threads_per_worker: int | None = None,
                 scheduler: str | None = None, timeout: float = 10.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("running on a Dask scheduler needs dask: pip install 'regsuite[dask]'") from None
        self.threads = threads_per_worker
        self.cluster = None
        if scheduler is not None:
            try:
                self.client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
            except (OSError, TimeoutError, ValueError) as error:
                raise InputError(f"Dask scheduler '{scheduler}' did not answer within {timeout:g} s "
                                 f"({_one_line(error)[:120]})") from None
            self.description = f"Dask scheduler {scheduler}"
            return
        threads = threads_per_worker or 1
        count = workers or default_workers(threads)
        # One task at a time per worker process; the task itself uses `threads` threads.
        self.cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.CRITICAL,
                                    memory_limit=0, env={"OMP_NUM_THREADS": str(threads)})
        self.client = Client(self.cluster, set_as_default=False)
        self.threads = threads
        self.description = f"Dask LocalCluster, {count} workers x {threads} threads"

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def _run_pending(self, tasks: list[Task], report: Callable[[TaskOutcome], None]) -> None:
        from distributed import as_completed

        futures = {self.client.submit(_execute_on_worker, task, self.threads, key=f"regsuite-{task.key}-{os.getpid()}",
                                      pure=False, retries=1): task for task in tasks}
        for future in as_completed(list(futures), loop=self.client.loop):
            task = futures[future]
            try:
                record = future.result()
                report(TaskOutcome(task.key, "done", record["result"]))
            except Exception as error:  # noqa: BLE001 - reported, others go on
                report(TaskOutcome(task.key, "failed", error=_one_line(error)))


def make_runner(workers: int | None = None, threads_per_worker: int | None = None, scheduler: str | None = None,
                local: bool = False, timeout: float = 10.0) -> Runner:
    """The runner for ``--workers/--threads-per-worker/--scheduler`` (``local=True``: in process)."""
    for value, name in ((workers, "--workers"), (threads_per_worker, "--threads-per-worker")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a whole number of at least 1, got {value!r}")
    if threads_per_worker is not None and threads_per_worker > usable_cores():
        print(f"regsuite: warning: --threads-per-worker {threads_per_worker} is more than the {usable_cores()} "
              f"usable CPU cores; using {usable_cores()}", file=sys.stderr)
        threads_per_worker = usable_cores()
    if scheduler is not None:
        if workers is not None:
            raise InputError("--workers starts a local cluster; it cannot be combined with --scheduler")
        return DaskRunner(threads_per_worker=threads_per_worker, scheduler=scheduler, timeout=timeout)
    threads = threads_per_worker or min(2, usable_cores())
    if local:
        return SerialRunner(threads_per_worker)
    if workers is None:
        workers = default_workers(threads)
    if workers == 1:
        return SerialRunner(threads)
    if not dask_available():
        print("regsuite: warning: dask is not installed; running the tasks one after another in this process "
              "(pip install 'regsuite[dask]' for --workers)", file=sys.stderr)
        return SerialRunner(threads)
    return DaskRunner(workers, threads)
