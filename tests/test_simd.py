"""The AVX2 copies of the hot loops (simd.hpp) against the generic ones, and the two layouts of
the gather backward (GatherPlan) against each other: the same bits, whatever the row width
(full register chunks, smaller chunks and scalar tails), dtype, weights or special values.

Both are forced through private testing hooks of sparseopt._core: ``_set_simd_path("generic"
| "best")`` and ``_set_gather_layout("auto" | "sorted" | "blocked")``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

import sparseopt
from sparseopt import _core
from sparseopt.meprop import linear_backward

from _helpers import FLOAT_DTYPES, INDEX_DTYPES, run_cpp

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
# Every chunk size of sum_terms (8, 4, 2, 1 vectors of 32 bytes) and scalar tails, both dtypes.
WIDTHS = [1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255,
          256, 257, 500, 784]


@contextlib.contextmanager
def simd_path(path):
    _core._set_simd_path(path)
    try:
        yield
    finally:
        _core._set_simd_path("best")


@contextlib.contextmanager
def gather_layout(layout):
    _core._set_gather_layout(layout)
    try:
        yield
    finally:
        _core._set_gather_layout("auto")


def special(rng, shape, dtype, inf=True):
    """Random values with -0.0, inf and NaN sprinkled in. One NaN payload only, and no way to
    make another (inf - inf, 0 * inf): when two different NaNs meet in an addition, which one
    comes out depends on the compiler's operand order (see simd.hpp)."""
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    if flat.size:
        flat[::7] = -0.0
        if inf:
            flat[3::29] = np.inf
        flat[11::37] = np.nan
    return a


def bags(rng, num_bags, num_rows, max_len, index_dtype):
    lengths = rng.integers(0, max_len + 1, size=num_bags)
    lengths[::4] = 0
    indptr = np.zeros(num_bags + 1, dtype=index_dtype)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.integers(0, num_rows, size=int(indptr[-1])).astype(index_dtype)
    return indptr, indices


def both_paths(fn):
    with simd_path("generic"):
        generic = fn()
    best = fn()
    return generic, best


def same_bits(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_bits(x, y)
    elif a is None:
        assert b is None
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_info_reports_the_path():
    info = sparseopt.info()
    assert info["simd"] in ("avx2", "generic")
    with simd_path("generic"):
        assert sparseopt.info()["simd"] == "generic"
    assert sparseopt.info()["simd"] == info["simd"]
    assert _core._set_simd_path("best") == info["simd"]


def test_hooks_refuse_unknown_names():
    with pytest.raises(ValueError, match="generic"):
        _core._set_simd_path("avx512")
    with pytest.raises(ValueError, match="blocked"):
        _core._set_gather_layout("dense")
    assert sparseopt.info()["simd"] in ("avx2", "generic")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_gather_sum_paths_same_bits(rng, dtype, case):
    index_dtype = np.int64 if case != "mean" else np.int32
    for w in WIDTHS:
        table = special(rng, (60, w), dtype, inf=case != "weighted")
        indptr, indices = bags(rng, 25, 60, 9, index_dtype)
        weights = special(rng, len(indices), dtype, inf=False) if case == "weighted" else None
        mode = "mean" if case == "mean" else "sum"
        generic, best = both_paths(lambda: sparseopt.gather_sum(table, indptr, indices, weights, mode=mode))
        same_bits(generic, best)
        if case == "sum":  # first term, then each next one added, in order
            ref = np.zeros((len(indptr) - 1, w), dtype=dtype)
            for b in range(len(indptr) - 1):
                lo, hi = int(indptr[b]), int(indptr[b + 1])
                if hi > lo:
                    acc = table[indices[lo]].copy()
                    for p in range(lo + 1, hi):
                        acc = acc + table[indices[p]]
                    ref[b] = acc
            same_bits(best, ref)


@pytest.mark.parametrize("layout", ["sorted", "blocked"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_backward_paths_and_layouts_same_bits(rng, case, index_dtype, dtype, layout):
    mode = "mean" if case == "mean" else "sum"
    for w in WIDTHS:
        num_rows = 40
        indptr, indices = bags(rng, 30, num_rows, 8, index_dtype)
        assert len(indices) >= num_rows  # so that the blocked layout applies
        weights = special(rng, len(indices), dtype, inf=False) if case == "weighted" else None
        grad_out = special(rng, (30, w), dtype, inf=case != "weighted")

        def run():
            with gather_layout(layout):
                return sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                     num_rows=num_rows)

        generic, best = both_paths(run)
        same_bits(generic, best)
        with gather_layout("sorted" if layout == "blocked" else "blocked"):
            other = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                  num_rows=num_rows)
        same_bits(best, other)
        auto = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                             num_rows=num_rows)
        same_bits(best, auto)


