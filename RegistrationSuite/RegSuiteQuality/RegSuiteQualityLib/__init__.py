"""Helpers of the Registration Quality module (a package, so Slicer does not load them as modules).

* :mod:`.logic` - :class:`RegSuiteQualityLogic`: one method per quality measure, plus ``process``;
* :mod:`.inputs` - checked reading of the input nodes as SimpleITK images and LPS points.

Only :mod:`.logic` is imported here; it imports SimpleITK and the ``regsuite`` measures lazily so
that loading the module in Slicer stays cheap.
"""

from .logic import MEASURES, NEEDS, RegSuiteQualityLogic

__all__ = ["MEASURES", "NEEDS", "RegSuiteQualityLogic"]
