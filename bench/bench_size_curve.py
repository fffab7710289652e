"""Benchmark: what a step costs as the table grows -- exact and lazy sparseopt Adam against
dense torch Adam at 1M, 4M and 16M rows, the same lookups.

What exact mode promises is a step that costs what the touched rows cost, whatever the
table's size; dense Adam touches every row, so its step grows with the table. For each table
size N x 64 float32 and each index distribution (16,384 int64 lookups per step, uniform or
Zipf(1.1) rows through a random permutation, duplicates summed):

  * sparseopt ``Adam(mode="exact")`` and ``Adam(mode="lazy")``: ``opt.step(indices, values)``
    after 200 untimed steps (exact mode's cost depends on how long rows were left alone);
  * ``torch.optim.Adam(fused=True)`` on the same table: ``p.grad`` is a dense tensor holding
    the batch's rows and zeros elsewhere, built untimed; only ``optimizer.step()`` is timed.

Memory: at 16M rows one table is 4 GiB and dense Adam holds four (param, grad, two moments),
so the competitors run one at a time and each is freed before the next is built; a side
whose arrays would not fit in the available memory (with 20 % to spare) is skipped with a note.

Ratios across sizes cannot come from one round with both tables alive, so every timed side
is paired with one reference that stays alive throughout: a 1M-row exact Adam stepping its
own batches. Each round times a block of the side and a block of the reference, alternately
(harness.paired_rounds); r(side) is the median of the per-round ratios side / reference. The
headline growth of a side from 1M to N rows is r(side at N) / r(side at 1M); for exact mode
at 1M that denominator is the reference against itself, ~1. The plot
(bench/results/size_curve.png, when matplotlib is installed) shows the median step times.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from bench_exact import FAMILIES, make_batches, torch_dense_optimizer  # noqa: E402

NAME = "size_curve"
FAM = FAMILIES["adam"]
GiB = 1 << 30

FULL = dict(sizes=(1_000_000, 4_000_000, 16_000_000), width=64, lookups=16_384,
            index_batches=256, value_batches=8, warmup=200, rounds=7, steps=10,
            dense_rounds=3, dense_steps=1)
QUICK = dict(sizes=(100_000, 400_000), width=64, lookups=4096, index_batches=32,
             value_batches=2, warmup=10, rounds=2, steps=3, dense_rounds=1, dense_steps=1)
BASE_ROWS = 1 << 16  # a table is filled by repeating one random block of this many rows


def available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def make_table(num_rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A num_rows x width float32 table in [-0.01, 0.01), every page written."""
    block = (rng.random((min(BASE_ROWS, num_rows), width), dtype=np.float32) - 0.5) * 0.02
    table = np.empty((num_rows, width), np.float32)
    for start in range(0, num_rows, len(block)):
        stop = min(start + len(block), num_rows)
        table[start:stop] = block[:stop - start]
    return table


class Side:
    """One optimizer on one table, stepping its own batches through a running counter."""

    def __init__(self, kind: str, num_rows: int, cfg: dict, batches, rng):
        self.kind, self.idx, self.vals = kind, batches[0], batches[1]
        self.i = 0
        table = make_table(num_rows, cfg["width"], rng)
        if kind == "torch dense":
            import torch
            self.p = torch.nn.Parameter(torch.from_numpy(table).clone())  # torch's own memory
            del table
            self.p.grad = torch.zeros_like(self.p)
            self.opt, self.desc = torch_dense_optimizer(FAM, [self.p])
            self.idx_t = [torch.from_numpy(i) for i in self.idx]
            self.val_t = [torch.from_numpy(v) for v in self.vals]
            self.prev = None
        else:
            import sparseopt
            self.table = harness.aligned_copy(table)
            del table
            self.opt = sparseopt.optim.Adam(self.table, **FAM["kw"], mode=kind)
            self.desc = f"sparseopt.optim.Adam(mode={kind!r})"

    def prepare(self, _=None):  # untimed: dense torch's gradient holds this batch's rows
        if self.kind == "torch dense":
            g = self.p.grad
            if self.prev is not None:
                g.index_fill_(0, self.prev, 0.0)
            self.prev = self.idx_t[self.i % len(self.idx_t)]
            g.index_add_(0, self.prev, self.val_t[self.i % len(self.val_t)])

    def step(self, _=None):
        if self.kind == "torch dense":
            self.opt.step()
        else:
            self.opt.step(self.idx[self.i % len(self.idx)], self.vals[self.i % len(self.vals)])
        self.i += 1

    def warm_up(self, steps: int):
        for _ in range(steps):
            self.prepare()
            self.step()


def bytes_needed(kind: str, num_rows: int, width: int) -> int:
    table = num_rows * width * 4
    # exact/lazy: param + 2 moments (+ per-row step counts); torch: param + grad + 2 moments
    return 4 * table if kind == "torch dense" else 3 * table + num_rows * 16


