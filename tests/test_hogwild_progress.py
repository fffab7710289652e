"""The progress display (sparseopt._progress) and hogwild.run's per-worker progress: live lines
on a terminal, nothing for a short run elsewhere, a line every `interval` seconds for a long one,
off on request."""

from __future__ import annotations

import io
import sys

import pytest

from sparseopt import _progress, hogwild
from sparseopt._progress import Progress, format_line, progress

import _hogwild_helpers as W


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class BrokenStream(io.StringIO):
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError("stream closed")


def test_format_line():
    line = format_line("worker 0", 250, 1000, 2.0, "rows", width=100)
    assert line.startswith("worker 0  25% |#####...............| 250/1,000 rows [00:02<00:06")
    assert line.endswith("125 rows/s]")
    assert format_line("w", 12_345, None, 10.0, "it") == "w 12,345 it [00:10, 1.23k it/s]"
    finished = format_line("w", 7, 7, 1.0, "it")
    assert "100%" in finished and "<" not in finished  # no time left
    narrow = format_line("worker 1", 5, 10, 1.0, "it", width=30)
    assert len(narrow) <= 29 and "|" not in narrow  # no room for a bar
    assert format_line("w", 0, 0, 0.0, "it").startswith("w 100%")
    assert "3.6M it/s" in format_line("w", 3_600_000, None, 1.0, "it")


def test_terminal_shows_each_counter_and_the_total():
    out = FakeTerminal()
    bar = Progress(["worker 0", "worker 1"], unit="rows", file=out, enabled=True)
    bar.update([10, 30], [100, None])
    bar.update([50, 60], [100, 200])  # too soon to redraw
    bar.close()  # draws the final state
    text = out.getvalue()
    frames = text.split("\x1b[3A")
    assert len(frames) == 2
    first = frames[0].split("\n")
    assert "worker 0  10%" in first[0] and "worker 1 30 rows" in first[1]
    assert first[2].startswith("\r\x1b[2Ktotal    40 rows")  # a total unknown while one is
    last = frames[1]
    assert "worker 0  50%" in last and "worker 1  30%" in last and "110/300 rows" in last


def test_single_counter_uses_desc():
    out = FakeTerminal()
    bar = Progress([""], desc="epoch 3", file=out, enabled=True)
    bar.update([5], [10])
    bar.close()
    assert "epoch 3  50%" in out.getvalue()


def test_not_a_terminal_quiet_when_short_lines_when_long(monkeypatch):
    out = io.StringIO()
    bar = Progress(["a", "b"], file=out, enabled=True)
    bar.update([1, 2], [10, 10])
    bar.close()
    assert out.getvalue() == ""
    out = io.StringIO()
    bar = Progress(["a", "b"], file=out, enabled=True, interval=0.0)
    bar.update([1, 2], [10, 10])
    bar.update([5, 5], [10, 10])
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("total") for line in lines)
    assert "10/20" in lines[-1] and "\x1b" not in out.getvalue()


def test_disabled(monkeypatch):
    out = FakeTerminal()
    bar = Progress(["a"], file=out, enabled=False)
    bar.update([1], [2])
    bar.close()
    monkeypatch.setenv("SPARSEOPT_PROGRESS", "0")
    bar = Progress(["a"], file=out)
    bar.update([1], [2])
    bar.close()
    list(progress(range(3), file=out))
    assert out.getvalue() == ""


def test_broken_stream_turns_the_display_off():
    bar = Progress(["a"], file=BrokenStream(), enabled=True)
    bar.update([1], [2])
    bar.update([2], [2])
    bar.close()


def test_progress_wrapper():
    out = FakeTerminal()
    items = list(progress(iter(range(5)), total=5, desc="load", unit="files", file=out))
    assert items == list(range(5))
    assert "load 100% |####################| 5/5 files" in out.getvalue()
    out = FakeTerminal()
    assert list(progress([3, 1, 2], file=out)) == [3, 1, 2]  # total from len()
    assert "3/3 it" in out.getvalue()
    out = FakeTerminal()
    assert list(progress((x for x in "abcd"), file=out)) == list("abcd")
    assert "\x1b[2K4 it [" in out.getvalue()  # no total: a count
    out = FakeTerminal()
    for k in progress(range(100), file=out):  # leaving early closes the display; the item
        if k == 9:
            break
    assert "9/100 it" in out.getvalue()  # being handled when the loop left does not count


@pytest.mark.parametrize("backend", ["thread", pytest.param(
    "fork", marks=pytest.mark.skipif(sys.platform == "win32", reason="no fork"))])
def test_run_shows_worker_progress(monkeypatch, backend):
    out = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", out)
    result = hogwild.run(W.count_and_wait, 2, backend=backend, worker_args=[(30,), (50,)],
                         unit="rows", desc="all")
    assert result == [(30, 80), (50, 80)]
    final = out.getvalue().split("\x1b[3A")[-1]
    assert "worker 0 100%" in final and "30/30 rows" in final
    assert "worker 1 100%" in final and "50/50 rows" in final
    assert "all      100%" in final and "80/80 rows" in final
    out.truncate(0)
    hogwild.run(W.count_and_wait, 2, backend=backend, worker_args=[(3,), (5,)], progress=False)
    assert out.getvalue() == ""


def test_si_units():
    assert [_progress._si(x) for x in (0, 5, 999, 1000, 12_345, 2.5e9)] == [
        "0", "5", "999", "1k", "12.3k", "2.5G"]
    assert _progress._clock(3725) == "1:02:05" and _progress._clock(65) == "01:05"
