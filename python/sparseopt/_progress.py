"""A tiny progress display with no dependencies: live bars on a terminal, quiet elsewhere.

``progress(iterable, total=, desc=)`` wraps a loop (like tqdm); :class:`Progress` shows one line
per counter plus a total (what :func:`sparseopt.hogwild.run` uses for its workers).

On a terminal (the stream's ``isatty()``) the lines are redrawn in place at most ten times a
second. Elsewhere (a log file, a pipe, pytest's capture) a run shorter than ``interval`` seconds
prints nothing; a longer one prints one summary line every ``interval`` seconds and a last one
at the end. ``enabled=False``, or the environment variable ``SPARSEOPT_PROGRESS=0``, turns the
display off.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import IO, Iterable, Iterator, Sequence, TypeVar

__all__ = ["progress", "Progress"]

T = TypeVar("T")

_REDRAW_S = 0.1  # at most this often on a terminal
_LOG_INTERVAL_S = 30.0  # one summary line this often elsewhere


def _enabled(enabled: bool | None) -> bool:
    if enabled is None:
        return os.environ.get("SPARSEOPT_PROGRESS", "1").strip() not in ("0", "false", "no", "off")
    return bool(enabled)


def _si(x: float) -> str:
    """3 significant digits with a k/M/G suffix: 950, 1.23k, 45.6M."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}" if x != int(x) else str(int(x))


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_line(label: str, done: int, total: int | None, elapsed: float, unit: str,
                width: int = 80, bar_width: int = 20) -> str:
    """One status line: label, percentage and a bar of ``bar_width`` characters (when the total
    is known and the line fits ``width``), counts, elapsed time, time left and rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    tail = f"[{_clock(elapsed)}"
    if total is not None and rate > 0 and done < total:
        tail += f"<{_clock((total - done) / rate)}"
    tail += f", {_si(rate)} {unit}/s]"
    if total is None:
        line = f"{label} {done:,} {unit} {tail}"
    else:
        fraction = min(1.0, done / total) if total > 0 else 1.0
        head = f"{label} {100 * fraction:3.0f}%"
        rest = f"{done:,}/{total:,} {unit} {tail}"
        line = f"{head} {rest}"
        if len(line) + bar_width + 3 < width:
            filled = int(fraction * bar_width)
            line = f"{head} |{'#' * filled}{'.' * (bar_width - filled)}| {rest}"
    return line[: max(width - 1, 0)]


class Progress:
    """Status lines for several counters (one per label) and their sum.

    ``update(done, totals)`` gives the current counts (``totals[i]`` None or negative: unknown);
    it redraws only when due, so call it as often as convenient. ``close()`` draws the final
    state. The display writes to ``file`` (default ``sys.stderr``).
    """

    def __init__(self, labels: Sequence[str], *, desc: str | None = None, unit: str = "it",
                 file: IO[str] | None = None, enabled: bool | None = None,
                 interval: float = _LOG_INTERVAL_S):
        self._labels = list(labels)
        self._desc = desc
        self._unit = unit
        self._file = file if file is not None else sys.stderr
        self._on = _enabled(enabled) and self._file is not None
        self._tty = self._on and bool(getattr(self._file, "isatty", lambda: False)())
        self._interval = interval
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._drawn = 0  # lines on screen (terminal)
        self._logged = False  # any summary line written (not a terminal)
        self._done: list[int] = [0] * len(self._labels)
        self._totals: list[int | None] = [None] * len(self._labels)
        self._changed = [self._start] * len(self._labels)  # when each count last moved
        self._closed = False

    def update(self, done: Sequence[int], totals: Sequence[int | None] | None = None) -> None:
        if not self._on or self._closed:
            return
        now = time.perf_counter()
        done = [int(d) for d in done]
        self._changed = [now if d != old else t
                         for d, old, t in zip(done, self._done, self._changed)]
        self._done = done
        if totals is not None:
            self._totals = [None if t is None or t < 0 else int(t) for t in totals]
        if self._tty:
            if now - self._last_draw >= _REDRAW_S:
                self._draw(now)
        elif now - self._start >= self._interval and now - self._last_draw >= self._interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state (on a terminal, or after summary lines were logged)."""
        if not self._on or self._closed:
            return
        if self._tty or self._logged:
            self._draw(time.perf_counter())
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _own_elapsed(self, i: int, elapsed: float) -> float:
        # A finished counter keeps the time and rate it finished with.
        t = self._totals[i]
        return self._changed[i] - self._start if t is not None and self._done[i] >= t else elapsed

    def _lines(self, elapsed: float, width: int) -> list[str]:
        if len(self._labels) == 1:
            label = self._desc or self._labels[0]
            return [format_line(label, self._done[0], self._totals[0],
                                self._own_elapsed(0, elapsed), self._unit, width).lstrip()]
        total_label = self._desc or "total"
        pad = max(len(label) for label in [*self._labels, total_label])
        lines = [format_line(label.ljust(pad), d, t, self._own_elapsed(i, elapsed), self._unit,
                             width)
                 for i, (label, d, t) in enumerate(zip(self._labels, self._done, self._totals))]
        known = [t for t in self._totals if t is not None]
        total = sum(known) if len(known) == len(self._totals) else None
        lines.append(format_line(total_label.ljust(pad), sum(self._done), total, elapsed,
                                 self._unit, width))
        return lines

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        self._last_draw = now
        try:
            if self._tty:
                width = shutil.get_terminal_size((80, 24)).columns
                lines = self._lines(elapsed, width)
                out = f"\x1b[{self._drawn}A" if self._drawn else ""
                out += "".join(f"\r\x1b[2K{line}\n" for line in lines)
                self._drawn = len(lines)
            else:
                lines = self._lines(elapsed, 1 << 30)
                out = lines[-1] + "\n"  # the total (or the only counter)
                self._logged = True
            self._file.write(out)
            self._file.flush()
        except (OSError, ValueError):  # a closed or broken stream: stop drawing, keep training
            self._on = False


def progress(iterable: Iterable[T], total: int | None = None, desc: str | None = None, *,
             unit: str = "it", file: IO[str] | None = None, enabled: bool | None = None,
             interval: float = _LOG_INTERVAL_S) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing a progress bar (``total`` defaults to
    ``len(iterable)`` when it has one)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = Progress([desc or ""], unit=unit, file=file, enabled=enabled, interval=interval)
    totals = [total]
    done = 0
    try:
        for item in iterable:
            yield item
            done += 1
            bar.update((done,), totals)
    finally:
        bar.update((done,), totals)
        bar.close()
