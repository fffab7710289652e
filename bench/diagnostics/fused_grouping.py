"""What is left of issue 18's bar "step_bags at least 1.5x gather_sum_backward + step" once the
grouping both paths share is taken out: how much of each path is grouping the lookups by row?

For each optimizer and index distribution of bench_fused.py (the same table, bags and batches),
three calls are timed alternately, in rounds, through the Python API a user calls:

  * fused    ``opt.step_bags(grad_out, indptr, indices)``
  * two      ``opt.step(*sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=N))``
  * grouping ``sparseopt.gather_sum_backward`` of a zero-width ``grad_out``: the same plan as the
    fused step's (the lookups grouped by row, with their bags), a call's overhead, no sums

and printed with the paired ratio two / fused (as bench_fused.py reports it) and
(two - grouping) / (fused - grouping): the ratio both paths would have if grouping cost nothing
(the grouping call's own overhead comes off too, so this errs high). Where even that stays
below 1.5x, a faster grouping cannot reach the bar; only the rows' own sums and updates can.

The last column is the other end: 1 + (two - fused) / grouping, the ratio if the rows' sums and
updates cost nothing in both paths, with the grouping as it is. two - fused is the work only the
two calls do (writing the coalesced gradient, reading it back, grouping its rows again); any
time the fused step saves on its rows, the step of the two calls saves too, since they share
the row loops. So no fused step beats the two calls by more than this while the grouping and
the two calls' own extra work cost what they cost here; where it is below 1.5x, the bar is out
of reach for any row loop. With the rows' least cost added to the grouping (their bytes at
memory speed: bench/diagnostics/size_floor.cpp), the ceiling is lower still.

That is the "floor" column: the ratio if both paths' row loops moved only their least bytes
(bench_fused.least_bytes: B_fused and B_two) at the read-modify-write rate measured here
(harness.rmw_bandwidth, rows streamed in order, so no scattered row's loop gets there) and did
no arithmetic, with the groupings as timed: the lookups' plan G (with their bags, as above)
and the step's plan of the coalesced rows G_rows ("rows' grouping": ``sparseopt.coalesce`` of
the batch's distinct rows, zero-width):

    floor = (B_two / rate + G + G_rows) / (B_fused / rate + G)

and "bytes", B_two / B_fused, the same with groupings that cost nothing. As the groupings'
cost falls from G (and G_rows with it) to nothing, the floor ratio moves steadily from the
first to the second, so where both are below 1.5x, no row loop reaches the bar with a
grouping as fast as this one or faster (both groupings cheaper by the same factor).

    python bench/diagnostics/fused_grouping.py [--rounds 60] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bench_fused  # noqa: E402
import harness  # noqa: E402

import sparseopt  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="bench_fused's quick shapes (a smoke run)")
    args = ap.parse_args(argv)
    cfg = bench_fused.QUICK if args.quick else bench_fused.FULL
    rng = np.random.default_rng(0)
    table = rng.standard_normal((cfg["rows"], cfg["dim"]), dtype=np.float32)
    rate = harness.rmw_bandwidth(threads=2) * 1e9 / 1e3  # bytes per ms
    print(f"{cfg['rows']:,} x {cfg['dim']} float32 table, {cfg['bags']} bags x {cfg['bag_len']} lookups, "
          f"{args.rounds} rounds; ms: medians; read-modify-write {rate / 1e6:.1f} GB/s (2 threads)")
    print(f"{'optimizer':16s} {'indices':8s} {'fused':>7s} {'two':>7s} {'grouping':>9s} {'rows grouping':>14s} "
          f"{'two/fused':>10s} {'without grouping':>17s} {'rows free':>10s} {'floor':>7s} {'bytes':>7s}")
    for dist in ("uniform", "zipf"):
        batches = bench_fused._batches(cfg, dist, rng)
        distinct = [np.unique(indices) for _, _, indices in batches]
        for name, make in bench_fused._optimizers().items():
            fused_opt = make(harness.aligned_copy(table))
            two_opt = make(harness.aligned_copy(table))
            times = {"fused": [], "two": [], "grouping": [], "rows grouping": []}
            for r in range(args.rounds + 5):  # the first 5 warm up
                grad_out, indptr, indices = batches[r % len(batches)]
                rows = distinct[r % len(batches)]
                empty = np.empty((grad_out.shape[0], 0), np.float32)
                no_values = np.empty((len(rows), 0), np.float32)
                calls = [
                    ("fused", lambda: fused_opt.step_bags(grad_out, indptr, indices)),
                    ("two", lambda: two_opt.step(*sparseopt.gather_sum_backward(
                        grad_out, indptr, indices, num_rows=cfg["rows"]))),
                    ("grouping", lambda: sparseopt.gather_sum_backward(empty, indptr, indices,
                                                                       num_rows=cfg["rows"])),
                    ("rows grouping", lambda: sparseopt.coalesce(rows, no_values, num_rows=cfg["rows"])),
                ]
                for key, call in calls if r % 2 else calls[::-1]:
                    t0 = time.perf_counter()
                    call()
                    if r >= 5:
                        times[key].append(time.perf_counter() - t0)
            if not np.array_equal(fused_opt.param, two_opt.param):
                raise AssertionError(f"{name}, {dist}: the fused step and the two calls differ")
            ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            ratio = statistics.median(a / b for a, b in zip(times["two"], times["fused"]))
            rest = ms["fused"] - ms["grouping"]  # (a noisy run can leave nothing)
            left = f"{(ms['two'] - ms['grouping']) / rest:16.2f}x" if rest > 0 else f"{'n/a':>17s}"
            ceiling = 1 + (ms["two"] - ms["fused"]) / ms["grouping"]
            unique = float(np.mean([len(rows) for rows in distinct]))
            fused_bytes, two_bytes = bench_fused.least_bytes(name, unique, len(batches[0][2]), cfg["bags"],
                                                             cfg["dim"])
            floor = ((two_bytes / rate + ms["grouping"] + ms["rows grouping"])
                     / (fused_bytes / rate + ms["grouping"]))
            print(f"{name:16s} {dist:8s} {ms['fused']:7.3f} {ms['two']:7.3f} {ms['grouping']:9.3f} "
                  f"{ms['rows grouping']:14.3f} {ratio:9.2f}x {left} {ceiling:9.2f}x {floor:6.2f}x "
                  f"{two_bytes / fused_bytes:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
