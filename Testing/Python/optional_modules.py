"""The one rule for tests that need an optional third-party package (slicer-core, PySide6, vtk).

Locally a missing package skips the tests that need it. Under continuous integration
(environment variable ``CI`` set to ``true`` or ``1``, as GitHub Actions and most CI services do)
it fails them instead: a CI machine whose Slicer install broke must go red, not green with every
bridge and module test skipped. Our own modules (``regsuite``, the ``RegSuite*Lib`` packages) are
never guarded: they are imported plainly, and an ImportError there is a failure everywhere.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

#: Top-level names of the optional packages the suite may be run without (outside CI).
OPTIONAL_PACKAGES = frozenset({"slicer", "vtk", "vtkmodules", "PySide6", "qt", "ctk"})


def running_under_ci() -> bool:
    """True when the environment variable ``CI`` is ``true`` or ``1`` (any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing_optional(error: ImportError) -> str | None:
    """The optional package whose absence caused ``error``, or None (then it is our bug)."""
    name = (error.name or "").split(".")[0]
    return name if name in OPTIONAL_PACKAGES else None


def skip_or_fail(message: str) -> None:
    """Skip (locally) or fail (under CI) the current test or module with ``message``."""
    if running_under_ci():
        pytest.fail(f"CI is set, so a missing test dependency is an error: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_module(name: str, why: str = "") -> ModuleType:
    """Import and return module ``name`` (an optional package such as ``slicer`` or
    ``PySide6.QtWidgets``); when it cannot be imported, skip locally and fail under CI.

    Works at module level (the whole file is skipped or fails) and inside a test or fixture.
    """
    top = name.split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        raise ValueError(f"require_module is for optional packages ({', '.join(sorted(OPTIONAL_PACKAGES))}); "
                         f"import '{name}' plainly")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        problem = f"{name} cannot be imported ({error}){'; ' + why if why else ''}"
    skip_or_fail(problem)  # outside the except block: a one-line report, not a chained traceback
    raise AssertionError("not reached")
