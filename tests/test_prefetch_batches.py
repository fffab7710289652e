"""Far prefetch hints in batches (view.hpp's prefetch_ahead, far_batch): a loop whose rows
spread over 512 MiB or more of one array sends its far hints eight rows at a time. Hints never
change results; these tests check the schedule from C++ and that the batched loops give the
rows of the same calls on a compact table (below the threshold: one far hint per row)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sparseopt
from _helpers import run_cpp

CPP_TEST = Path(__file__).parent / "cpp" / "prefetch_hints.cpp"
WIDTH = 64
WIDE_ROWS = (1 << 29) // (WIDTH * 4)  # a float32 table of exactly 512 MiB: the batches' threshold


def test_the_schedule_from_cpp(tmp_path):
    out = run_cpp(CPP_TEST, tmp_path / "prefetch_hints", sparseopt.get_include(),
                  sparseopt.info()["openmp"])
    assert "prefetch hints ok" in out


# Enough lookups that every call below (half of them, for the steps) is past parallel_min_work
# (2^15 element updates, parallel.hpp), so that num_threads=2 runs two threads, each with a
# range longer than the far hints' distance.
LOOKUPS = 1200


def _lookups(rng, num_rows, touched=96, n=LOOKUPS):
    """Rows from the first to the last of the table (so the loops' spread is the table's),
    with repeats; and where each lands in a compact table of just those rows."""
    rows = np.unique(np.concatenate([[0, num_rows - 1], rng.integers(1, num_rows - 1, touched - 2)]))
    pick = rng.integers(0, len(rows), n)
    return rows, rows[pick], pick  # touched rows (ascending), indices, compact indices


@pytest.mark.parametrize("threads", [1, 2])
def test_steps_on_a_table_past_the_threshold_match_a_compact_table(rng, threads):
    rows, indices, compact_indices = _lookups(rng, WIDE_ROWS)
    wide = np.zeros((WIDE_ROWS, WIDTH), np.float32)  # untouched pages cost no memory
    start = rng.standard_normal((len(rows), WIDTH)).astype(np.float32)
    wide[rows] = start
    compact = start.copy()
    kw = dict(lr=0.1, momentum=0.9, mode="exact", num_threads=threads)
    opt_wide, opt_compact = sparseopt.optim.SGD(wide, **kw), sparseopt.optim.SGD(compact, **kw)
    num_bags = 40
    indptr = np.linspace(0, len(indices), num_bags + 1).astype(np.int64)
    for step in range(4):
        values = rng.standard_normal((len(indices), WIDTH)).astype(np.float32)
        grad_out = rng.standard_normal((num_bags, WIDTH)).astype(np.float32)
        half = slice(0, len(indices) // 2) if step % 2 else slice(len(indices) // 2, None)
        opt_wide.step(indices[half], values[half])  # a plan's rows: for_each_row
        opt_compact.step(compact_indices[half], values[half])
        opt_wide.step_bags(grad_out, indptr, indices)  # the fused step's rows
        opt_compact.step_bags(grad_out, indptr, compact_indices)
    some = slice(0, 2 * len(indices) // 3)
    opt_wide.flush(indices[some])  # exact catch-up over indices: catch_up_rows
    opt_compact.flush(compact_indices[some])
    assert wide[rows].tobytes() == compact.tobytes()
    opt_wide.flush(indices)
    opt_compact.flush(compact_indices)
    assert wide[rows].tobytes() == compact.tobytes()
    assert not wide[1:rows[1]].any()  # rows the calls never named: untouched


@pytest.mark.parametrize("threads", [1, 2])
def test_the_half_forward_on_a_table_past_the_threshold_matches_a_compact_table(rng, threads):
    num_rows = (1 << 29) // (WIDTH * 2)  # a float16 table of 512 MiB
    # Each row looked up once (no repeats, so the forward keeps its far and near hints, batched
    # here; see detail::mostly_repeats): the first and last rows and a run of consecutive ones,
    # which fill few pages.
    rows = np.concatenate([[0], np.arange(1000, 1000 + LOOKUPS - 2), [num_rows - 1]])
    compact_indices = rng.permutation(len(rows))
    indices = rows[compact_indices]
    wide = np.zeros((num_rows, WIDTH), np.float16)
    compact = rng.standard_normal((len(rows), WIDTH)).astype(np.float16)
    wide[rows] = compact
    indptr = np.linspace(0, len(indices), 41).astype(np.int64)
    got = sparseopt.gather_sum(wide, indptr, indices, num_threads=threads)
    want = sparseopt.gather_sum(compact, indptr, compact_indices, num_threads=threads)
    assert got.tobytes() == want.tobytes()
