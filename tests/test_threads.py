"""Results do not depend on the number of threads: num_threads=1 and
num_threads=2 (and 0 = all) give bit-identical params and state, on a table
big enough for the kernels to go parallel. Also checks the parallel results
against the plain references (so "identical" is not "identically wrong").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sparseopt
from sparseopt.optim import SGD, Adagrad, Adam

from _helpers import assert_close, coalesce_ref, run_cpp

NUM_ROWS, WIDTH, NNZ, N_STEPS = 20_000, 16, 30_000, 3

CONFIGS = {
    "sgd": lambda p, nt: SGD(p, lr=0.05, num_threads=nt),
    "sgd_momentum": lambda p, nt: SGD(p, lr=0.05, momentum=0.9, dampening=0.1, num_threads=nt),
    "sgd_nesterov": lambda p, nt: SGD(p, lr=0.05, momentum=0.9, nesterov=True, num_threads=nt),
    "adagrad": lambda p, nt: Adagrad(
        p, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, num_threads=nt
    ),
    "adam": lambda p, nt: Adam(p, lr=0.01, num_threads=nt),
}


def _steps(rng, dtype, index_dtype, row_shape=(WIDTH,)):
    steps = []
    for s in range(N_STEPS):
        # heavy duplication: a hot set of 500 rows appears many times, plus a uniform tail
        hot = rng.integers(0, 500, size=NNZ // 2)
        tail = rng.integers(0, NUM_ROWS, size=NNZ - NNZ // 2)
        idx = np.concatenate([hot, tail])
        rng.shuffle(idx)
        vals = rng.standard_normal((NNZ, *row_shape)).astype(dtype)
        # mixed magnitudes make the summation order visible in the bits
        vals[::7] *= dtype(1e4)
        steps.append((idx.astype(index_dtype), vals))
    return steps


def _run(name, p0, steps, nt):
    param = p0.copy()
    opt = CONFIGS[name](param, nt)
    for idx, vals in steps:
        opt.step(idx, vals)
    assert opt.param is param
    return param, opt.state_dict()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_optimizer_thread_count_invariant(rng, name, dtype):
    index_dtype = np.int64 if dtype == np.float64 else np.int32
    p0 = rng.standard_normal((NUM_ROWS, WIDTH)).astype(dtype)
    steps = _steps(rng, dtype, index_dtype)
    p1, sd1 = _run(name, p0, steps, 1)
    p2, sd2 = _run(name, p0, steps, 2)
    p0_all, sd0 = _run(name, p0, steps, 0)
    assert not np.array_equal(p1, p0)
    assert np.array_equal(p1, p2), "num_threads=1 vs 2 differ"
    assert np.array_equal(p1, p0_all), "num_threads=1 vs 0 (all) differ"
    assert sd1["step"] == sd2["step"] == sd0["step"] == N_STEPS
    assert set(sd1["state"]) == set(sd2["state"]) == set(sd0["state"])
    for k in sd1["state"]:
        assert np.array_equal(sd1["state"][k], sd2["state"][k]), k
        assert np.array_equal(sd1["state"][k], sd0["state"][k]), k


def test_one_dimensional_table_thread_invariant(rng):
    p0 = rng.standard_normal(NUM_ROWS * 4)
    idx = rng.integers(0, NUM_ROWS * 4, size=60_000).astype(np.int64)
    vals = rng.standard_normal(60_000)
    out = []
    for nt in (1, 2):
        p = p0.copy()
        opt = Adam(p, lr=0.01, num_threads=nt)
        for _ in range(2):
            opt.step(idx, vals)
        out.append((p, opt.state_dict()))
    assert np.array_equal(out[0][0], out[1][0])
    for k in out[0][1]["state"]:
        assert np.array_equal(out[0][1]["state"][k], out[1][1]["state"][k]), k


def test_parallel_adam_matches_reference(rng):
    """num_threads=2 on the big table still computes SparseAdam's formula."""
    dtype = np.float64
    p0 = rng.standard_normal((NUM_ROWS, WIDTH))
    steps = _steps(rng, dtype, np.int64)
    param, sd = _run("adam", p0, steps, 2)
    # NumPy reference
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    for t, (idx, vals) in enumerate(steps, start=1):
        u, inv = np.unique(idx, return_inverse=True)
        g = np.zeros((len(u), WIDTH))
        np.add.at(g, inv.reshape(-1), vals)
        m[u] = m[u] + (g - m[u]) * (1 - b1)
        v[u] = v[u] + (g * g - v[u]) * (1 - b2)
        step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        p[u] = p[u] - step_size * (m[u] / (np.sqrt(v[u]) + eps))
    assert_close(param, p, dtype)
    assert_close(sd["state"]["exp_avg"], m, dtype)
    assert_close(sd["state"]["exp_avg_sq"], v, dtype)


def test_parallel_momentum_row_steps(rng):
    p0 = rng.standard_normal((NUM_ROWS, WIDTH)).astype(np.float32)
    steps = _steps(rng, np.float32, np.int32)
    _, sd = _run("sgd_momentum", p0, steps, 2)
    expect = np.zeros(NUM_ROWS, dtype=np.int64)
    for idx, _ in steps:
        expect[np.unique(idx)] += 1
    assert np.array_equal(sd["state"]["row_steps"], expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
def test_coalesce_thread_count_invariant_and_exact(rng, dtype, index_dtype):
    (idx, vals), = _steps(rng, dtype, index_dtype)[:1]
    results = {
        nt: sparseopt.coalesce(idx, vals, NUM_ROWS, num_threads=nt) for nt in (1, 2, 0)
    }
    ref = coalesce_ref(idx, vals)
    for nt, (u, s, c) in results.items():
        assert np.array_equal(u, ref[0]), nt
        assert np.array_equal(c, ref[2]), nt
        # order of appearance, whatever the thread count: bit-identical
        assert np.array_equal(s, ref[1]), nt
        assert u.dtype == np.dtype(index_dtype) and s.dtype == np.dtype(dtype)
    u1, s1, c1 = results[1]
    u2, s2, c2 = results[2]
    assert np.array_equal(s1, s2) and np.array_equal(u1, u2) and np.array_equal(c1, c2)


def test_coalesce_without_num_rows_threaded(rng):
    idx = rng.integers(0, 50_000, size=80_000).astype(np.int64)
    vals = rng.standard_normal(80_000).astype(np.float32)
    a = sparseopt.coalesce(idx, vals, num_threads=1)
    b = sparseopt.coalesce(idx, vals, num_threads=2)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_thread_scratch_rows_apart(tmp_path):
    """Each thread's scratch row (detail::ThreadRows, which the row loops sum into) starts on a
    cache line of its own, so two threads never write the same line (tests/cpp/thread_rows.cpp)."""
    source = Path(__file__).parent / "cpp" / "thread_rows.cpp"
    out = run_cpp(source, tmp_path / "thread_rows", sparseopt.get_include(), sparseopt.info()["openmp"])
    assert "thread rows ok" in out
