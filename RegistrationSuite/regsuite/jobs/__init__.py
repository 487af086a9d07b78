"""Registrations in a background process, followed from a GUI's main thread (Slicer), or in-process.

The parent imports neither torch nor Slicer: only :mod:`regsuite.jobs.worker`, run as a child
process (``python -m regsuite.jobs.worker request.json``) or through :func:`run_in_process`,
loads the engine.

Example:
    >>> from regsuite.jobs import BackgroundRegistration, RegistrationRequest
    >>> job = BackgroundRegistration(RegistrationRequest("fixed.nii.gz", "moving.nii.gz", preset="rigid"))
    >>> job.start()  # doctest: +SKIP
    >>> events = job.poll()  # doctest: +SKIP
    >>> job.cancel()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .process import STATES, BackgroundRegistration, EventReader, default_python
from .request import PART_KINDS, JobFiles, JobResult, RegistrationRequest

__all__ = ["BackgroundRegistration", "RegistrationRequest", "JobResult", "JobFiles", "EventReader",
           "run_in_process", "default_python", "STATES", "PART_KINDS"]


def __getattr__(name: str) -> Any:
    # The worker module is imported on first use only, so that ``python -m regsuite.jobs.worker``
    # does not find it already imported by this package.
    if name == "run_in_process":
        from .worker import run_in_process

        return run_in_process
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
