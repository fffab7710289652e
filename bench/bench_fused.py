"""Benchmark: the fused EmbeddingBag backward + optimizer step against the two calls it replaces.

``opt.step_bags(grad_out, indptr, indices)`` against ``opt.step(*gather_sum_backward(grad_out,
indptr, indices, num_rows=...))``, which give the same bits, on a 1,000,000 x 64 float32 table
with 512 bags of 32 lookups (16,384 lookups) per step, uniform and Zipf indices, for SGD,
row-wise Adagrad, Adagrad, and Adam in lazy and exact mode. Each round steps the same batch on
two copies of the table, one per path, in alternating order; the speedup is the median of the
per-round paired ratios (two-call time / fused time), which cancels the shared host's drift.
Default threads (all cores).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "fused"

FULL = dict(rows=1_000_000, dim=64, bags=512, bag_len=32, batches=8, warmup=3, rounds=25)
QUICK = dict(rows=50_000, dim=64, bags=64, bag_len=16, batches=2, warmup=1, rounds=3)


def _optimizers():
    from sparseopt import optim
    return {
        "SGD": lambda p: optim.SGD(p, lr=0.01),
        "RowWiseAdagrad": lambda p: optim.RowWiseAdagrad(p, lr=0.01),
        "Adagrad": lambda p: optim.Adagrad(p, lr=0.01),
        "Adam (lazy)": lambda p: optim.Adam(p, lr=1e-3),
        "Adam (exact)": lambda p: optim.Adam(p, lr=1e-3, mode="exact"),
    }


# What each optimizer's step reads and writes per touched row, in bytes beyond the parameter
# row: (state rows of the row's width, extra bytes per row). Exact Adam also keeps last_step.
_STATE = {"SGD": (0, 0), "RowWiseAdagrad": (0, 4), "Adagrad": (1, 0), "Adam (lazy)": (2, 0),
          "Adam (exact)": (2, 8)}


def least_bytes(name: str, unique: float, lookups: int, bags: int, dim: int) -> tuple[float, float]:
    """The least bytes (fused step, two calls) must move: both read the bags' output gradient
    and indices and read and write every touched row of the parameter and state; the two calls
    also write the coalesced gradient (U rows and their int64 indices) and read it back."""
    row = dim * 4
    state_rows, per_row = _STATE[name]
    fused = 2 * unique * ((1 + state_rows) * row + per_row) + bags * row + lookups * 8
    return fused, fused + 2 * unique * (row + 8)


def byte_bound(name: str, unique: float, lookups: int, bags: int, dim: int) -> float:
    """The most the fused step can gain over the two calls if both move their bytes at the same
    rate: (two calls' bytes) / (fused step's bytes), counting the least each must move
    (least_bytes)."""
    fused, two = least_bytes(name, unique, lookups, bags, dim)
    return two / fused


def _batches(cfg, dist, rng):
    n = cfg["bags"] * cfg["bag_len"]
    out = []
    for _ in range(cfg["batches"]):
        if dist == "uniform":
            ids = rng.integers(0, cfg["rows"], n)
        else:  # Zipf over a random permutation of the rows, as word ids are
            ids = np.minimum(rng.zipf(1.1, n) - 1, cfg["rows"] - 1)
            ids = rng.permutation(cfg["rows"])[ids] if cfg["rows"] <= 2_000_000 else ids
        grad_out = rng.standard_normal((cfg["bags"], cfg["dim"]), dtype=np.float32)
        out.append((grad_out, np.arange(0, n + 1, cfg["bag_len"], dtype=np.int64), ids.astype(np.int64)))
    return out


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    import sparseopt

    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((cfg["rows"], cfg["dim"]), dtype=np.float32)
    results, rows = {}, []
    for dist in ("uniform", "Zipf (s=1.1)"):
        batches = _batches(cfg, "uniform" if dist == "uniform" else "zipf", rng)
        for name, make in _optimizers().items():
            fused_table, two_table = harness.aligned_copy(table), harness.aligned_copy(table)
            fused, two = make(fused_table), make(two_table)

            def step_fused(b):
                fused.step_bags(*b)

            def step_two(b):
                two.step(*sparseopt.gather_sum_backward(*b, num_rows=cfg["rows"]))

            for w in range(cfg["warmup"]):
                step_fused(batches[w % len(batches)])
                step_two(batches[w % len(batches)])
            times = {"fused": [], "two": []}
            for r in range(cfg["rounds"]):
                b = batches[r % len(batches)]
                order = [("fused", step_fused), ("two", step_two)]
                for key, f in order if r % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    f(b)
                    times[key].append(time.perf_counter() - t0)
            if not np.array_equal(fused_table, two_table):  # same bits, or the timing means nothing
                raise AssertionError(f"{name}, {dist}: the fused step and the two calls differ")
            ratio = statistics.median(a / b for a, b in zip(times["two"], times["fused"]))
            unique = statistics.mean(len(np.unique(b[2])) for b in batches)
            bound = byte_bound(name, unique, len(batches[0][2]), cfg["bags"], cfg["dim"])
            results[f"{name} / {dist}"] = {"times": times, "ratio": ratio, "unique_rows": unique,
                                           "byte_bound": bound}
            f, t = harness.summarize(times["fused"]), harness.summarize(times["two"])
            rows.append([name, dist, f"{f['median'] * 1e3:.2f} ({f['min'] * 1e3:.2f}–{f['max'] * 1e3:.2f})",
                         f"{t['median'] * 1e3:.2f} ({t['min'] * 1e3:.2f}–{t['max'] * 1e3:.2f})", f"{ratio:.2f}x",
                         f"{bound:.2f}x"])
            del fused, two, fused_table, two_table
    table_md = harness.markdown_table(
        ["optimizer", "indices", "step_bags ms", "gather_sum_backward + step ms", "fused is faster by",
         "at most, by bytes"], rows)
    notes = (f"{cfg['rows']:,} x {cfg['dim']} float32 table, {cfg['bags']} bags x {cfg['bag_len']} lookups "
             f"(int64) per step, {cfg['batches']} batches cycled, {cfg['rounds']} rounds: ms median (min–max); "
             f"speedup: median of per-round paired ratios. Both paths end with the same table (checked). "
             f"At most, by bytes: the two calls' bytes over the fused step's, counting the least each "
             f"must move (both: the touched rows of the parameter and state read and written, grad_out "
             f"and the indices read; the two calls also write the coalesced gradient and read it back), "
             f"the speedup a step that moves its bytes at a fixed rate could reach. "
             f"Command: `python bench/run.py --only fused`.")
    markdown = "\n".join([("**Quick smoke run -- not representative.**\n\n" if quick else "") + table_md,
                          "", notes])
    return {"name": NAME, "quick": quick, "config": cfg, "results": results,
            "sparseopt": sparseopt.__version__, "machine": machine or harness.machine_info(),
            "markdown": markdown + "\n"}


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
