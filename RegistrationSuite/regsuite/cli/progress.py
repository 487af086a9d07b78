"""One-line progress display of a registration on stderr.

On a terminal the line is rewritten in place with ``\\r`` (at most ``rate`` times a second);
on a pipe or a log file only the first and the last event of each stage/pyramid level are
written, one per line, so logs stay readable.

Example:
    >>> import io
    >>> from types import SimpleNamespace
    >>> stream = io.StringIO()
    >>> bar = ProgressBar(stream, interactive=False)
    >>> bar(SimpleNamespace(stage=1, stages=2, stage_name="rigid", level=1, levels=3,
    ...                     iteration=1, iterations=100, metric=-0.5, elapsed=0.1))
    >>> bar.close()
    >>> stream.getvalue().splitlines()[0]
    'stage 1/2 rigid | level 1/3 | iter 1/100 | metric -0.5 | 0.1 s'
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_event(event: Any) -> str:
    """The text of one progress line.

    ``event`` has the fields of ``regsuite.engine.registration.ProgressEvent``: ``stage``,
    ``stages``, ``stage_name``, ``level``, ``levels``, ``iteration``, ``iterations`` (the
    engine's counters are 1-based, as shown), ``metric`` and ``elapsed`` (s).
    """
    parts = [
        f"stage {event.stage}/{event.stages} {event.stage_name}",
        f"level {event.level}/{event.levels}",
        f"iter {event.iteration}/{event.iterations}",
        f"metric {event.metric:.6g}",
        f"{event.elapsed:.1f} s",
    ]
    return " | ".join(parts)


class ProgressBar:
    """Callable progress sink for ``register(progress=...)`` writing to ``stream``.

    ``interactive`` (default: ``stream.isatty()``) selects in-place updates; ``rate`` limits
    in-place redraws per second. ``close()`` ends the line; it is safe to call twice.
    """

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None,
                 rate: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.min_interval = 1.0 / rate if rate > 0 else 0.0
        self._last_draw = float("-inf")
        self._last_key: tuple[int, int] | None = None
        self._width = 0
        self._pending: str | None = None

    def __call__(self, event: Any) -> None:
        text = format_event(event)
        key = (int(event.stage), int(event.level))
        if self.interactive:
            now = time.monotonic()
            if key != self._last_key or now - self._last_draw >= self.min_interval:
                self._draw(text)
                self._last_draw = now
            else:
                self._pending = text
        else:
            if key != self._last_key:
                if self._pending is not None:  # the last event of the previous level
                    self.stream.write(self._pending + "\n")
                self.stream.write(text + "\n")
                self.stream.flush()
                self._pending = None
            else:
                self._pending = text
        self._last_key = key

    def _draw(self, text: str) -> None:
        padding = " " * max(0, self._width - len(text))
        self.stream.write("\r" + text + padding)
        self.stream.flush()
        self._width = len(text)
        self._pending = None

    def close(self) -> None:
        """Show the last event and end the line (interactive) or write it (log mode)."""
        if self.interactive:
            if self._pending is not None:
                self._draw(self._pending)
            if self._width:
                self.stream.write("\n")
                self.stream.flush()
            self._width = 0
        elif self._pending is not None:
            self.stream.write(self._pending + "\n")
            self.stream.flush()
        self._pending = None


__all__ = ["ProgressBar", "format_event"]
