"""Small, reusable benchmark harness for sparseopt.

Only the standard library and numpy are required; torch is used (for its
version string) only when it is installed.

Pieces:
  * time_steps / time_callable -- wall-clock timing with warm-up and repeats,
    returning the median and the spread (min, max, IQR).
  * paired_rounds / paired_ratio -- A and B timed alternately, round by round;
    the headline ratio is the median of the per-round ratios.
  * machine_info                -- CPU model, cores, sparseopt.info(), versions.
  * copy_bandwidth              -- measured memory copy bandwidth (np.copyto).
  * rmw_bandwidth               -- measured read-modify-write bandwidth (x += 1 in place).
  * write_results               -- bench/results/<name>.json and <name>.md.
  * splice_readme               -- replace the text between
                                   <!-- bench:NAME --> and <!-- /bench:NAME -->.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

# torch's CPU allocator puts large tensors on transparent huge pages only when this is set
# before torch is imported; NumPy (and so sparseopt's arrays) does so by default. Without it,
# torch's side of a comparison pays 4 KiB pages' TLB misses on scattered rows (its SGD step
# measured 1.4x slower): every bench imports this module before torch, and sets it.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

MiB = 1 << 20


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------
def summarize(samples: Sequence[float]) -> dict:
    """Median, min, max, quartiles and IQR of a list of samples (any unit)."""
    xs = sorted(float(x) for x in samples)
    if not xs:
        raise ValueError("no samples")
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {
        "median": statistics.median(xs),
        "min": xs[0],
        "max": xs[-1],
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "n": len(xs),
    }


class _GcPaused:
    """Context manager: disable the cyclic GC while timing."""

    def __enter__(self):
        self._was = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self._was:
            gc.enable()
        return False


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def time_callable(fn: Callable[[], Any], *, warmup: int = 3, repeat: int = 7,
                  number: int = 1) -> dict:
    """Time ``fn()``.

    ``warmup`` untimed calls, then ``repeat`` timed blocks of ``number`` calls
    each.  Returns summarize() of the per-call seconds of every block (so the
    median is the median over blocks of the mean time per call), plus the raw
    per-block values under "samples".
    """
    for _ in range(warmup):
        fn()
    per_call = []
    with _GcPaused():
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            per_call.append((time.perf_counter() - t0) / number)
    out = summarize(per_call)
    out["samples"] = per_call
    return out


def time_steps(step: Callable[[int], Any], *, prepare: Callable[[int], Any] | None = None,
               warmup: int = 5, steps: int = 25, repeat: int = 5,
               start: int = 0) -> dict:
    """Time individual steps, each with its own (untimed) preparation.

    ``prepare(i)`` (optional, untimed) then ``step(i)`` (timed) are called
    for a running counter i = start, start+1, ... so the caller can cycle
    through pre-generated inputs.  ``warmup`` untimed steps come first; then
    ``repeat`` blocks of ``steps`` individually timed steps.

    Returns summarize() of the per-block mean seconds/step (median over
    blocks is the headline number), and, under "per_step", summarize() of
    all individual step times.  "next" is the next counter value.
    """
    i = start
    for _ in range(warmup):
        if prepare is not None:
            prepare(i)
        step(i)
        i += 1
    block_means = []
    all_steps = []
    pc = time.perf_counter
    with _GcPaused():
        for _ in range(repeat):
            ts = []
            for _ in range(steps):
                if prepare is not None:
                    prepare(i)
                t0 = pc()
                step(i)
                ts.append(pc() - t0)
                i += 1
            block_means.append(sum(ts) / len(ts))
            all_steps.extend(ts)
    out = summarize(block_means)
    out["samples"] = block_means
    out["per_step"] = summarize(all_steps)
    out["next"] = i
    return out


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in memory from ``sparseopt.zeros``: rows start on cache-line boundaries
    (a large ``np.zeros``/``copy()`` array starts 16 bytes past one, so each 256-byte row spans
    five lines), as sparseopt's docs tell users to allocate tables. torch competitors get their
    own torch-allocated (64-byte aligned) tensors: ``torch.from_numpy(a).clone()``."""
    import sparseopt
    out = sparseopt.zeros(a.shape, a.dtype)
    out[...] = a
    return out


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """summarize() of the per-round ratios ``numerator[r] / denominator[r]``.

    The two sequences hold the times of A and B measured in the same rounds (A and B timed
    alternately); a drift of the shared host that slows one round slows both of its times,
    so the median of the per-round ratios moves much less than the ratio of the two medians.
    Its "median" is the headline ratio every benchmark reports.
    """
    if len(numerator) != len(denominator):
        raise ValueError(f"paired_ratio needs one time per round from each side, got "
                         f"{len(numerator)} and {len(denominator)}")
    out = summarize([a / b for a, b in zip(numerator, denominator)])
    out["samples"] = [a / b for a, b in zip(numerator, denominator)]
    return out


