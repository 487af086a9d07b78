"""Helpers of the Registration Suite module (a package, so Slicer does not load them as modules).

* :mod:`.logic` - :class:`RegSuiteRegistrationLogic`, the one entry point (nodes in, nodes out);
* :mod:`.dependencies` - PyTorch installed on demand, with the user's confirmation;
* :mod:`.batch` - ``Slicer --no-main-window --python-script batch.py ...``.
"""


def _find_engine() -> None:
    """Run from a source checkout ("Add module path"), the engine sits in the folder above the module."""
    import importlib.util, os, sys  # noqa: E401, PLC0415
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if importlib.util.find_spec("regsuite") is None and os.path.isdir(os.path.join(folder, "regsuite")):
        sys.path.append(folder)


_find_engine()
