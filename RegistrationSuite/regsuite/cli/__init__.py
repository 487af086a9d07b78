"""The ``regsuite`` command line; :func:`run` is its console entry point.

Example:
    $ regsuite presets
"""

from __future__ import annotations

import sys


def run() -> None:
    """Run :func:`regsuite.cli.main.main` and exit with its status.

    Importing the command (numpy, SimpleITK, torch) takes a noticeable moment; Ctrl-C during it
    also ends with one line and status 130 instead of a traceback.
    """
    try:
        from .main import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("\nregsuite: interrupted; no output written\n")
        code = 130
    sys.exit(code)
