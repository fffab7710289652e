"""Rejected calls of sparseopt.sampled's loss kernels: the right exception, a message naming the
argument, and nothing changed (both tables bit for bit as before, for the fused SGD pass too).
"""

from __future__ import annotations

import numpy as np
import pytest

from sparseopt import sampled

N_A, N_B, WIDTH, N, K = 6, 7, 4, 5, 3

FUNCS = {
    "loss": lambda A, B, a, c, y, **kw: sampled.logistic_loss(A, B, a, c, y, **kw),
    "grad": lambda A, B, a, c, y, **kw: sampled.logistic_grad(A, B, a, c, y, **kw),
    "sgd": lambda A, B, a, c, y, **kw: sampled.logistic_sgd(A, B, a, c, y, lr=0.5, **kw),
}


@pytest.fixture(params=sorted(FUNCS))
def func(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def good(dtype, index_dtype=np.int64):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((N_A, WIDTH)).astype(dtype)
    B = rng.standard_normal((N_B, WIDTH)).astype(dtype)
    anchors = (np.arange(N) % N_A).astype(index_dtype)
    candidates = (np.arange(N * K).reshape(N, K) % N_B).astype(index_dtype)
    labels = np.full((N, K), 0.5, dtype)
    return A, B, anchors, candidates, labels


def expect_rejected(func, exc, match, A, B, anchors, candidates, labels, **kw):
    tables = [t for t in (A, B) if isinstance(t, np.ndarray)]
    before = [t.copy() for t in tables]
    with pytest.raises(exc, match=match):
        FUNCS[func](A, B, anchors, candidates, labels, **kw)
    for t, t0 in zip(tables, before):
        assert np.array_equal(t, t0, equal_nan=True), "a table changed"


def test_good_call_works(func, dtype):
    FUNCS[func](*good(dtype))


# --------------------------------------------------------------------------------------------
# TypeError: what to pass
# --------------------------------------------------------------------------------------------
TYPE_CASES = {
    "anchor_table_list": lambda A, B, a, c, y: (A.tolist(), B, a, c, y, "anchor_table"),
    "anchor_table_int": lambda A, B, a, c, y: (A.astype(np.int64), B, a, c, y, "anchor_table"),
    "anchor_table_float16": lambda A, B, a, c, y: (A.astype(np.float16), B, a, c, y,
                                                   "anchor_table"),
    "anchor_table_fortran": lambda A, B, a, c, y: (np.asfortranarray(A), B, a, c, y,
                                                   "anchor_table"),
    "candidate_table_other_dtype": lambda A, B, a, c, y: (
        A, B.astype(np.float32 if B.dtype == np.float64 else np.float64), a, c, y,
        "candidate_table"),
    "candidate_table_strided": lambda A, B, a, c, y: (A, np.repeat(B, 2, axis=0)[::2], a, c, y,
                                                      "candidate_table"),
    "anchors_float": lambda A, B, a, c, y: (A, B, a.astype(np.float64), c, y, "anchors"),
    "anchors_uint": lambda A, B, a, c, y: (A, B, a.astype(np.uint64), c, y, "anchors"),
    "anchors_list": lambda A, B, a, c, y: (A, B, a.tolist(), c, y, "anchors"),
    "anchors_strided": lambda A, B, a, c, y: (A, B, np.repeat(a, 2)[::2], c, y, "anchors"),
    "candidates_other_index_dtype": lambda A, B, a, c, y: (A, B, a, c.astype(np.int32), y,
                                                           "candidates"),
    "candidates_float": lambda A, B, a, c, y: (A, B, a, c.astype(np.float64), y, "candidates"),
    "candidates_fortran": lambda A, B, a, c, y: (A, B, a, np.asfortranarray(c), y, "candidates"),
    "labels_other_dtype": lambda A, B, a, c, y: (
        A, B, a, c, y.astype(np.float32 if y.dtype == np.float64 else np.float64), "labels"),
    "labels_list": lambda A, B, a, c, y: (A, B, a, c, y.tolist(), "labels"),
}


@pytest.mark.parametrize("case", sorted(TYPE_CASES))
def test_type_errors(func, dtype, case):
    A, B, a, c, y = good(dtype)
    A2, B2, a2, c2, y2, name = TYPE_CASES[case](A, B, a, c, y)
    expect_rejected(func, TypeError, name, A2, B2, a2, c2, y2)
    if A2 is not A:  # the original tables were not touched either
        assert np.array_equal(A, good(dtype)[0])


def test_sgd_read_only_table(dtype):
    A, B, a, c, y = good(dtype)
    B.flags.writeable = False
    expect_rejected("sgd", TypeError, "candidate_table is read-only", A, B, a, c, y)
    # reading is fine
    sampled.logistic_loss(A, B, a, c, y)
    sampled.logistic_grad(A, B, a, c, y)


# --------------------------------------------------------------------------------------------
# ValueError: shapes and values
# --------------------------------------------------------------------------------------------
VALUE_CASES = {
    "anchor_table_0d": lambda A, B, a, c, y: (np.array(1.0, A.dtype), B, a, c, y,
                                              "at least one dimension"),
    "row_shapes_differ": lambda A, B, a, c, y: (A, np.ones((N_B, WIDTH + 1), B.dtype), a, c, y,
                                                "row shape"),
    "row_ndim_differs": lambda A, B, a, c, y: (A, np.ones((N_B, 2, 2), B.dtype), a, c, y,
                                               "row shape"),
    "anchors_2d": lambda A, B, a, c, y: (A, B, a.reshape(1, -1), c, y, "anchors must be 1-D"),
    "candidates_1d": lambda A, B, a, c, y: (A, B, a, c[:, 0].copy(), y, r"reshape\(-1, 1\)"),
    "candidates_rows": lambda A, B, a, c, y: (A, B, a, c[:-1], y, "candidates must have shape"),
    "candidates_3d": lambda A, B, a, c, y: (A, B, a, c[..., None], y, "candidates must have"),
    "labels_shape": lambda A, B, a, c, y: (A, B, a, c, y[:, :-1].copy(), "labels must have"),
    "labels_nan": lambda A, B, a, c, y: (A, B, a, c, _put(y, -1, np.nan), r"labels\[4, 2\]"),
    "labels_above_one": lambda A, B, a, c, y: (A, B, a, c, _put(y, -1, 1.5), r"labels\[4, 2\]"),
    "labels_negative": lambda A, B, a, c, y: (A, B, a, c, _put(y, 0, -0.1), r"labels\[0, 0\]"),
    "tables_overlap": lambda A, B, a, c, y: _overlapping(A, a, c, y),
}


def _put(arr, flat_index, value):
    arr = arr.copy()
    arr.flat[flat_index] = value
    return arr


def _overlapping(A, a, c, y):
    big = np.ones((N_B + 2, WIDTH), A.dtype)
    return big[:N_B], big[2:], a, c, y, "must not share memory"


@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_value_errors(func, dtype, case):
    A, B, a, c, y = good(dtype)
    A2, B2, a2, c2, y2, match = VALUE_CASES[case](A, B, a, c, y)
    expect_rejected(func, ValueError, match, A2, B2, a2, c2, y2)


@pytest.mark.parametrize("lr", [-0.1, np.nan, np.inf], ids=["negative", "nan", "inf"])
def test_sgd_bad_lr(dtype, lr):
    A, B, a, c, y = good(dtype)
    before = A.copy(), B.copy()
    with pytest.raises(ValueError, match="lr"):
        sampled.logistic_sgd(A, B, a, c, y, lr=lr)
    with pytest.raises(ValueError, match="lr"):
        sampled.logistic_sgd(A, B, a, c, y, lr="0.1")
    assert np.array_equal(A, before[0]) and np.array_equal(B, before[1])


def test_bad_num_threads(dtype):
    A, B, a, c, y = good(dtype)
    for f in ("loss", "grad"):
        with pytest.raises(ValueError, match="num_threads"):
            FUNCS[f](A, B, a, c, y, num_threads=-1)
        with pytest.raises(TypeError, match="num_threads"):
            FUNCS[f](A, B, a, c, y, num_threads=1.5)


def test_sgd_table_sharing_memory_with_the_batch():
    """A table that is (a view of) the labels array would be written while being read."""
    buf = np.full(N_A * WIDTH + N * K, 0.5, np.float64)
    A = buf[: N_A * WIDTH].reshape(N_A, WIDTH)
    y = buf[N_A * WIDTH:].reshape(N, K)  # after A: fine
    _, B, a, c, _ = good(np.float64)
    sampled.logistic_sgd(A, B, a, c, y, lr=0.1)
    y_overlap = buf[: N * K].reshape(N, K)  # inside A
    expect_rejected("sgd", ValueError, "labels", A, B, a, c, y_overlap)


# --------------------------------------------------------------------------------------------
# IndexError: rows out of range (the bad one last, so a kernel that wrote before checking
# would have changed the tables)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("where, value, match", [
    ("anchor_last", N_A, r"anchors\[4\] = 6 .*anchor_table of 6 rows"),
    ("anchor_first", -1, r"anchors\[0\] = -1"),
    ("candidate_last", N_B, r"candidates\[4, 2\] = 7 .*candidate_table of 7 rows"),
    ("candidate_middle", -5, r"candidates\[2, 1\] = -5"),
])
def test_index_errors(func, dtype, index_dtype, where, value, match):
    A, B, a, c, y = good(dtype, index_dtype)
    if where == "anchor_last":
        a[-1] = value
    elif where == "anchor_first":
        a[0] = value
    elif where == "candidate_last":
        c[-1, -1] = value
    else:
        c[2, 1] = value
    expect_rejected(func, IndexError, match, A, B, a, c, y)
