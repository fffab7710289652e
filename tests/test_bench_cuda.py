"""bench/bench_cuda.py: where a GPU can run it (tests/cuda/conftest.py's conditions), a quick
run gives tables of the expected shape; elsewhere (CI, no GPU) it skips with the reason and its
markdown says so, and `python bench/run.py` keeps the last table."""

from __future__ import annotations

from _helpers import load_bench


def test_bench_cuda_runs_or_skips_with_the_reason():
    bench = load_bench("bench_cuda")
    why = bench.why_not()
    data = bench.run(quick=True)
    if why is not None:
        assert data["skipped"] == why
        assert "skipped" in data["markdown"] and why in data["markdown"]
        return
    assert "skipped" not in data
    assert len(data["adam"]) == len(bench.QUICK["tables"])
    assert all(row[1] > 0 and row[4] > 0 and row[5] > 0 for row in data["adam"])
    assert "vs SparseAdam" in data["markdown"]
