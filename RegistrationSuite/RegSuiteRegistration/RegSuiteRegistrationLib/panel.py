"""Small helpers of the registration panel (no Qt or torch import): the progress line, and
selecting a name in a combo box, and an error's one-line text.

Example:
    >>> event = {"stage": 2, "stages": 2, "level": 1, "levels": 2, "iteration": 5, "iterations": 10,
    ...          "stage_name": "affine", "metric": -0.5, "elapsed": 3.0}
    >>> progressFraction(event)
    0.625
"""

from __future__ import annotations

import logging


def progressFraction(event):
    """Overall completion in [0, 1] of a progress event (1-based stage, level and iteration)."""
    stages, levels, iterations = (max(int(event[key]), 1) for key in ("stages", "levels", "iterations"))
    levelDone = (event["level"] - 1 + min(event["iteration"], iterations) / iterations) / levels
    return min(max((event["stage"] - 1 + levelDone) / stages, 0.0), 1.0)


def progressText(event):
    """One line for the status label: stage name, level, iteration, metric and elapsed time."""
    return (f"Stage {event['stage']}/{event['stages']} {event['stage_name']} | "
            f"level {event['level']}/{event['levels']} | "
            f"iteration {event['iteration']}/{event['iterations']} | "
            f"metric {event['metric']:.5g} | {event['elapsed']:.1f} s")


def selectText(combo, text):
    """Selects ``text`` in ``combo``, adding it when missing (e.g. a preset saved on another computer)."""
    if combo.findText(text) < 0 and text:
        combo.addItem(text)
    combo.currentIndex = combo.findText(text)


def errorText(error):
    """The one-line message of ``error``; unexpected errors also go to the log with their traceback."""
    from regsuite.errors import RegSuiteError

    if not isinstance(error, (RegSuiteError, ValueError)):
        logging.error("Registration Suite: unexpected error", exc_info=error)
    return str(error) or type(error).__name__
