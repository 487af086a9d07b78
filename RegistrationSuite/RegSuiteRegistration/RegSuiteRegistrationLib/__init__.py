"""Helpers of the Registration Suite module (a package, so Slicer does not load them as modules).

* :mod:`.logic` - :class:`RegSuiteRegistrationLogic`, the one entry point (nodes in, nodes out);
* :mod:`.dependencies` - PyTorch installed on demand, with the user's confirmation;
* :mod:`.batch` - ``Slicer --no-main-window --python-script batch.py ...``.
"""
