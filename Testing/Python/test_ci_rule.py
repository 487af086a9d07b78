"""The suite's rule for optional packages: a missing one skips locally and fails under CI."""

from __future__ import annotations

import pytest

from optional_modules import missing_optional, require_module, running_under_ci

MISSING = "PySide6.no_such_module_here"  # an optional package's module that never exists


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("TRUE", True), ("", False),
                                             ("false", False), ("0", False)])
def test_ci_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert running_under_ci() is expected


def test_a_missing_optional_module_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_here cannot be imported"):
        require_module(MISSING, "for the test")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so a missing test dependency is an error"):
        require_module(MISSING, "for the test")


def test_our_own_modules_are_never_guarded():
    with pytest.raises(ValueError, match="import 'regsuite.engine' plainly"):
        require_module("regsuite.engine")
    assert missing_optional(ModuleNotFoundError("No module named 'regsuite.x'", name="regsuite.x")) is None
    assert missing_optional(ModuleNotFoundError("No module named 'vtkmodules'", name="vtkmodules.all")) == "vtkmodules"
