"""The floor under issue 18's bar "gather_sum >= 1.3x torch's embedding_bag": how fast can any
loop read the rows an EmbeddingBag forward sums, on this machine, beside torch and sparseopt.

torch's ``embedding_bag`` (FBGEMM's JIT kernels), ``sparseopt.gather_sum`` and loops that do
nothing but read the gathered rows (gather_floor.cpp: every byte of each row, folded into a
running sum; no bags, no output rows, no index checks) are timed alternately in paired rounds
on one table and the same lookups, torch and the loops on the same thread count. Each ratio is
the median of the per-round ratios embedding_bag time / loop time. The reading loops:

  * lookup order, with a software prefetch into L1 0, 8, 16 or 32 lookups ahead, and with one
    into L2 32 lookups ahead beside one into L1 8 ahead (gather_sum's order and hints);
  * the same lookups sorted ascending (consecutive reads of nearby rows: the order friendliest
    to DRAM pages and the hardware prefetchers), prefetch 0, 16 or 64 ahead;
  * each distinct row once, ascending (fewer bytes than a forward must read), prefetch 16;
  * the same number of bytes streamed from consecutive rows.

A forward that beats embedding_bag by 1.3x must read its rows faster than 1.3x embedding_bag's
time allows; if no reading loop does, the bar is out of reach on this machine whatever the
kernel's arithmetic. The verdict is given twice: for any of the loops, and for those in lookup
order, which is how a forward reads unless it first groups its lookups by row (reading each
distinct row once, which Zipf lookups make far fewer bytes, needs that sort first). Needs torch and a C++ compiler (the loops are built here with
``c++ -O3 -march=native -fopenmp -shared -fPIC``; -march=native is right for a floor, which
should be the fastest loop this CPU runs, and is never used for the package).

With ``--zipf`` the lookups are Zipf-distributed (s = 1.1, over a random permutation of the
rows, as bench_gather.py's), so that the hot rows stay in cache.

    python bench/diagnostics/gather_floor.py [--zipf] [--threads 2] [--rounds 15] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import sparseopt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import harness  # noqa: E402  (also puts torch's tensors on huge pages, as NumPy's are)
BAR = 1.3


def build(out_dir: Path) -> ctypes.CDLL:
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        sys.exit("gather_floor: needs a C++ compiler (c++, g++ or clang++)")
    lib = out_dir / "gather_floor.so"
    base = [cxx, "-std=c++17", "-O3", "-march=native", "-shared", "-fPIC",
            str(HERE / "gather_floor.cpp"), "-o", str(lib)]
    done = subprocess.run(base[:2] + ["-fopenmp"] + base[2:], capture_output=True, text=True)
    if done.returncode != 0:  # a compiler without OpenMP: one thread only
        done = subprocess.run(base, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit("gather_floor: the build failed:\n" + done.stdout + done.stderr)
    so = ctypes.CDLL(str(lib))
    for name in ("read_rows", "stream"):
        getattr(so, name).restype = ctypes.c_float
    return so


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--bags", type=int, default=4096)
    ap.add_argument("--bag-len", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--zipf", action="store_true", help="Zipf (s=1.1) lookups instead of uniform")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("gather_floor: needs torch (pip install torch)")
    torch.set_num_threads(args.threads)
    N, w, B, L, threads = args.rows, args.width, args.bags, args.bag_len, args.threads
    n = B * L
    rng = np.random.default_rng(0)
    table = harness.aligned_copy(rng.standard_normal((N, w), dtype=np.float32))  # as bench_gather's
    indptr = np.arange(0, n + 1, L, dtype=np.int64)
    if args.zipf:  # as bench_gather.py's: Zipf ranks over a random permutation of the rows
        batches = [rng.permutation(N)[np.minimum(rng.zipf(1.1, n) - 1, N - 1)].astype(np.int64)
                   for _ in range(args.batches)]
    else:
        batches = [rng.integers(0, N, n, dtype=np.int64) for _ in range(args.batches)]
    ascending = [np.sort(b) for b in batches]
    distinct = [np.unique(b) for b in batches]
    t_table, t_indptr = torch.from_numpy(table), torch.from_numpy(indptr)
    t_batches = [torch.from_numpy(b) for b in batches]

    with tempfile.TemporaryDirectory() as tmp:
        so = build(Path(tmp))
        P, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

        def reading(orders, ahead, far=0):
            return lambda i: so.read_rows(P(table.ctypes.data), I64(w), P(orders[i].ctypes.data),
                                          I64(len(orders[i])), I64(ahead), I64(far), INT(threads))

        def streamed(i):
            first = (i * n) % max(N - n, 1)
            return so.stream(P(table.ctypes.data), I64(w), I64(first), I64(min(n, N)), INT(threads))

        loops = {
            "torch embedding_bag": lambda i: torch.nn.functional.embedding_bag(
                t_batches[i], t_table, t_indptr, mode="sum", include_last_offset=True),
            "sparseopt gather_sum": lambda i: sparseopt.gather_sum(table, indptr, batches[i],
                                                                   num_threads=threads),
            "read rows, lookup order, no prefetch": reading(batches, 0),
        }
        for ahead in (8, 16, 32):
            loops[f"read rows, lookup order, prefetch {ahead}"] = reading(batches, ahead)
        loops["read rows, lookup order, L2 32 + L1 8"] = reading(batches, 8, 32)
        for ahead in (0, 16, 64):
            loops[f"read rows, ascending, prefetch {ahead}"] = reading(ascending, ahead)
        loops["read distinct rows, ascending, prefetch 16"] = reading(distinct, 16)
        loops["same bytes, streamed"] = streamed
        # the loops read what torch sums: check one on a tiny case before timing
        check = np.array([3, 1, 4, 1, 5], np.int64)
        want = float(table[check].astype(np.float64).sum())
        got = so.read_rows(P(table.ctypes.data), I64(w), P(check.ctypes.data), I64(5), I64(0), I64(0),
                           INT(1))
        assert abs(got - want) <= 1e-3 * max(1.0, abs(want)), (got, want)

        nb = args.batches
        times = harness.paired_rounds({name: (lambda i, f=f: f(i % nb)) for name, f in loops.items()},
                                      rounds=args.rounds, steps_per_round=nb)

    print(f"{N} x {w} float32 table, {B} bags x {L} {'Zipf' if args.zipf else 'uniform'} lookups, "
          f"{threads} threads, "
          f"{args.rounds} rounds of {args.batches} batches; torch {torch.__version__}")
    print(f"{'loop':44s} {'ms':>8s}  {'embedding_bag / loop':>20s}")
    floor = in_order = 0.0
    for name, t in times.items():
        ratio = harness.paired_ratio(times["torch embedding_bag"], t)["median"]
        if name.startswith("read"):
            floor = max(floor, ratio)
        if name.startswith("read rows, lookup order"):
            in_order = max(in_order, ratio)
        print(f"{name:44s} {np.median(t) * 1e3:8.3f}  {ratio:19.2f}x")
    verdict = "within reach" if floor >= BAR else "out of reach"
    print(f"fastest reading loop: {floor:.2f}x embedding_bag; issue 18's bar {BAR:.2f}x is "
          f"{verdict} for any forward that reads its rows")
    # A forward that does not first group its lookups by row (a sort that costs more than
    # embedding_bag's whole forward) reads them in lookup order, repeats included.
    verdict = "within reach" if in_order >= BAR else "out of reach"
    print(f"fastest loop in lookup order: {in_order:.2f}x embedding_bag; the bar is {verdict} "
          f"for a forward that reads its rows in lookup order")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
