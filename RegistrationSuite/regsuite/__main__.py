"""``python -m regsuite``: the same as the ``regsuite`` command.

Example:
    $ python -m regsuite presets
"""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
