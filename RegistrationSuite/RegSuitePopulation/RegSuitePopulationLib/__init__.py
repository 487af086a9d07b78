"""Helpers of the Registration Population module (a package, so Slicer does not load them as modules).

* :mod:`.logic` - :class:`RegSuitePopulationLogic`: multi-atlas segmentation, template building and
  longitudinal change, each run by the ``regsuite`` command line in a background process;
* :mod:`.inputs` - checking the nodes and paths given, exporting scene volumes, atlases and
  segmentations to the files the command reads;
* :mod:`.jobs` - :class:`PopulationJob` and one job per workflow: a run of the command, its
  progress records, its end;
* :mod:`.results` - the outputs brought into the scene: segmentation, template, change table,
  chart and Jacobian map;
* :mod:`.undo` - the nodes and view layers a run changed, put back when it does not complete;
* :mod:`.messages` - the one-line errors and messages;
* :mod:`.process` - that background process and the parsing of its progress lines;
* :mod:`.parameters` - the panel's parameter node.

Only :mod:`.logic` (and what it imports) is loaded here; SimpleITK and the ``regsuite`` engine are
imported lazily (never PyTorch, which only the background process needs), so loading the module
in Slicer stays cheap.
"""


def _find_engine() -> None:
    """Run from a source checkout ("Add module path"), the engine sits in the folder above the module."""
    import importlib.util, os, sys  # noqa: E401, PLC0415
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if importlib.util.find_spec("regsuite") is None and os.path.isdir(os.path.join(folder, "regsuite")):
        sys.path.append(folder)


_find_engine()

from .logic import FUSION_METHODS, WORKFLOWS, PopulationJob, RegSuitePopulationLogic

__all__ = ["FUSION_METHODS", "WORKFLOWS", "PopulationJob", "RegSuitePopulationLogic"]
