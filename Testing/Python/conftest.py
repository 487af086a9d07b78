"""Shared pytest fixtures: paths, the shared data folder, and a real MRML scene (slicer-core)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from optional_modules import require_module

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MODULES = ROOT / "RegistrationSuite"

# The Slicer modules' helper packages (e.g. RegSuiteRegistrationLib) import like they do in Slicer,
# where every module folder is on sys.path.
for folder in sorted(MODULES.glob("RegSuite*")):
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture()
def mrml() -> Iterator[Any]:
    """A fresh real ``vtkMRMLScene`` (slicer-core) with the module logics, as ``slicer.mrmlScene``.

    Yields a namespace with ``scene`` and ``logics``; ``slicer.ScriptedLoadableModule`` and
    ``slicer.modules`` are the thin test stand-ins of ``slicer_standin``.
    """
    require_module("slicer", "the MRML scene comes from slicer-core")
    import types

    import slicer
    import slicer_standin

    scene, logics = slicer_standin.make_scene()
    slicer_standin.install(logics)
    yield types.SimpleNamespace(scene=scene, logics=logics)
    scene.Clear(1)
