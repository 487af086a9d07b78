"""Repository-wide pytest hooks: the package's docstring examples run as doctests.

``pyproject.toml`` collects ``RegistrationSuite/regsuite`` with ``--doctest-modules``. The
examples of the MRML bridge (``regsuite.mrml``) import slicer-core's ``slicer``/``vtk``; when an
optional package cannot be imported, by the module itself or by an example, those doctests skip
locally and fail under CI (the rule of ``Testing/Python/optional_modules.py``). Any other
ImportError is a failure.
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path
from typing import Any, Iterable

import pytest
from _pytest.doctest import DoctestItem, DoctestModule, MultipleDoctestFailures

ROOT = Path(__file__).resolve().parent
PACKAGE_PARENT = ROOT / "RegistrationSuite"
TESTS = ROOT / "Testing" / "Python"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from optional_modules import missing_optional, skip_or_fail  # noqa: E402


def _module_name(path: Path) -> str | None:
    """``regsuite.x.y`` for a file of the package, else None."""
    try:
        relative = path.resolve().relative_to(PACKAGE_PARENT)
    except ValueError:
        return None
    parts = list(relative.with_suffix("").parts)
    if not parts or parts[0] != "regsuite":
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class PackageDoctestModule(DoctestModule):
    """The doctests of one ``regsuite`` module. The module is imported first by its package name,
    so that a missing optional package (skip or CI failure) is told apart from a bug of ours."""

    def collect(self) -> Iterable[Any]:
        name = _module_name(self.path)
        assert name is not None
        try:
            importlib.import_module(name)
        except ImportError as error:
            if missing_optional(error) is None:
                raise
            problem = f"doctests of {name} need {missing_optional(error)}, which cannot be imported ({error})"
        else:
            problem = ""
        if problem:  # outside the except block: a one-line report, not a chained traceback
            skip_or_fail(problem)
        yield from super().collect()


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    """Doctests are collected from the package only (test files, their helpers and the benchmark
    scripts hold no examples; ``slicer_standin.py`` needs slicer-core to be imported at all)."""
    results = yield
    in_package = _module_name(file_path) is not None
    kept = []
    for result in results:
        if type(result) is DoctestModule:
            if not in_package:
                continue
            result = PackageDoctestModule.from_parent(parent, path=file_path)
        kept.append(result)
    return kept


def _optional_import_failure(error: BaseException) -> ImportError | None:
    """The ImportError of an optional package behind a failed doctest example, if that is what failed."""
    failures = error.failures if isinstance(error, MultipleDoctestFailures) else [error]
    for failure in failures:
        if isinstance(failure, doctest.UnexpectedException):
            cause = failure.exc_info[1]
            if isinstance(cause, ImportError) and missing_optional(cause) is not None:
                return cause
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A package doctest whose example imports a missing optional package: skip, or fail under CI."""
    try:
        return (yield)
    except (doctest.UnexpectedException, MultipleDoctestFailures) as error:
        cause = _optional_import_failure(error) if isinstance(item, DoctestItem) else None
        if cause is None:
            raise
    # outside the except block, so that the report is the one line, not a chained traceback
    skip_or_fail(f"the example {item.name} needs {missing_optional(cause)}, which cannot be imported ({cause})")
