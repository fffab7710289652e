"""sparseopt.distributed: lookups + steps per second per rank on 1, 2 and 4 MPI ranks, and the
fraction of each step spent in communication.

    python bench/bench_distributed.py                  # launches mpiexec -n 1, 2, 4
    python bench/bench_distributed.py --quick          # smoke run (-> bench/results/quick/)
    python bench/bench_distributed.py --update-doc     # also splice the table into
                                                       # docs/distributed.md

Each rank owns a shard of a 400,000 x 64 float32 table (row r on rank r % size) with a lazy
Adam optimizer, and runs the training loop's pair of collectives per step: ``lookup`` of its
own batch of 4,096 Zipf-distributed ids (1/r^1.1 over the row ids, so rows repeat and low ids
are hot) and ``step`` of the same ids with random gradients. Batches are generated up front.
Time in communication is the time spent inside the collectives (the validity all-gather, the
count exchange and the all-to-alls), measured by wrapping the Comm object's methods; it
includes waiting for slower ranks. The table reports the median over ranks of each rank's
steps per second (one step = one lookup + one optimizer step of its batch), lookups (ids) per
second, and bytes sent per step. The machine's cores are shared by all ranks: with more ranks
than cores (4 ranks on a 2-core machine) the ranks take turns, and the numbers say how the
protocol costs, not how a cluster scales; see docs/distributed.md for the cost model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "distributed"
NUM_ROWS, WIDTH, BATCH = 400_000, 64, 4096
DOC = harness.REPO_ROOT / "docs" / "distributed.md"


def _timed_comm(comm):
    """Wrap the comm's collectives to add up the seconds spent in them and the bytes sent."""
    spent = {"seconds": 0.0, "bytes": 0}

    def wrap(name, count_bytes=False):
        inner = getattr(comm, name)

        def timed(*args):
            start = time.perf_counter()
            try:
                return inner(*args)
            finally:
                spent["seconds"] += time.perf_counter() - start
                if count_bytes:  # (send, send_counts, recv, recv_counts): rows to other ranks
                    send, counts = args[0], args[1]
                    others = int(counts.sum() - counts[comm.rank])
                    spent["bytes"] += others * send.shape[1]
        setattr(comm, name, timed)

    wrap("allgather_object")
    wrap("_alltoall_counts")
    wrap("_alltoallv_bytes", count_bytes=True)
    return spent


def worker(steps: int, warmup: int, seed: int) -> None:
    """One rank's measurement; rank 0 prints every rank's numbers as one JSON line."""
    from sparseopt import distributed as sd
    from sparseopt.optim import Adam

    comm = sd.mpi_comm()
    rng = np.random.default_rng([seed, comm.rank])
    popularity = 1.0 / np.arange(1, NUM_ROWS + 1) ** 1.1
    cdf = np.cumsum(popularity / popularity.sum())
    batches = [np.searchsorted(cdf, rng.random(BATCH)).clip(max=NUM_ROWS - 1).astype(np.int64)
               for _ in range(8)]
    grads = rng.standard_normal((BATCH, WIDTH), dtype=np.float32)
    table = sd.ShardedTable(comm, NUM_ROWS, (WIDTH,), np.float32,
                            lambda rows: np.zeros((len(rows), WIDTH), np.float32))
    opt = sd.ShardedOptimizer(table, Adam, lr=1e-3)
    for t in range(warmup):
        table.lookup(batches[t % len(batches)])
        opt.step(batches[t % len(batches)], grads)
    spent = _timed_comm(comm)
    comm.allgather_object(None)  # start together
    spent["seconds"], spent["bytes"] = 0.0, 0
    start = time.perf_counter()
    for t in range(steps):
        idx = batches[t % len(batches)]
        table.lookup(idx)
        opt.step(idx, grads)
    total = time.perf_counter() - start
    mine = {"rank": comm.rank, "seconds": total, "comm_seconds": spent["seconds"],
            "bytes_per_step": spent["bytes"] / steps, "steps": steps}
    everyone = comm.allgather_object(mine)
    if comm.rank == 0:
        print("RESULT " + json.dumps({"size": comm.size, "ranks": everyone}), flush=True)


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def run(quick: bool = False, seed: int = 0, sizes=(1, 2, 4)) -> dict:
    steps, warmup = (20, 3) if quick else (200, 10)
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread per rank: ranks share the cores
    results = []
    for size in sizes:
        cmd = [_mpiexec(), "-n", str(size), sys.executable, "-m", "mpi4py", __file__,
               "--worker", "--steps", str(steps), "--warmup", str(warmup), "--seed", str(seed)]
        harness.log(" ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
    rows = []
    for r in results:
        ranks = r["ranks"]
        per_s = [x["steps"] / x["seconds"] for x in ranks]
        frac = [x["comm_seconds"] / x["seconds"] for x in ranks]
        sent = [x["bytes_per_step"] for x in ranks]
        rows.append([r["size"], f"{np.median(per_s):,.0f}", f"{np.median(per_s) * BATCH:,.0f}",
                     f"{np.median(per_s) * BATCH * r['size']:,.0f}",
                     f"{100 * np.median(frac):.0f} %", f"{np.median(sent) / 1e6:.2f} MB"])
    machine = harness.machine_info()
    header = ["ranks", "steps/s per rank", "ids/s per rank", "ids/s all ranks",
              "time in communication", "sent per step per rank"]
    markdown = (harness.markdown_table(header, rows) + "\n\n"
                f"lookup + lazy Adam step of {BATCH:,} Zipf ids per rank on a {NUM_ROWS:,} x "
                f"{WIDTH} float32 table, {steps} steps, MPI (mpich) on one machine "
                f"({machine.get('cpu_model', 'cpu')}, {os.cpu_count()} cores shared by all ranks, "
                f"one thread each); `python bench/bench_distributed.py`")
    return {"machine": machine, "steps": steps, "results": results, "markdown": markdown}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--update-doc", action="store_true")
    args, rest = ap.parse_known_args(argv)
    if args.worker:  # one rank, launched by run() under mpiexec
        seed = argparse.ArgumentParser()
        seed.add_argument("--seed", type=int, default=0)
        worker(args.steps, args.warmup, seed.parse_args(rest).seed)
        return
    # --quick, --seed, --no-write: the harness's command line, as every benchmark's
    data = harness.cli(NAME, run, __doc__, rest)
    if args.update_doc:  # splices the table into docs/distributed.md
        harness.splice_readme(NAME, data["markdown"], DOC)
        harness.log(f"updated {DOC}")


if __name__ == "__main__":
    main()