def paired_blocks(num_times: Sequence[float], den_times: Sequence[float], *,
                  num_other: Sequence[float | None] | None = None,
                  den_other: Sequence[float | None] | None = None,
                  num_rounds: Sequence[int] | None = None,
                  den_rounds: Sequence[int] | None = None,
                  busy_cores: float | None = None) -> dict:
    """paired_ratio of two sides' interleaved blocks, matched by round.

    ``*_rounds`` give the round of each block (default 0, 1, ...: every side ran in every
    round); only rounds both sides ran in are paired. With ``busy_cores`` and the other
    processes' CPU use during each block (``*_other``, None when unknown), the rounds where
    both blocks were undisturbed are used when they are at least half of the shared ones,
    else all shared rounds. "rounds_used" says which.
    """
    def by_round(times, rounds, other):
        rounds = range(len(times)) if rounds is None else rounds
        other = [None] * len(times) if other is None else other
        return {r: (t, o) for r, t, o in zip(rounds, times, other)}

    a = by_round(num_times, num_rounds, num_other)
    b = by_round(den_times, den_rounds, den_other)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two sides ran in no common round")
    used, which = shared, "all"
    if busy_cores is not None:
        quiet = [r for r in shared if all(x[1] is not None and x[1] < busy_cores
                                          for x in (a[r], b[r]))]
        if 2 * len(quiet) >= len(shared):
            used, which = quiet, "undisturbed"
    out = paired_ratio([a[r][0] for r in used], [b[r][0] for r in used])
    out["rounds_used"] = which
    return out


def paired_rounds(steps: dict[str, Callable[[int], Any]], *, rounds: int,
                  steps_per_round: int = 1, warmup: int = 1,
                  prepare: dict[str, Callable[[int], Any]] | None = None) -> dict[str, list[float]]:
    """Time several implementations alternately: round r times ``steps_per_round`` steps of
    each, in an order rotated every round, and records each one's mean seconds per step.

    ``steps[name](i)`` is timed, ``prepare[name](i)`` (optional) runs untimed just before;
    within a round every implementation gets the same counters i (= round * steps_per_round
    + k), so they step the same inputs in the same sequence. ``warmup`` untimed rounds come
    first. Returns {name: [seconds per step of round 0, 1, ...]}, ready for paired_ratio.
    """
    prepare = prepare or {}
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    pc = time.perf_counter
    with _GcPaused():
        for r in range(-warmup, rounds):
            rot = r % len(names)
            for n in names[rot:] + names[:rot]:
                step, prep = steps[n], prepare.get(n)
                total = 0.0
                for k in range(steps_per_round):
                    i = (r + warmup) * steps_per_round + k
                    if prep is not None:
                        prep(i)
                    t0 = pc()
                    step(i)
                    total += pc() - t0
                if r >= 0:
                    times[n].append(total / steps_per_round)
    return times


# --------------------------------------------------------------------------
# other processes' CPU use (the machine is shared)
# --------------------------------------------------------------------------
def _proc_stat() -> tuple[float, float] | None:
    """(busy seconds, steal seconds) summed over all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq) / hz, steal / hz


class CpuMonitor:
    """Measures how many cores *other* processes kept busy over an interval.

    ``m = CpuMonitor(); ...; r = m.read()`` -> {"other_cores": busy cores
    not accounted for by this process, "steal_cores": hypervisor steal,
    "wall_s": interval}.  Values near 0 mean the machine was quiet.
    (Resolution is one clock tick, so short intervals are coarse.)
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._t = time.perf_counter()
        self._stat = _proc_stat()
        tm = os.times()
        self._own = tm.user + tm.system

    def read(self) -> dict | None:
        stat = _proc_stat()
        if stat is None or self._stat is None:
            return None
        wall = time.perf_counter() - self._t
        tm = os.times()
        own = tm.user + tm.system - self._own
        busy = stat[0] - self._stat[0]
        return {"other_cores": max(busy - own, 0.0) / wall,
                "steal_cores": (stat[1] - self._stat[1]) / wall,
                "wall_s": wall}


def wait_for_quiet(max_other_cores: float = 0.25, quiet_s: float = 10.0,
                   timeout_s: float = 600.0, poll_s: float = 2.0) -> dict:
    """Block until other processes used < max_other_cores for quiet_s seconds
    in a row (or timeout_s passed).  Returns {"quiet": bool, "waited_s": ...}."""
    t0 = time.perf_counter()
    quiet_since = None
    announced = False
    while True:
        m = CpuMonitor()
        time.sleep(poll_s)
        r = m.read()
        now = time.perf_counter()
        if r is None:
            return {"quiet": None, "waited_s": now - t0}
        if r["other_cores"] < max_other_cores:
            quiet_since = quiet_since or (now - poll_s)
            if now - quiet_since >= quiet_s:
                return {"quiet": True, "waited_s": now - t0}
        else:
            quiet_since = None
            if not announced:
                log(f"machine busy (other processes use {r['other_cores']:.1f} cores); "
                    f"waiting up to {timeout_s:.0f} s for it to quieten ...")
                announced = True
        if now - t0 > timeout_s:
            log("machine still busy; going ahead anyway (numbers will be noisy)")
            return {"quiet": False, "waited_s": now - t0}