@pytest.mark.parametrize("layout", ["sorted", "blocked"])
def test_layouts_thread_counts_and_zipf(rng, layout):
    """Thousands of rows and a few rows with thousands of terms, every thread count."""
    num_rows, num_bags, w = 3000, 2500, 37
    lengths = rng.integers(0, 30, size=num_bags)
    indptr = np.zeros(num_bags + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = ((rng.zipf(1.3, size=int(indptr[-1])) - 1) % num_rows).astype(np.int64)
    weights = special(rng, len(indices), np.float32, inf=False)
    grad_out = special(rng, (num_bags, w), np.float32, inf=False)
    outs = []
    for t in (1, 2, 0):
        with gather_layout(layout):
            outs.append(sparseopt.gather_sum_backward(grad_out, indptr, indices, weights,
                                                      num_rows=num_rows, num_threads=t))
    with simd_path("generic"), gather_layout(layout):
        outs.append(sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, num_rows=num_rows))
    for out in outs[1:]:
        same_bits(out, outs[0])


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n, num_rows, spread", [
    (300, 1 << 20, "uniform"),        # one thread's radix sort (from 256 words)
    (9000, 1 << 20, "uniform"),       # a thread per range of rows (from 8,192 on 2 threads)
    (9000, 1 << 30, "zipf"),          # the same, 30-bit rows
    (40000, 1 << 20, "one row"),      # ranges refused: the team of shares (from 32,768)
    (40000, 2_000_000_000, "uniform"),
])
def test_grouping_paths_same_bits(rng, index_dtype, n, num_rows, spread):
    """The grouping of lookups by row (CoalescePlan: its radix sort, packing and reading of the
    words; BMI2's shifts on the AVX2 path) gives the same plan on both paths, alone and with
    bags, for each of its ways (one thread, a thread per range of rows, a team of shares)."""
    if spread == "uniform":
        indices = rng.integers(0, num_rows, size=n)
    elif spread == "zipf":
        indices = np.minimum(rng.zipf(1.1, size=n) - 1, num_rows - 1) * 7 % num_rows
    else:
        indices = np.where(rng.random(n) < 0.9, num_rows // 3, rng.integers(0, num_rows, size=n))
    if np.dtype(index_dtype) == np.int32 and num_rows > np.iinfo(np.int32).max:
        pytest.skip("rows past int32")
    indices = indices.astype(index_dtype)
    values = special(rng, (n, 3), np.float32, inf=False)
    indptr = np.arange(0, n + 1, 5, dtype=index_dtype)
    indptr[-1] = n
    grad_out = special(rng, (len(indptr) - 1, 3), np.float32, inf=False)
    for t in (1, 2, 3):
        run = lambda: (sparseopt.coalesce(indices, values, num_rows, num_threads=t),  # noqa: E731
                       sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=num_rows,
                                                     num_threads=t))
        generic, best = both_paths(run)
        same_bits(generic, best)
        rows, _, counts = best[0]
        expected_rows, expected_counts = np.unique(indices, return_counts=True)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(counts, expected_counts)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("unified", [False, True])
@pytest.mark.parametrize("shape", [(50, 784, 500, 20), (7, 33, 70, 5), (16, 1, 40, 8), (3, 129, 9, 9)])
def test_meprop_paths_same_bits(rng, dtype, unified, shape):
    batch, n_in, n_out, k = shape
    x = special(rng, (batch, n_in), dtype, inf=False)
    weight = special(rng, (n_out, n_in), dtype, inf=False)
    grad_out = rng.standard_normal((batch, n_out)).astype(dtype)
    grad_out[::3, ::4] = -0.0
    results = []
    for layout in ("sorted", "blocked", "auto"):
        with gather_layout(layout):
            generic, best = both_paths(lambda: tuple(linear_backward(
                x, weight, grad_out, k, unified=unified, num_threads=1)))
        same_bits(generic, best)
        results.append(best)
    for r in results[1:]:
        same_bits(r, results[0])
    # the unmasked bias: 0, then each example added in order
    ref_bias = np.zeros(n_out, dtype=dtype)
    for b in range(batch):
        ref_bias = ref_bias + grad_out[b]
    same_bits(results[0][2], ref_bias)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("width", [1, 3, 4, 7, 8, 9, 17, 64, 100])
@pytest.mark.parametrize("opts", [dict(), dict(amsgrad=True), dict(weight_decay=1e-2, adamw=True)],
                         ids=["adam", "amsgrad", "adamw"])
def test_exact_adam_catch_up_paths_same_bits(rng, dtype, width, opts):
    """Exact Adam's catch-up (its first pass in vector lanes, the series, the per-step sum of
    elements near eps) gives the same bits on both paths, over rows that mix columns with
    normal, tiny (sqrt(v) near eps) and always-zero gradients."""
    opts = dict(opts)
    cls = sparseopt.optim.AdamW if opts.pop("adamw", False) else sparseopt.optim.Adam
    rows, steps = 40, 120
    init = rng.standard_normal((rows, width)).astype(dtype)
    column_scale = np.array([1.0, 1e-9, 0.0, 1e-6][:width] * width)[:width].astype(dtype)
    batches = [np.sort(rng.choice(rows, size=int(rng.integers(0, 8)), replace=True))
               for _ in range(steps)]
    grads = [rng.standard_normal((len(b), width)).astype(dtype) * column_scale for b in batches]

    def train():
        p = init.copy()
        opt = cls(p, lr=1e-2, mode="exact", num_threads=1, **opts)
        for b, g in zip(batches, grads):
            opt.step(b, g)
            if len(b) and b[0] % 5 == 0:
                opt.flush(b[:1])
        opt.flush()
        return p, {k: v for k, v in opt.state_dict()["state"].items()}

    generic, best = both_paths(train)
    same_bits(generic[0], best[0])
    assert generic[1].keys() == best[1].keys()
    for key in generic[1]:
        same_bits(generic[1][key], best[1][key])
    assert np.isfinite(best[0]).all()