def _pair(side: Side, ref: Side, cfg: dict, dense: bool) -> dict:
    steps = cfg["dense_steps"] if dense else cfg["steps"]
    times = harness.paired_rounds({"side": side.step, "ref": ref.step},
                                  prepare={"side": side.prepare, "ref": ref.prepare},
                                  rounds=cfg["dense_rounds"] if dense else cfg["rounds"],
                                  steps_per_round=steps, warmup=1)
    return {"ms": harness.summarize([t * 1e3 for t in times["side"]]),
            "ref_ms": harness.summarize([t * 1e3 for t in times["ref"]]),
            "over_ref": harness.paired_ratio(times["side"], times["ref"]),
            "times_s": times}


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    import torch

    import sparseopt
    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    base_rows = cfg["sizes"][0]
    cases, skipped = [], []
    for dist in ("uniform", "zipf"):
        batches = {n: make_batches(dist, dict(cfg, num_rows=n), rng) for n in cfg["sizes"]}
        unique = {n: float(np.mean([np.unique(i).size for i in b[0][:32]]))
                  for n, b in batches.items()}
        for kind in ("exact", "lazy", "torch dense"):
            warm = cfg["warmup"] if kind != "torch dense" else 1
            ref = Side(kind, base_rows, cfg, batches[base_rows], rng)  # the same kind at 1M
            ref.warm_up(warm)
            for n in cfg["sizes"]:
                need, have = bytes_needed(kind, n, cfg["width"]), available_bytes()
                if have is not None and need * 1.1 > have:
                    why = (f"{dist} {kind} at {n:,} rows needs {need / GiB:.1f} GiB, "
                           f"{have / GiB:.1f} GiB available")
                    harness.log(f"[size_curve] skipped: {why}")
                    skipped.append(why)
                    continue
                side = Side(kind, n, cfg, batches[n], rng)
                side.warm_up(warm)
                res = _pair(side, ref, cfg, dense=kind == "torch dense")
                res.update(dist=dist, rows=n, kind=kind, desc=side.desc, unique_rows=unique[n])
                harness.log(f"[size_curve] {dist} {n:,} rows {kind}: {res['ms']['median']:.2f} "
                            f"ms/step, {res['over_ref']['median']:.2f}x the same at "
                            f"{base_rows:,} rows")
                cases.append(res)
                del side
                gc.collect()
            del ref
            gc.collect()
        del batches
        gc.collect()
    for c in cases:  # a step time on a common scale: the growth times the 1M side's median
        refs = [t for d in cases if d["dist"] == c["dist"] and d["kind"] == c["kind"]
                for t in d["times_s"]["ref"]]
        c["ms_at_ref_speed"] = c["over_ref"]["median"] * float(np.median(refs)) * 1e3
    data = {"name": NAME, "quick": quick, "config": cfg, "cases": cases, "skipped": skipped,
            "sparseopt": sparseopt.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "elapsed_s": time.perf_counter() - t_start,
            "machine": machine or harness.machine_info(),
            "copy_bandwidth": bandwidth}
    data["plot"] = plot(data, harness.RESULTS_DIR / ("quick" if quick else "") / f"{NAME}.png")
    data["markdown"] = to_markdown(data)
    return data


def plot(data: dict, path: Path) -> str | None:
    """Step time against the table's rows (log-log): each side's paired growth over its 1M-row
    twin times that twin's median, so a change in the host's load between sizes does not bend
    the curves; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        harness.log("[size_curve] matplotlib not installed: no plot")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, dist in zip(axes, ("uniform", "zipf")):
        for kind, style in (("exact", "o-"), ("lazy", "s--"), ("torch dense", "^-")):
            pts = [(c["rows"], c["ms_at_ref_speed"]) for c in data["cases"]
                   if c["dist"] == dist and c["kind"] == kind]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{kind} Adam")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("table rows (x 64 float32)")
        ax.set_title(f"{dist} indices, {data['config']['lookups']:,} lookups/step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per step (1M-row median x paired growth)")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    harness.log(f"wrote {path}")
    return str(path.relative_to(harness.REPO_ROOT)) if path.is_relative_to(harness.REPO_ROOT) \
        else str(path)


def _rows(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    base = _rows(cfg["sizes"][0])
    rows = []
    for c in data["cases"]:
        g = c["over_ref"]["median"]
        rows.append([c["dist"], f"{c['rows']:,}", f"{c['unique_rows']:,.0f}", c["kind"],
                     f"{c['ms']['median']:.2f} ({c['ms']['min']:.2f}–{c['ms']['max']:.2f})",
                     f"**{g:.2f}x**" if c["kind"] == "exact" else f"{g:.2f}x"])
    table = harness.markdown_table(
        ["indices", "table rows", "unique rows/step", "Adam", "ms per step",
         f"step time / the same at {base} rows"], rows)
    skipped = "".join(f" Skipped: {s}." for s in data["skipped"])
    plot = f" Plot: [{Path(data['plot']).name}](results/{Path(data['plot']).name})." \
        if data.get("plot") and not data["quick"] else ""
    notes = (
        f"Tables of N x {cfg['width']} float32, {cfg['lookups']:,} int64 lookups per step "
        f"(uniform or Zipf(1.1) rows through a random permutation, duplicates summed); "
        f"sparseopt {data['sparseopt']} `Adam(mode=\"exact\"|\"lazy\")` after "
        f"{cfg['warmup']} untimed steps, torch {data['torch']} `Adam(fused=True)` "
        f"({data['torch_threads']} threads), its dense gradient built untimed. ms per step: "
        f"median (min–max) over rounds of {cfg['steps']} steps ({cfg['dense_steps']} for dense "
        f"torch). The sizes cannot all be alive at once, so each side at N rows is timed "
        f"alternately with its twin at {base} rows (same optimizer and mode, alive throughout "
        f"that side's sizes); the last column is the median of those per-round paired ratios "
        f"(at {base}: a second instance, the noise floor). With Zipf rows a larger table has "
        f"a longer tail, so more unique rows per step. The issue's bar: exact's ratio at 16M "
        f"rows <= 1.3x while dense grows with the table.{skipped}{plot} Command: "
        f"`python bench/run.py --only size_curve` (nothing else big running: dense Adam at "
        f"16M rows holds 16 GiB).")
    return harness.report(table, notes, data)


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
