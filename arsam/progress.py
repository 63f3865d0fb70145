"""A progress bar on stderr for long commands, without a dependency.

On a terminal the bar is redrawn in place (at most every 0.2 s); elsewhere (a log file, CI) a
line is printed each time another tenth of the work is done, so logs stay short.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


class Progress:
    """``done/total`` units of work as a bar with the elapsed time and an estimate of the rest.

    Use as a context manager (or call :meth:`close`); ``update(n, note)`` after each unit, the
    note (e.g. ``'seed 2/3'``) shown after the bar.
    """

    def __init__(self, total: int, label: str, stream: Optional[TextIO] = None, width: int = 24,
                 clock: Callable[[], float] = time.monotonic):
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise ValueError(f"total must be an int >= 1, got {total!r}")
        self.total, self.label, self.width, self.clock = total, label, width, clock
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.note = 0, ""
        self.start = self._drawn = clock()
        self._tenths = 0

    def update(self, n: int = 1, note: Optional[str] = None) -> None:
        self.done = min(self.done + n, self.total)
        if note is not None:
            self.note = note
        now = self.clock()
        if self.tty:
            if now - self._drawn >= 0.2 or self.done == self.total:
                self._drawn = now
                self.stream.write("\r" + self.line(now))
                self.stream.flush()
        elif self.done * 10 // self.total > self._tenths:
            self._tenths = self.done * 10 // self.total
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        """``label [#####-----]  50% 5/10 0:04 elapsed, ~0:04 left  note``."""
        filled = self.width * self.done // self.total
        elapsed = now - self.start
        text = (f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] "
                f"{100 * self.done // self.total:3d}% {self.done}/{self.total} "
                f"{_clock(elapsed)} elapsed")
        if 0 < self.done < self.total:
            text += f", ~{_clock(elapsed * (self.total - self.done) / self.done)} left"
        return text + (f"  {self.note}" if self.note else "")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(self.clock()) + "\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
