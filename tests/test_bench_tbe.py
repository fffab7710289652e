"""bench/bench_tbe.py (FBGEMM's CPU TBE as the peer of the fused step): its same-table check
runs where fbgemm_gpu is installed, and without it the bench skips with a reason instead of
failing."""

import numpy as np
import pytest
from _helpers import load_bench


@pytest.fixture(scope="module")
def bench_tbe():
    return load_bench("bench_tbe")


def test_same_table_as_fbgemm_or_a_clean_skip(bench_tbe):
    fb, why = bench_tbe.load_fbgemm()
    if fb is None:
        data = bench_tbe.run(quick=True)
        assert data["skipped"] == why and "fbgemm-gpu-cpu" in why
        assert data["markdown"].startswith("Skipped:")
        pytest.skip(why)
    diffs = bench_tbe.check_same_table(fb, num_rows=300, width=8, steps=3)
    assert set(diffs) == set(bench_tbe.OPTIMIZERS)
    assert all(0.0 <= d <= 1e-5 for d in diffs.values())


def test_the_check_notices_a_different_table(bench_tbe):
    a = np.ones((4, 3), np.float32)
    b = a.copy()
    assert bench_tbe.max_rel_diff(a, b) == 0.0
    b[2, 1] = 1.001
    assert bench_tbe.max_rel_diff(a, b) == pytest.approx(1e-3, rel=1e-3)
