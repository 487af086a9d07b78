"""Helpers of the Registration Quality module (a package, so Slicer does not load them as modules).

* :mod:`.logic` - :class:`RegSuiteQualityLogic`: one method per quality measure, plus ``process``;
* :mod:`.inputs` - checked reading of the input nodes as SimpleITK images and LPS points.

Only :mod:`.logic` is imported here; it imports SimpleITK and the ``regsuite`` measures lazily so
that loading the module in Slicer stays cheap.
"""


def _find_engine() -> None:
    """Run from a source checkout ("Add module path"), the engine sits in the folder above the module."""
    import importlib.util, os, sys  # noqa: E401, PLC0415
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if importlib.util.find_spec("regsuite") is None and os.path.isdir(os.path.join(folder, "regsuite")):
        sys.path.append(folder)


_find_engine()

from .logic import MEASURES, NEEDS, RegSuiteQualityLogic

__all__ = ["MEASURES", "NEEDS", "RegSuiteQualityLogic"]
