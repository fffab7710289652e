"""Benchmark: lazy Adam and SGD steps on a bfloat16 table against the same steps on a float32 table.

A 1,000,000 x 64 table, 16,384 uniform random lookups per step (float32 gradients, repeats
summed), one thread (on a shared 2-core host a 2-thread step waits for the other engineers'
processes; one thread measures the kernels, not the scheduler). Variants: float32 table (float32 state); bfloat16 table with float32
state and stochastic rounding; bfloat16 table with float32 state and nearest rounding; bfloat16
table and bfloat16 state (stochastic). Each round steps the same batch once per variant, in
rotating order; a variant's speedup is the median of the per-round paired ratios (float32
time / its time), which cancels the shared host's drift. "bytes moved" counts what a step
must read and write per touched row (the table row and every state row, each read and
written once, plus the gradient row read), times the touched rows; it is a model of the
traffic, not a measurement.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "half"

FULL = dict(rows=1_000_000, dim=64, lookups=16_384, batches=8, warmup=3, rounds=25, threads=1)
QUICK = dict(rows=50_000, dim=64, lookups=2_048, batches=2, warmup=1, rounds=3, threads=1)


def _variants(bf16, threads):
    from sparseopt import optim

    f32 = np.dtype(np.float32)
    t = dict(num_threads=threads)
    return {
        # name: (table dtype, state dtype, make optimizer, state arrays per row)
        "Adam, float32 table": (f32, f32, lambda p: optim.Adam(p, lr=1e-3, **t), 2),
        "Adam, bfloat16 table, stochastic": (bf16, f32, lambda p: optim.Adam(p, lr=1e-3, **t), 2),
        "Adam, bfloat16 table, nearest": (bf16, f32, lambda p: optim.Adam(p, lr=1e-3, rounding="nearest", **t), 2),
        "Adam, bfloat16 table + state": (bf16, bf16, lambda p: optim.Adam(p, lr=1e-3, state_dtype="bfloat16", **t), 2),
        "SGD, float32 table": (f32, f32, lambda p: optim.SGD(p, lr=1e-2, **t), 0),
        "SGD, bfloat16 table, stochastic": (bf16, f32, lambda p: optim.SGD(p, lr=1e-2, **t), 0),
    }


def _bytes_per_step(cfg, touched, table_dtype, state_dtype, states):
    row = cfg["dim"]
    per_row = 2 * row * table_dtype.itemsize + 2 * states * row * state_dtype.itemsize
    return touched * per_row + cfg["lookups"] * row * 4 + cfg["lookups"] * 8  # + gradient, indices


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    import ml_dtypes

    import sparseopt

    cfg = QUICK if quick else FULL
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(seed)
    start = rng.standard_normal((cfg["rows"], cfg["dim"]), dtype=np.float32)
    batches = [(rng.integers(0, cfg["rows"], cfg["lookups"]),
                rng.standard_normal((cfg["lookups"], cfg["dim"]), dtype=np.float32))
               for _ in range(cfg["batches"])]
    touched = statistics.mean(len(np.unique(i)) for i, _ in batches)
    variants = _variants(bf16, cfg["threads"])
    results, rows = {}, []
    for family in ("Adam", "SGD"):
        names = [n for n in variants if n.startswith(family)]
        opts = {}
        for n in names:
            table_dtype = variants[n][0]
            table = sparseopt.zeros(start.shape, table_dtype)  # rows on cache-line boundaries
            table[...] = start.astype(table_dtype)
            opts[n] = variants[n][2](table)
        for w in range(cfg["warmup"]):
            for n in names:
                opts[n].step(*batches[w % len(batches)])
        times = {n: [] for n in names}
        for r in range(cfg["rounds"]):
            b = batches[r % len(batches)]
            k = r % len(names)
            for n in names[k:] + names[:k]:
                t0 = time.perf_counter()
                opts[n].step(*b)
                times[n].append(time.perf_counter() - t0)
        base = names[0]
        for n in names:
            table_dtype, state_dtype, _, states = variants[n]
            ratio = statistics.median(a / b for a, b in zip(times[base], times[n]))
            s = harness.summarize(times[n])
            moved = _bytes_per_step(cfg, touched, table_dtype, state_dtype, states)
            results[n] = {"times": times[n], "ratio_vs_float32": ratio, "bytes_per_step": moved}
            rows.append([n, f"{s['median'] * 1e3:.2f} ({s['min'] * 1e3:.2f}–{s['max'] * 1e3:.2f})",
                         f"{moved / 2**20:.1f}", f"{moved / s['median'] / 1e9:.1f}", f"{ratio:.2f}x"])
        del opts
    table_md = harness.markdown_table(
        ["step", "ms", "MiB moved (model)", "GB/s", "speedup vs float32"], rows)
    notes = (f"{cfg['rows']:,} x {cfg['dim']} table, {cfg['lookups']:,} uniform lookups per step "
             f"(~{touched:,.0f} distinct rows), float32 gradients, {cfg['threads']} thread, {cfg['batches']} batches cycled, "
             f"{cfg['rounds']} rounds: ms median (min–max); speedup: median of per-round paired "
             f"ratios against the float32 table of the same optimizer. Command: "
             f"`python bench/run.py --only half`.")
    data = {"name": NAME, "quick": quick, "config": cfg, "results": results, "sparseopt": sparseopt.__version__,
            "machine": machine or harness.machine_info(), "copy_bandwidth": bandwidth}
    data["markdown"] = harness.report(table_md, notes, data)
    return data


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
