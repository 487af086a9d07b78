"""``python -m regsuite``: the same as the ``regsuite`` command.

Example:
    $ python -m regsuite presets
"""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
