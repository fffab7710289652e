"""Rejected calls of gather_sum, gather_sum_backward, csr_matmul and csr_matmul_backward:
the right exception, a message naming the argument, and *nothing changed* -- ``out`` and
every input bit for bit as before.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt

NUM_ROWS = 10


def _good(dtype=np.float32, index_dtype=np.int64, row_shape=(3,)):
    table = np.arange(NUM_ROWS * int(np.prod(row_shape)), dtype=dtype).reshape(NUM_ROWS, *row_shape)
    indptr = np.array([0, 2, 2, 5], dtype=index_dtype)
    indices = np.array([1, 9, 1, 0, 4], dtype=index_dtype)
    weights = np.linspace(-1, 1, 5).astype(dtype)
    grad_out = np.ones((3, *row_shape), dtype=dtype)
    return dict(table=table, indptr=indptr, indices=indices, weights=weights, grad_out=grad_out)


def _expect_rejected(exc, match, call, *arrays):
    """call() raises exc(match) and leaves every array in `arrays` as it was."""
    before = [np.array(a, copy=True) for a in arrays]
    with pytest.raises(exc, match=match):
        call()
    for a, b in zip(arrays, before):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=True), "an array changed"


def _sentinel_out(dtype=np.float32, shape=(3, 3)):
    return np.full(shape, np.nan, dtype=dtype)


# --------------------------------------------------------------------------- #
# gather_sum: every rule, with out= given (it must stay NaN)
# --------------------------------------------------------------------------- #
def _forward_cases():
    g = _good()
    t, ip, ix, w = g["table"], g["indptr"], g["indices"], g["weights"]
    return {
        # table
        "table_list": (TypeError, "table", (t.tolist(), ip, ix), {}),
        "table_int": (TypeError, "table", (t.astype(np.int64), ip, ix), {}),
        # a float16 table is valid (summed in float32: tests/test_half.py); not a Fortran one
        "table_float16_fortran": (TypeError, "table", (np.asfortranarray(t.astype(np.float16)), ip, ix), {}),
        "table_fortran": (TypeError, "table", (np.asfortranarray(t), ip, ix), {}),
        "table_0d": (ValueError, "table", (np.array(1.0, np.float32), ip, ix), {}),
        # indptr
        "indptr_list": (TypeError, "indptr", (t, [0, 2, 2, 5], ix), {}),
        "indptr_float": (TypeError, "indptr", (t, ip.astype(np.float64), ix), {}),
        "indptr_uint64": (TypeError, "indptr", (t, ip.astype(np.uint64), ix), {}),
        "indptr_strided": (TypeError, "indptr", (t, np.repeat(ip, 2)[::2], ix), {}),
        "indptr_2d": (ValueError, "indptr", (t, ip.reshape(1, -1), ix), {}),
        "indptr_empty": (ValueError, "indptr", (t, ip[:0], ix), {}),
        "indptr_first_not_0": (ValueError, r"indptr\[0\] must be 0", (t, ip + 1, ix), {}),
        "indptr_decreasing": (ValueError, r"non-decreasing.*indptr\[1\] = 3 > indptr\[2\] = 2",
                              (t, np.array([0, 3, 2, 5]), ix), {}),
        "indptr_last_too_small": (ValueError, r"indptr\[-1\] = 4 must equal len\(indices\) = 5",
                                  (t, np.array([0, 2, 2, 4]), ix), {}),
        "indptr_last_too_big": (ValueError, r"len\(indices\)", (t, np.array([0, 2, 2, 6]), ix), {}),
        # indices
        "indices_list": (TypeError, "indices", (t, ip, ix.tolist()), {}),
        "indices_float": (TypeError, "indices", (t, ip, ix.astype(np.float32)), {}),
        "indices_other_int": (TypeError, "indices must have the dtype of indptr",
                              (t, ip, ix.astype(np.int32)), {}),
        "indices_2d": (ValueError, "indices", (t, ip, ix.reshape(5, 1)), {}),
        "indices_too_big": (IndexError, r"indices\[3\] = 10 is out of range",
                            (t, ip, np.array([1, 9, 1, 10, 4])), {}),
        "indices_negative": (IndexError, r"indices\[0\] = -1", (t, ip, np.array([-1, 9, 1, 0, 4])), {}),
        # weights
        "weights_list": (TypeError, "weights", (t, ip, ix, w.tolist()), {}),
        "weights_other_float": (TypeError, r"weights must have the dtype of table.*astype",
                                (t, ip, ix, w.astype(np.float64)), {}),
        "weights_short": (ValueError, "weights", (t, ip, ix, w[:4]), {}),
        "weights_2d": (ValueError, "weights", (t, ip, ix, w.reshape(5, 1)), {}),
        "weights_strided": (TypeError, "weights", (t, ip, ix, np.repeat(w, 2)[::2]), {}),
        "weights_with_mean": (ValueError, "mode=\"sum\"", (t, ip, ix, w), {"mode": "mean"}),
        # options
        "mode_bad": (ValueError, "mode", (t, ip, ix), {"mode": "max"}),
        "num_threads_negative": (ValueError, "num_threads", (t, ip, ix), {"num_threads": -1}),
        "num_threads_float": (TypeError, "num_threads", (t, ip, ix), {"num_threads": 1.5}),
    }


@pytest.mark.parametrize("case", sorted(_forward_cases()))
def test_gather_sum_rejects(case):
    exc, match, args, kw = _forward_cases()[case]
    out = _sentinel_out()
    arrays = [a for a in args if isinstance(a, np.ndarray)] + [out]
    _expect_rejected(exc, match, lambda: sparseopt.gather_sum(*args, out=out, **kw), *arrays)
    # the same without out=
    _expect_rejected(exc, match, lambda: sparseopt.gather_sum(*args, **kw),
                     *[a for a in args if isinstance(a, np.ndarray)])


def _out_cases():
    return {
        "out_list": (TypeError, "out", lambda t: [[0.0] * 3] * 3),
        "out_other_float": (TypeError, "out must have the dtype of table",
                            lambda t: np.full((3, 3), np.nan, np.float64)),
        "out_int": (TypeError, "out", lambda t: np.zeros((3, 3), np.int32)),
        "out_more_rows": (ValueError, r"out must have shape \(3, 3\)", lambda t: _sentinel_out(shape=(4, 3))),
        "out_fewer_rows": (ValueError, "out must have shape", lambda t: _sentinel_out(shape=(2, 3))),
        "out_wrong_row_shape": (ValueError, "out must have shape", lambda t: _sentinel_out(shape=(3, 1, 3))),
        "out_flat": (ValueError, "out must have shape", lambda t: _sentinel_out(shape=(9,))),
        "out_fortran": (TypeError, "C-contiguous", lambda t: np.asfortranarray(_sentinel_out())),
        "out_strided": (TypeError, "out", lambda t: _sentinel_out(shape=(6, 3))[::2]),
        "out_read_only": (TypeError, "read-only", lambda t: _read_only(_sentinel_out())),
        "out_is_table_rows": (ValueError, "must not share memory", lambda t: t[:3]),
    }


def _read_only(a):
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("case", sorted(_out_cases()))
def test_gather_sum_rejects_out(case):
    g = _good()
    exc, match, make = _out_cases()[case]
    out = make(g["table"])
    arrays = [g["table"], g["indptr"], g["indices"]] + ([out] if isinstance(out, np.ndarray) else [])
    _expect_rejected(exc, match,
                     lambda: sparseopt.gather_sum(g["table"], g["indptr"], g["indices"], out=out),
                     *arrays)


def test_out_overlapping_weights_rejected():
    g = _good(row_shape=())
    buffer = np.full(8, np.nan, np.float32)
    weights, out = buffer[:5], buffer[2:5]  # out (3 bags) inside the weights
    weights[:] = 1.0
    _expect_rejected(ValueError, "must not share memory",
                     lambda: sparseopt.gather_sum(g["table"], g["indptr"], g["indices"], weights, out=out),
                     buffer)


# --------------------------------------------------------------------------- #
# gather_sum_backward
# --------------------------------------------------------------------------- #
def _backward_cases():
    g = _good()
    go, ip, ix, w = g["grad_out"], g["indptr"], g["indices"], g["weights"]
    return {
        "grad_out_list": (TypeError, "grad_out", (go.tolist(), ip, ix), {}),
        "grad_out_int": (TypeError, "grad_out", (go.astype(np.int32), ip, ix), {}),
        "grad_out_strided": (TypeError, "grad_out", (np.repeat(go, 2, axis=0)[::2], ip, ix), {}),
        "grad_out_0d": (ValueError, "grad_out", (np.array(1.0, np.float32), ip, ix), {}),
        "grad_out_rows": (ValueError, r"grad_out must have one row per bag", (go[:2], ip, ix), {}),
        "indptr_decreasing": (ValueError, "non-decreasing", (go, np.array([0, 3, 2, 5]), ix), {}),
        "indptr_first": (ValueError, r"indptr\[0\]", (go, np.array([1, 2, 2, 5]), ix), {}),
        "indptr_last": (ValueError, r"indptr\[-1\]", (go, np.array([0, 2, 2, 3]), ix), {}),
        "indices_dtype": (TypeError, "indices", (go, ip, ix.astype(np.int32)), {}),
        "index_too_big": (IndexError, r"indices\[1\] = 10 is out of range for a table of 10 rows",
                          (go, ip, np.array([1, 10, 1, 0, 4])), {}),
        "index_vs_num_rows": (IndexError, r"indices\[1\] = 9", (go, ip, ix), {"num_rows": 9}),
        "index_negative": (IndexError, r"indices\[4\] = -3", (go, ip, np.array([1, 9, 1, 0, -3])), {}),
        "weights_dtype": (TypeError, r"weights must have the dtype of grad_out.*astype\(grad_out.dtype\)",
                          (go, ip, ix, w.astype(np.float64)), {}),
        "weights_shape": (ValueError, "weights", (go, ip, ix, w[:3]), {}),
        "weights_with_mean": (ValueError, "mode=\"sum\"", (go, ip, ix, w), {"mode": "mean"}),
        "mode_bad": (ValueError, "mode", (go, ip, ix), {"mode": "Sum"}),
        "num_rows_negative": (ValueError, "num_rows", (go, ip, ix), {"num_rows": -1}),
        "num_rows_float": (TypeError, "num_rows", (go, ip, ix), {"num_rows": 10.0}),
        "num_threads_negative": (ValueError, "num_threads", (go, ip, ix), {"num_threads": -2}),
    }


@pytest.mark.parametrize("case", sorted(_backward_cases()))
def test_gather_sum_backward_rejects(case):
    exc, match, args, kw = _backward_cases()[case]
    kw = {"num_rows": NUM_ROWS, **kw}
    _expect_rejected(exc, match, lambda: sparseopt.gather_sum_backward(*args, **kw),
                     *[a for a in args if isinstance(a, np.ndarray)])


def test_gather_sum_backward_needs_num_rows():
    g = _good()
    with pytest.raises(TypeError, match="num_rows"):
        sparseopt.gather_sum_backward(g["grad_out"], g["indptr"], g["indices"])


# --------------------------------------------------------------------------- #
# CSR
# --------------------------------------------------------------------------- #
@pytest.fixture
def sp():
    return pytest.importorskip("scipy.sparse")


def _csr(sp, dtype=np.float32, index_dtype=np.int64):
    g = _good(dtype, index_dtype)
    x = sp.csr_array((g["weights"], g["indices"], g["indptr"]), shape=(3, NUM_ROWS))
    x.indices, x.indptr = g["indices"], g["indptr"]
    return x, g


def test_csr_rejects_other_formats(sp):
    x, g = _csr(sp)
    for bad, what in [(x.tocsc(), "'csc'"), (x.tocoo(), "'coo'"), (x.todense(), "ndarray"),
                      (sp.bsr_array(x), "'bsr'"), ([[1.0]], "list")]:
        out = _sentinel_out()
        _expect_rejected(TypeError, f"x must be a SciPy CSR matrix.*{what}",
                         lambda: sparseopt.csr_matmul(bad, g["table"], out=out), out, g["table"])
        _expect_rejected(TypeError, "x must be a SciPy CSR",
                         lambda: sparseopt.csr_matmul_backward(bad, g["grad_out"]), g["grad_out"])


def test_csr_data_dtype_says_what_to_pass(sp):
    x, g = _csr(sp, dtype=np.float64)
    out = _sentinel_out()
    _expect_rejected(TypeError, r"x.data must have the dtype of table \(float32\), got float64; "
                                r"pass x.astype\(table.dtype\)",
                     lambda: sparseopt.csr_matmul(x, g["table"].astype(np.float32), out=out), out)
    _expect_rejected(TypeError, r"x.data must have the dtype of grad_out.*x.astype\(grad_out.dtype\)",
                     lambda: sparseopt.csr_matmul_backward(x, np.ones((3, 3), np.float32)))


def test_csr_shapes(sp):
    x, g = _csr(sp)
    out = _sentinel_out()
    _expect_rejected(ValueError, r"x.shape\[1\] = 10 must equal table.shape\[0\] = 9",
                     lambda: sparseopt.csr_matmul(x, g["table"][:9], out=out), out)
    _expect_rejected(ValueError, "grad_out must have one row per bag.*x.shape\\[0\\]",
                     lambda: sparseopt.csr_matmul_backward(x, g["grad_out"][:2]))
    _expect_rejected(ValueError, "out must have shape",
                     lambda: sparseopt.csr_matmul(x, g["table"], out=_sentinel_out(shape=(4, 3))))


def test_csr_tampered_structure_is_named(sp):
    """Attributes set by hand are checked like any input, with x.* in the message."""
    x, g = _csr(sp)
    table, out = g["table"], _sentinel_out()
    x.indptr = np.array([0, 3, 2, 5])
    _expect_rejected(ValueError, r"x.indptr must be non-decreasing",
                     lambda: sparseopt.csr_matmul(x, table, out=out), out)
    _expect_rejected(ValueError, r"x.indptr must be non-decreasing",
                     lambda: sparseopt.csr_matmul_backward(x, g["grad_out"]))
    x.indptr = np.array([0, 2, 2, 4])
    _expect_rejected(ValueError, r"x.indptr\[-1\] = 4 must equal len\(x.indices\) = 5",
                     lambda: sparseopt.csr_matmul(x, table, out=out), out)
    x.indptr = np.array([0, 2, 5])
    _expect_rejected(ValueError, r"x.indptr must have x.shape\[0\] \+ 1 = 4 entries, got 3",
                     lambda: sparseopt.csr_matmul(x, table, out=out), out)
    x.indptr = g["indptr"].astype(np.int32)
    _expect_rejected(TypeError, r"x.indices must have the dtype of x.indptr \(int32\)",
                     lambda: sparseopt.csr_matmul(x, table, out=out), out)
    x.indptr = g["indptr"]
    x.indices = np.array([1, 9, 1, 12, 4])
    _expect_rejected(IndexError, r"x.indices\[3\] = 12 is out of range",
                     lambda: sparseopt.csr_matmul(x, table, out=out), out)
    _expect_rejected(IndexError, r"x.indices\[3\] = 12",
                     lambda: sparseopt.csr_matmul_backward(x, g["grad_out"]))