LAZY_STEPS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=1e-2)),
    ("RowWiseAdagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1)),
]


@pytest.mark.parametrize("table_dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("width", [1, 7, 8, 17, 64, 100])
@pytest.mark.parametrize("name, opts", LAZY_STEPS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LAZY_STEPS)])
def test_optimizer_steps_paths_same_bits(rng, name, opts, width, table_dtype):
    """Every optimizer's row update runs on both compiled paths with the same bits: float
    tables and a bfloat16 table (widened rows, stochastic rounding), values with -0.0 and NaN
    in some rows (no inf: Adam's inf / inf makes a second NaN, and which of two NaNs an
    addition returns is the compiler's choice, see simd.hpp), repeated indices, and the fused
    step from bags."""
    if table_dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype, grad_dtype = ml_dtypes.bfloat16, np.float32
    else:
        dtype = grad_dtype = np.dtype(table_dtype)
    rows, steps = 60, 12
    init = rng.standard_normal((rows, width)).astype(dtype)
    batches = [rng.integers(0, rows, size=int(rng.integers(0, 30))) for _ in range(steps)]
    grads = [special(rng, (len(b), width), grad_dtype, inf=False) if k % 3 == 2
             else rng.standard_normal((len(b), width)).astype(grad_dtype)
             for k, b in enumerate(batches)]
    indptr, indices = bags(rng, 9, rows, 6, np.int64)
    grad_out = rng.standard_normal((9, width)).astype(grad_dtype)

    def train():
        p = sparseopt.zeros(init.shape, init.dtype)
        p[...] = init
        opt = getattr(sparseopt.optim, name)(p, num_threads=1, **opts)
        for b, g in zip(batches, grads):
            opt.step(b, g)
        if table_dtype != "bfloat16":  # step_bags takes float tables
            opt.step_bags(grad_out, indptr, indices)
        return p.copy(), {k: v for k, v in opt.state_dict()["state"].items()}

    generic, best = both_paths(train)
    same_bits(generic[0], best[0])
    assert generic[1].keys() == best[1].keys()
    for key in generic[1]:
        same_bits(generic[1][key], best[1][key])


@pytest.mark.parametrize("path", ["generic", "best"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 16, 17, 32, 33, 64, 1001])
def test_index_range_checks_on_both_paths(rng, path, index_dtype, n):
    """The vectorised range check of the indices (on AVX2 four vectors of compares and ORs, 16
    int64 or 32 int32 indices a round) finds a bad index at any position -- in a full round, in
    the scalar tail, negative or past the end -- names it, and writes nothing; good indices
    pass."""
    table = rng.standard_normal((50, 4)).astype(np.float32)
    indptr = np.array([0, n], dtype=index_dtype)
    with simd_path(path):
        for pos in sorted({0, n // 2, n - 1}):
            for bad in (-1, 50, np.iinfo(index_dtype).min, np.iinfo(index_dtype).max):
                indices = rng.integers(0, 50, n).astype(index_dtype)
                indices[pos] = bad
                out = np.full((1, 4), 7.0, np.float32)
                with pytest.raises(IndexError, match=rf"indices\[{pos}\] = {bad} is out of range"):
                    sparseopt.gather_sum(table, indptr, indices, out=out)
                assert np.all(out == 7.0)
                with pytest.raises(IndexError, match=rf"\[{pos}\] = {bad} is out of range"):
                    sparseopt.coalesce(indices, np.ones((n, 4), np.float32), num_rows=50)
        good = rng.integers(0, 50, n).astype(index_dtype)
        good[n - 1] = 49
        sums = sparseopt.gather_sum(table, indptr, good)
        np.testing.assert_allclose(sums[0], table[good].sum(axis=0), rtol=1e-5)


def test_index_range_for_every_signed_index_type(tmp_path):
    """The range check in C++ for the index types a C++ caller may use, not only the bindings'
    int32/int64: 1- and 2-byte types, int, long and long long (the vector rounds take the 4- and
    8-byte ones), both paths, lengths 0-70 (tests/cpp/index_range.cpp)."""
    source = Path(__file__).parent / "cpp" / "index_range.cpp"
    out = run_cpp(source, tmp_path / "index_range", sparseopt.get_include(), sparseopt.info()["openmp"])
    assert "index range ok" in out
