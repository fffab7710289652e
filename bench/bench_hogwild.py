"""Benchmark: Hogwild! scaling, one worker against two, with threads and with processes.

Table: 1,000,000 x 64 float32 in shared memory (sparseopt.hogwild), updated by lazy sparse
steps of ``lookups`` row gradients each. Every worker steps its own replica of one optimizer
over the shared table and state, cycling through pre-generated batches of its own whose indices
cover the whole table (so workers do collide, as in real Hogwild! training):

  * SGD (lr 1e-3) and Adagrad (lr 1e-2), uniform indices, 4,096 lookups per step;
  * Adagrad with Zipf (1/r^1.1, randomly permuted row ids) indices: hot rows are shared by
    both workers, the case where Hogwild! collides and cores fight over cache lines;
  * SGD with 256 lookups per step: the Python around each step (argument checks, the step
    call) weighs more, and threads take turns for it under the GIL.

For each case, in interleaved rounds:

  * ``hogwild.run(..., backend="thread")`` with 1 worker and with 2 workers
    (``threads_per_worker=1``), and 1 worker whose every step uses 2 OpenMP threads
    (``threads_per_worker=2``): parallelism inside each step instead of across steps;
  * ``hogwild.run(..., backend="fork")`` with 1 and with 2 worker processes.

Each run does a warm-up block and then ``blocks`` timed blocks of ``steps`` steps per worker;
the workers meet at ``worker.barrier()`` before each block, so the blocks of the two workers
overlap, and a block's throughput is all workers' rows over the time from the first start to
the last end. Process start-up is not timed (a run's first block waits for every worker).
Throughput is in million gradient rows per second (lookups, duplicates included); "scaling" is
the median throughput with 2 workers over the median with 1.

    python bench/bench_hogwild.py [--quick] [--no-write]
    python bench/run.py --only hogwild
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "hogwild"

FULL = dict(num_rows=1_000_000, width=64, batches=8, rows_per_block=600_000, blocks=3,
            rounds=4, bw_reps=7)
QUICK = dict(num_rows=200_000, width=64, batches=4, rows_per_block=100_000, blocks=1,
             rounds=1, bw_reps=3)

CASES = [
    dict(key="sgd", label="SGD", optimizer="SGD", kw=dict(lr=1e-3), dist="uniform",
         lookups=4096),
    dict(key="adagrad", label="Adagrad", optimizer="Adagrad", kw=dict(lr=1e-2), dist="uniform",
         lookups=4096),
    dict(key="adagrad_zipf", label="Adagrad", optimizer="Adagrad", kw=dict(lr=1e-2),
         dist="zipf", lookups=4096),
    dict(key="sgd_small", label="SGD", optimizer="SGD", kw=dict(lr=1e-3), dist="uniform",
         lookups=256),
]
# (name, backend, workers, threads per worker)
CONFIGS = [
    ("thread_1", "thread", 1, 1),
    ("thread_2", "thread", 2, 1),
    ("openmp_2", "thread", 1, 2),
    ("fork_1", "fork", 1, 1),
    ("fork_2", "fork", 2, 1),
]
ZIPF_S = 1.1


def make_batches(rng: np.random.Generator, dist: str, num_rows: int, width: int, lookups: int,
                 count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if dist == "zipf":
        cdf = np.cumsum(np.arange(1, num_rows + 1, dtype=np.float64) ** -ZIPF_S)
        cdf /= cdf[-1]
        perm = np.random.default_rng(12345).permutation(num_rows)  # the same hot rows for all
    out = []
    for _ in range(count):
        if dist == "zipf":
            ranks = np.minimum(np.searchsorted(cdf, rng.random(lookups), side="right"),
                               num_rows - 1)
            idx = perm[ranks]
        else:
            idx = rng.integers(0, num_rows, lookups)
        vals = rng.standard_normal((lookups, width), dtype=np.float32)
        out.append((np.ascontiguousarray(idx, dtype=np.int64), vals))
    return out


def bench_worker(worker, opt, batches, steps, blocks):
    """One warm-up block, then `blocks` timed blocks of `steps` steps, each after a barrier.
    Returns [(start, end)] per timed block (time.perf_counter: one clock for all processes)."""
    count = len(batches)
    i = 0

    def block():
        nonlocal i
        for _ in range(steps):
            indices, values = batches[i % count]
            opt.step(indices, values)
            i += 1

    block()
    times = []
    for _ in range(blocks):
        worker.barrier()
        start = time.perf_counter()
        block()
        times.append((start, time.perf_counter()))
    return times


def _busy_seconds() -> float | None:
    stat = harness._proc_stat()
    return None if stat is None else stat[0]


def _own_seconds() -> float:
    t = os.times()  # children's times count once run() has joined them
    return t.user + t.system + t.children_user + t.children_system


def run(quick: bool = False, seed: int = 0, bandwidth: dict | None = None,
        machine: dict | None = None) -> dict:
    from sparseopt import hogwild, optim

    cfg = dict(QUICK if quick else FULL)
    t_start = time.perf_counter()
    machine = machine or harness.machine_info()
    rng = np.random.default_rng(seed)
    N, w = cfg["num_rows"], cfg["width"]
    harness.log(f"allocating a {N} x {w} float32 table in shared memory ...")
    table = hogwild.share(((rng.random((N, w), dtype=np.float32) - 0.5) * 0.02))

    cases = []
    for case in CASES:
        lookups = case["lookups"]
        steps = max(1, cfg["rows_per_block"] // lookups)
        batches = [make_batches(rng, case["dist"], N, w, lookups, cfg["batches"])
                   for _ in range(2)]
        unique = float(np.mean([np.unique(idx).size for idx, _ in batches[0]]))
        opt = getattr(optim, case["optimizer"])(table, **case["kw"]).share_memory()
        samples: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
        loads: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
        harness.log(f"[{case['key']}] {steps} steps of {lookups} lookups per block")
        for r in range(cfg["rounds"]):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[: r % len(CONFIGS)]
            for name, backend, workers, threads in order:
                busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
                out = hogwild.run(bench_worker, workers, backend=backend, args=(opt,),
                                  worker_args=[(batches[k],) for k in range(workers)],
                                  kwargs=dict(steps=steps, blocks=cfg["blocks"]),
                                  threads_per_worker=threads, progress=False)
                wall = time.perf_counter() - t0
                busy1 = _busy_seconds()
                if busy0 is not None and busy1 is not None:
                    loads[name].append(max(0.0, busy1 - busy0 - (_own_seconds() - own0)) / wall)
                for b in range(cfg["blocks"]):
                    first = min(times[b][0] for times in out)
                    last = max(times[b][1] for times in out)
                    samples[name].append(workers * steps * lookups / (last - first) / 1e6)
            harness.log(f"[{case['key']}] round {r + 1}: " + ", ".join(
                f"{name} {samples[name][-1]:.1f}" for name, *_ in CONFIGS) + " M rows/s")
        res = {"case": case, "steps_per_block": steps, "unique_rows_per_step": unique,
               "configs": {}}
        for name, backend, workers, threads in CONFIGS:
            s = harness.summarize(samples[name])
            s["samples"] = samples[name]
            s["other_cores"] = loads[name]
            s.update(backend=backend, workers=workers, threads_per_worker=threads)
            res["configs"][name] = s
        # every config runs the same blocks in every round: pair them block by block
        res["scaling_thread"] = harness.paired_ratio(samples["thread_2"], samples["thread_1"])["median"]
        res["scaling_fork"] = harness.paired_ratio(samples["fork_2"], samples["fork_1"])["median"]
        res["scaling_openmp"] = harness.paired_ratio(samples["openmp_2"], samples["thread_1"])["median"]
        cases.append(res)
        del opt, batches
        gc.collect()
    del table
    gc.collect()

    data = {"name": NAME, "quick": quick, "config": cfg, "zipf_exponent": ZIPF_S, "seed": seed,
            "machine": machine, "copy_bandwidth": bandwidth, "cases": cases,
            "elapsed_s": time.perf_counter() - t_start}
    data["markdown"] = to_markdown(data)
    return data


def _cell(s: dict) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    header = ["optimizer", "indices", "lookups/step", "1 worker", "threads: 2 workers",
              "scaling", "processes: 1 worker", "processes: 2 workers", "scaling",
              "1 worker, 2 OpenMP threads/step"]
    rows = []
    for c in data["cases"]:
        case, s = c["case"], c["configs"]
        dist = "uniform" if case["dist"] == "uniform" else f"Zipf (s={data['zipf_exponent']})"
        rows.append([case["label"], dist, f"{case['lookups']:,}", _cell(s["thread_1"]),
                     _cell(s["thread_2"]), f"{c['scaling_thread']:.2f}x", _cell(s["fork_1"]),
                     _cell(s["fork_2"]), f"{c['scaling_fork']:.2f}x",
                     f"{_cell(s['openmp_2'])} = {c['scaling_openmp']:.2f}x"])
    table = harness.markdown_table(header, rows)
    n = len(data["cases"][0]["configs"]["thread_1"]["samples"]) if data["cases"] else 0
    notes = (
        f"Million gradient rows per second (lookups, duplicates included), median (min–max) "
        f"over {n} timed blocks ({cfg['rounds']} interleaved runs of {cfg['blocks']} blocks, "
        f"each block {cfg['rows_per_block']:,} rows per worker after a warm-up block), on a "
        f"{cfg['num_rows']:,} x {cfg['width']} float32 table in shared memory. Every worker "
        f"steps its own replica of one lazy optimizer (SGD lr 1e-3, Adagrad lr 1e-2, state "
        f"shared) with batches of its own over the whole table, so workers collide on rows. "
        f"`hogwild.run(..., backend=\"thread\")` and `backend=\"fork\"` with "
        f"`threads_per_worker=1`; scaling = median of the per-block paired ratios 2 workers / 1 (the same round and block). Last column: "
        f"one thread worker whose steps each run on 2 OpenMP threads, and its ratio to 1 "
        f"worker. Process start-up is not timed.")
    lines = [table, "", notes]
    if data.get("copy_bandwidth") or data.get("machine"):
        lines += ["", harness.describe_machine(data["machine"], data.get("copy_bandwidth"))]
    loads = [x for c in data["cases"] for s in c["configs"].values() for x in s["other_cores"]]
    if loads:
        lines += ["", f"Other processes' CPU use during the runs: mean {np.mean(loads):.2f}, "
                      f"max {max(loads):.2f} cores (of "
                      f"{data['machine'].get('usable_cpus') or '?'})."]
    if data["quick"]:
        lines.insert(0, "**Quick smoke run (few repetitions) -- not representative.**\n")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, few repetitions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true",
                    help="print only, do not write bench/results/")
    args = ap.parse_args(argv)
    data = run(quick=args.quick, seed=args.seed)
    print(data["markdown"])
    if not args.no_write:
        out = harness.RESULTS_DIR / "quick" if args.quick else harness.RESULTS_DIR
        for p in harness.write_results(NAME, data, data["markdown"], out):
            harness.log(f"wrote {p}")


if __name__ == "__main__":
    main()
