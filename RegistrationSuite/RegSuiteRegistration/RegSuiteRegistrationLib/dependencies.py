"""PyTorch (and h5py) on demand: checked lazily, installed only after the user agrees.

Slicer does not bundle PyTorch. The registration runs in a background ``PythonSlicer`` process
that imports torch, so torch must be installed into Slicer's Python; h5py (small) lets the worker
write deformable results as compact ``.h5`` files (without it they are written full size). :func:`ensureTorch` is called
when the user presses Apply (never from a widget's constructor). It prefers the PyTorch Utils
module of the SlicerPyTorch extension, which picks the CUDA build matching the computer, and falls
back to ``slicer.util.pip_install``. The packages Slicer bundles (numpy, SimpleITK, vtk) are pinned
to their installed versions through a pip constraints file so the install never replaces them.

Example (Slicer's Python console)::

    from RegSuiteRegistrationLib.dependencies import ensureTorch
    ensureTorch(askConfirmation=True)   # True when ``import torch`` works
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile
from typing import Any

#: Packages Slicer ships that an install must never upgrade or replace.
BUNDLED = ("numpy", "SimpleITK", "vtk")

#: What the background worker imports beyond Slicer's own packages.
NEEDED = ("torch", "h5py")

INSTALL_QUESTION = (
    "Registration Suite needs PyTorch (and h5py), which is not installed in Slicer yet.\n\n"
    "Install it now? It downloads several hundred MB (more for the GPU build) and can take a few minutes; "
    "Slicer's own packages are left as they are.")


def torchAvailable() -> bool:
    """True when ``import torch`` would work (torch itself is not imported)."""
    return importlib.util.find_spec("torch") is not None


def missingPackages() -> list[str]:
    """The packages of :data:`NEEDED` that cannot be imported here (none is imported)."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def constraintsFile(folder: str | None = None) -> str:
    """Write a pip constraints file pinning the bundled packages to their installed versions."""
    lines = []
    for name in BUNDLED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    handle, path = tempfile.mkstemp(prefix="regsuite-constraints-", suffix=".txt", dir=folder)
    with os.fdopen(handle, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    return path


def _pytorch_utils_logic() -> Any:
    """The SlicerPyTorch extension's logic, or None when that extension is not installed."""
    try:
        import PyTorchUtils  # noqa: PLC0415  (module of the SlicerPyTorch extension)
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


def ensureTorch(askConfirmation: bool = True) -> bool:
    """Make ``import torch`` (and ``import h5py``) work, installing them after the user agrees.

    Returns True when torch is importable afterwards, False when the user declined.
    """
    missing = missingPackages()
    if not missing:
        return True
    import slicer  # noqa: PLC0415

    if askConfirmation and not slicer.util.confirmOkCancelDisplay(INSTALL_QUESTION, "Install PyTorch"):
        return False
    utils = _pytorch_utils_logic() if "torch" in missing else None
    if utils is not None:
        utils.installTorch(askConfirmation=False)
        missing.remove("torch")
    if missing:
        constraints = constraintsFile()
        try:
            slicer.util.pip_install(f"{' '.join(missing)} --constraint {constraints}")
        finally:
            os.remove(constraints)
    importlib.invalidate_caches()
    return torchAvailable()
