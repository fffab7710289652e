"""sparseopt.coalesce(indices, values, num_rows=None, *, num_threads=0)
-> (unique_indices ascending, summed_values, counts int64).

Duplicates are summed in order of appearance, so the result is bit-identical
to a sequential left-to-right sum (coalesce_ref in _helpers.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseopt

from _helpers import FLOAT_DTYPES, INDEX_DTYPES, ROW_SHAPES, coalesce_ref

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731


def _check_exact(got, ref, index_dtype, value_dtype, row_shape):
    u, s, c = got
    ru, rs, rc = ref
    assert isinstance(u, np.ndarray) and isinstance(s, np.ndarray) and isinstance(c, np.ndarray)
    assert u.dtype == np.dtype(index_dtype), u.dtype
    assert s.dtype == np.dtype(value_dtype), s.dtype
    assert c.dtype == np.int64, c.dtype
    assert u.ndim == 1 and c.shape == u.shape
    assert s.shape == (len(u), *row_shape)
    assert np.array_equal(u, ru)
    assert np.array_equal(c, rc)
    assert np.array_equal(s, rs), np.max(np.abs(s.astype(np.float64) - rs))


def test_small_example():
    idx = np.array([5, 1, 5, 3, 1, 5], dtype=np.int64)
    vals = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    u, s, c = sparseopt.coalesce(idx, vals)
    assert np.array_equal(u, [1, 3, 5])
    assert np.array_equal(s, [7.0, 4.0, 10.0])
    assert np.array_equal(c, [2, 1, 3])
    assert u.dtype == np.int64 and s.dtype == np.float64 and c.dtype == np.int64


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("value_dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
def test_matches_sequential_reference(rng, index_dtype, value_dtype, row_shape):
    n, num_rows = 400, 60
    idx = rng.integers(0, num_rows, size=n).astype(index_dtype)
    vals = rng.standard_normal((n, *row_shape)).astype(value_dtype)
    idx0, vals0 = idx.copy(), vals.copy()
    got = sparseopt.coalesce(idx, vals)
    _check_exact(got, coalesce_ref(idx, vals), index_dtype, value_dtype, row_shape)
    # inputs untouched
    assert np.array_equal(idx, idx0) and np.array_equal(vals, vals0)
    # with num_rows, same answer
    got2 = sparseopt.coalesce(idx, vals, num_rows)
    _check_exact(got2, coalesce_ref(idx, vals), index_dtype, value_dtype, row_shape)
    got3 = sparseopt.coalesce(idx, vals, num_rows=num_rows, num_threads=1)
    _check_exact(got3, coalesce_ref(idx, vals), index_dtype, value_dtype, row_shape)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n", [3, 255, 256, 257, 600, 9000, 40000])
@pytest.mark.parametrize("case", ["ascending", "descent at the end", "repeat at the end",
                                  "descent in the middle"])
def test_ascending_and_nearly_ascending_indices(rng, index_dtype, n, case):
    """Strictly ascending indices (an already coalesced gradient) are their own plan; indices
    that rise but for one descent or one repeat -- in any block of the test, the last included
    -- are grouped like any others. Every thread count, against the reference."""
    idx = np.sort(rng.choice(10 * n, size=n, replace=False)).astype(index_dtype)
    if case == "descent at the end":
        idx[-1] = idx[-2] - 1 if idx[-2] > idx[-3] + 1 else idx[-3]
    elif case == "repeat at the end":
        idx[-1] = idx[-2]
    elif case == "descent in the middle":
        idx[n // 2], idx[n // 2 + 1] = idx[n // 2 + 1], idx[n // 2]
    vals = rng.standard_normal((n, 3)).astype(np.float32)
    ref = coalesce_ref(idx, vals)
    for t in (1, 2, 3):
        _check_exact(sparseopt.coalesce(idx, vals, 10 * n, num_threads=t), ref, index_dtype,
                     np.float32, (3,))
    if case == "ascending":
        assert len(ref[0]) == n  # the reference agrees these are distinct


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
def test_step_on_coalesced_rows_any_order(rng, index_dtype):
    """A step on a coalesced gradient (gather_sum_backward's output, rows ascending) leaves the
    same bits as on the same rows shuffled: each row is updated once either way."""
    from sparseopt.optim import Adam
    num_rows, n = 5000, 3000
    indptr = np.arange(0, n + 1, 10, dtype=index_dtype)
    indices = rng.integers(0, num_rows, n).astype(index_dtype)
    grad_out = rng.standard_normal((len(indptr) - 1, 8)).astype(np.float32)
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=num_rows)
    assert np.all(np.diff(rows) > 0)
    perm = rng.permutation(len(rows))
    table = rng.standard_normal((num_rows, 8)).astype(np.float32)
    ascending, shuffled = Adam(table.copy(), lr=0.01), Adam(table.copy(), lr=0.01)
    for _ in range(3):
        ascending.step(rows, values)
        shuffled.step(rows[perm], values[perm])
    assert ascending.param.tobytes() == shuffled.param.tobytes()
    fused = Adam(table.copy(), lr=0.01)
    for _ in range(3):
        fused.step_bags(grad_out, indptr, indices)
    assert fused.param.tobytes() == ascending.param.tobytes()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_sum_order_is_order_of_appearance(dtype):
    big = dtype(1e8) if dtype == np.float32 else dtype(1e17)
    # For row 2: ((big + 1) + -big) rounds to 0 in order of appearance; other orders give 1.
    idx = np.array([2, 0, 2, 2, 0], dtype=np.int64)
    vals = np.array([big, 1.0, 1.0, -big, 2.0], dtype=dtype)
    u, s, c = sparseopt.coalesce(idx, vals)
    assert np.array_equal(u, [0, 2])
    assert s[1] == (vals[0] + vals[2]) + vals[3]
    assert s[1] == 0.0
    assert s[0] == 3.0
    # reversed appearance: ((-big + 1) + big) also 0, while (big + -big) + 1 would be 1
    idx2 = np.array([2, 2, 2], dtype=np.int32)
    vals2 = np.array([-big, 1.0, big], dtype=dtype)
    u2, s2, _ = sparseopt.coalesce(idx2, vals2)
    assert s2[0] == (vals2[0] + vals2[1]) + vals2[2]


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
def test_empty_input(index_dtype, row_shape):
    idx = np.zeros((0,), dtype=index_dtype)
    vals = np.zeros((0, *row_shape), dtype=np.float32)
    for args in [(idx, vals), (idx, vals, 10)]:
        u, s, c = sparseopt.coalesce(*args)
        assert u.shape == (0,) and u.dtype == np.dtype(index_dtype)
        assert s.shape == (0, *row_shape) and s.dtype == np.float32
        assert c.shape == (0,) and c.dtype == np.int64


def test_no_duplicates_sorted():
    idx = np.array([9, 2, 7, 0], dtype=np.int32)
    vals = np.array([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5], [4.0, 4.5]], dtype=np.float32)
    u, s, c = sparseopt.coalesce(idx, vals)
    assert np.array_equal(u, [0, 2, 7, 9])
    assert np.array_equal(s, vals[[3, 1, 2, 0]])
    assert np.array_equal(c, [1, 1, 1, 1])


def test_all_same_index():
    idx = np.full(1000, 3, dtype=np.int64)
    vals = np.ones((1000, 2), dtype=np.float64)
    u, s, c = sparseopt.coalesce(idx, vals, 4)
    assert np.array_equal(u, [3])
    assert np.array_equal(s, [[1000.0, 1000.0]])
    assert np.array_equal(c, [1000])


def test_outputs_are_fresh_arrays(rng):
    idx = np.array([1, 0], dtype=np.int64)
    vals = np.array([1.0, 2.0])
    u, s, c = sparseopt.coalesce(idx, vals)
    s[...] = 0
    u[...] = 0
    assert np.array_equal(vals, [1.0, 2.0]) and np.array_equal(idx, [1, 0])


def test_large_index_values_int64():
    big = 2**40
    idx = np.array([big + 1, 3, big + 1, big], dtype=np.int64)
    vals = np.array([1.0, 2.0, 3.0, 4.0])
    u, s, c = sparseopt.coalesce(idx, vals)
    assert np.array_equal(u, [3, big, big + 1])
    assert np.array_equal(s, [2.0, 4.0, 4.0])
    assert np.array_equal(c, [1, 1, 2])


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
def test_index_bounds(index_dtype):
    vals = np.ones(3)
    ok = np.array([0, 4, 4], dtype=index_dtype)
    u, _, _ = sparseopt.coalesce(ok, vals, 5)
    assert np.array_equal(u, [0, 4])
    with pytest.raises(IndexError):
        sparseopt.coalesce(np.array([0, 5, 1], dtype=index_dtype), vals, 5)
    with pytest.raises(IndexError):
        sparseopt.coalesce(np.array([0, -1, 1], dtype=index_dtype), vals, 5)
    with pytest.raises(IndexError):
        sparseopt.coalesce(np.array([0, -1, 1], dtype=index_dtype), vals)
    with pytest.raises(IndexError):
        sparseopt.coalesce(np.array([0, 1, 2], dtype=index_dtype), vals, 0)


# --------------------------------------------------------------------------- #
# Hypothesis
# --------------------------------------------------------------------------- #
_MAGNITUDES = np.array([1.0, 1e-8, 1e8, 3.0, 1e16, 0.5])


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 80),
    num_rows=st.integers(1, 25),
    row_shape=st.sampled_from(ROW_SHAPES),
    value_dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    pass_num_rows=st.booleans(),
    num_threads=st.sampled_from([0, 1, 2]),
)
def test_hypothesis_matches_reference(
    seed, n, num_rows, row_shape, value_dtype, index_dtype, pass_num_rows, num_threads
):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num_rows, size=n).astype(index_dtype)
    # mixed magnitudes and signs make the summation order visible in the bits
    mags = rng.choice(_MAGNITUDES, size=(n, *row_shape))
    vals = (mags * rng.choice([-1.0, 1.0], size=mags.shape) * rng.random(mags.shape)).astype(
        value_dtype
    )
    if pass_num_rows:
        got = sparseopt.coalesce(idx, vals, num_rows, num_threads=num_threads)
    else:
        got = sparseopt.coalesce(idx, vals, num_threads=num_threads)
    _check_exact(got, coalesce_ref(idx, vals), index_dtype, value_dtype, row_shape)