# --------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _l3_cache() -> str | None:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for idx in sorted(base.glob("index*")):
            if (idx / "level").read_text().strip() == "3":
                return (idx / "size").read_text().strip()
    except OSError:
        pass
    return None


def sparseopt_info() -> dict | None:
    """sparseopt.info() if the package imports, else None."""
    try:
        import sparseopt  # noqa: F401
    except Exception:
        return None
    try:
        info = dict(sparseopt.info())
    except Exception as e:  # pragma: no cover - library under development
        info = {"error": repr(e)}
    info.setdefault("version", getattr(sparseopt, "__version__", None))
    return info


def machine_info() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "l3_cache": _l3_cache(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None,
        "torch_threads": None,
        "sparseopt": sparseopt_info(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["mem_total_gib"] = round(int(mem[1]) / (1 << 20), 1)
    except Exception:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    return info


def describe_machine(m: dict, bw: dict | None = None) -> str:
    """One markdown line describing the machine, copy bandwidth and versions."""
    cores = m.get("usable_cpus") or m.get("logical_cpus")
    parts = [f"{m['cpu_model']}, {cores} cores"]
    if m.get("l3_cache"):
        parts[-1] += f" (L3 {m['l3_cache']})"
    if bw:
        s = f"copy bandwidth {bw['gbps']['median']:.1f} GB/s (np.copyto, 1 thread"
        if bw.get("gbps_threads"):
            s += f"; {bw['gbps_threads']['median']:.1f} GB/s with {bw['threads']} threads"
        parts.append(s + ")")
    so = m.get("sparseopt")
    if so:
        s = f"sparseopt {so.get('version')}"
        extra = [f"{k}={so[k]}" for k in ("openmp", "max_threads") if k in so]
        if extra:
            s += " (" + ", ".join(extra) + ")"
        parts.append(s)
    else:
        parts.append("sparseopt not installed")
    if m.get("torch"):
        parts.append(f"torch {m['torch']} ({m['torch_threads']} threads)")
    parts.append(f"numpy {m['numpy']}, Python {m['python']}")
    return "Machine: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------
# memory bandwidth
# --------------------------------------------------------------------------
def copy_bandwidth(size_mib: int = 256, repeat: int = 7, threads: int | None = None) -> dict:
    """Measured memory copy bandwidth with np.copyto between two arrays.

    Bytes counted per copy = read + write = 2 * size.  Returns
    {"gbps": summarize(GB/s per rep), "bytes": ..., "size_mib": ...}.
    With ``threads`` > 1, additionally measures the copy split into that many
    contiguous chunks copied concurrently from Python threads (numpy releases
    the GIL in copyto), reported under "gbps_threads".
    """
    n = size_mib * MiB // 8
    src = np.ones(n, dtype=np.float64)   # touch every page up front
    dst = np.zeros(n, dtype=np.float64)
    dst.fill(2.0)
    nbytes = 2 * src.nbytes
    np.copyto(dst, src)  # warm-up
    t = time_callable(lambda: np.copyto(dst, src), warmup=1, repeat=repeat)
    gbps = [nbytes / s / 1e9 for s in t["samples"]]
    out = {"size_mib": size_mib, "bytes": nbytes, "gbps": summarize(gbps),
           "seconds": summarize(t["samples"])}
    out["gbps"]["samples"] = gbps
    if threads and threads > 1:
        bounds = np.linspace(0, n, threads + 1).astype(np.int64)
        chunks = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

        def par_copy():
            ths = [threading.Thread(target=np.copyto, args=c) for c in chunks]
            for th in ths:
                th.start()
            for th in ths:
                th.join()

        tt = time_callable(par_copy, warmup=1, repeat=repeat)
        g2 = [nbytes / s / 1e9 for s in tt["samples"]]
        out["threads"] = threads
        out["gbps_threads"] = summarize(g2)
        out["gbps_threads"]["samples"] = g2
    del src, dst
    return out


def rmw_bandwidth(size_mib: int = 2048, repeat: int = 7, threads: int = 1) -> float:
    """Median GB/s of ``x += 1`` in place over a float32 array of size_mib, split into
    ``threads`` contiguous chunks added concurrently from Python threads (NumPy releases the
    GIL), counting each byte read and written: the rate of a step's read-modify-write of its
    rows at its best (rows streamed in order; a copy also reads the lines it overwrites, so this
    runs up to 1.5x copy_bandwidth's figure). 2 GiB by default: past any last-level cache (one
    machine here reports 480 MB of L3, where 256 MiB read as 2.25x the copy rate)."""
    x = np.ones(size_mib * MiB // 4, dtype=np.float32)  # every page touched up front
    bounds = np.linspace(0, len(x), max(1, threads) + 1).astype(np.int64)
    chunks = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def add():
        workers = [threading.Thread(target=np.add, args=(c, np.float32(1), c)) for c in chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    t = time_callable(add, warmup=1, repeat=repeat)
    return 2 * x.nbytes / t["median"] / 1e9


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """Render a GitHub markdown table. align entries: 'l', 'r' or 'c'."""
    header = [str(h) for h in header]
    if align is None:
        align = ["l"] + ["r"] * (len(header) - 1)
    seps = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(seps[a] for a in align) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def report(table: str, notes: str, data: dict) -> str:
    """A benchmark's markdown from its result ``data``: the table, its notes, the machine line
    (``data["machine"]``, ``data["copy_bandwidth"]``); a smoke run says so first."""
    banner = "**Quick smoke run -- not representative.**\n\n" if data["quick"] else ""
    machine = describe_machine(data["machine"], data.get("copy_bandwidth"))
    return f"{banner}{table}\n\n{notes}\n\n{machine}\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)!r}")


def write_results(name: str, data: dict, markdown: str,
                  results_dir: Path | str = RESULTS_DIR) -> tuple[Path, Path]:
    """Write results_dir/<name>.json (data) and results_dir/<name>.md (markdown)."""
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    jp, mp = d / f"{name}.json", d / f"{name}.md"
    jp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    mp.write_text(markdown.rstrip("\n") + "\n")
    return jp, mp


class MarkerError(RuntimeError):
    pass


def _marker_span(name: str, path: Path) -> tuple[str, list[str], int, int]:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if not path.exists():
        raise MarkerError(f"{path} does not exist; add the lines '{begin}' and "
                          f"'{end}' where the {name!r} table should go")
    with open(path, newline="") as f:   # keep line endings as they are
        text = f.read()
    lines = text.splitlines(keepends=True)
    b = [i for i, l in enumerate(lines) if l.strip() == begin]
    e = [i for i, l in enumerate(lines) if l.strip() == end]
    if len(b) != 1 or len(e) != 1:
        raise MarkerError(
            f"{path}: expected exactly one line '{begin}' and one line '{end}' "
            f"(found {len(b)} and {len(e)}); add them (each on its own line) "
            f"where the {name!r} table should go")
    if b[0] >= e[0]:
        raise MarkerError(f"{path}: '{end}' comes before '{begin}'")
    return text, lines, b[0], e[0]


def check_markers(name: str, readme: Path | str = REPO_ROOT / "bench" / "README.md") -> None:
    """Raise MarkerError unless ``readme`` has a valid marker pair for NAME."""
    _marker_span(name, Path(readme))


def splice_readme(name: str, markdown: str,
                  readme: Path | str = REPO_ROOT / "bench" / "README.md") -> bool:
    """Replace the text between the lines ``<!-- bench:NAME -->`` and
    ``<!-- /bench:NAME -->`` in ``readme`` with ``markdown`` (surrounded by
    one blank line each side, so markdown renders it as a table).

    Everything outside the markers (the marker lines included) is left
    byte-for-byte untouched.  Raises MarkerError if the file or a marker is
    missing, duplicated, or out of order.  Returns True if the file changed.
    """
    path = Path(readme)
    text, lines, b, e = _marker_span(name, path)
    nl = "\r\n" if lines[b].endswith("\r\n") else "\n"
    body = markdown.strip("\n").replace("\r\n", "\n").replace("\n", nl)
    begin_line = lines[b] if lines[b].endswith(("\n", "\r")) else lines[b] + nl
    new = "".join(lines[:b]) + begin_line + nl + body + nl + nl + "".join(lines[e:])
    if new == text:
        return False
    with open(path, "w", newline="") as f:
        f.write(new)
    return True


def cli(name: str, run: Callable[..., dict], doc: str, argv=None) -> dict:
    """The command line of a benchmark module: ``--quick``, ``--seed``, ``--no-write``; runs
    ``run(quick=, seed=)``, prints its markdown and writes bench/results/ (``quick/`` for a
    smoke run)."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, few repetitions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only, do not write bench/results/")
    args = ap.parse_args(argv)
    data = run(quick=args.quick, seed=args.seed)
    print(data["markdown"])
    if not args.no_write:
        out = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
        for p in write_results(name, data, data["markdown"], out):
            log(f"wrote {p}")
    return data


def log(*args, **kw):
    print(*args, **kw, file=sys.stderr, flush=True)
