"""The binding's one check of a state array (python/src/arrays.hpp, require_state): float
tables and half tables take the same path and differ only in the dtype rule, for state of the
parameter's shape (Adagrad's sum, Adam's moments) and state kept once per row (row-wise
Adagrad's sum). A wrong dtype is a TypeError that names the array and the dtype to create it
with -- never a conversion, which would update a copy; a wrong shape is a ValueError that names
the shape wanted. Either way the parameter and every state array are left bit for bit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sparseopt import _core

NUM_ROWS, WIDTH = 4, 2


def _bf16():
    return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)


@pytest.fixture(params=["float32", "float64", "float16", "bfloat16"])
def dtype(request):
    return _bf16() if request.param == "bfloat16" else np.dtype(request.param)


def _is_half(dtype):
    return dtype.itemsize == 2


def _filled(shape, dtype, value):
    return np.full(shape, value, np.float32).astype(dtype)


def _grad(dtype):
    # half tables take float32 gradients
    values = np.ones((2, WIDTH), np.float32 if _is_half(dtype) else dtype)
    return np.array([0, 3], np.int64), values


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8).copy()


def _rejected(call, error, message, *arrays):
    before = [_bits(a) for a in arrays]
    with pytest.raises(error) as caught:
        call()
    assert re.search(message, str(caught.value)), str(caught.value)
    for a, b in zip(arrays, before):
        assert np.array_equal(_bits(a), b)
    return str(caught.value)


def _adagrad(param, state_sum):
    idx, vals = _grad(param.dtype)
    _core.adagrad_step(param, idx, vals, None, state_sum, _core.AdagradOptions(), 1, 1,
                       ("nearest", 0) if _is_half(param.dtype) else None)


def _rowwise(param, state_sum):
    idx, vals = _grad(param.dtype)
    _core.rowwise_adagrad_step(param, idx, vals, None, state_sum, _core.RowWiseAdagradOptions(), 1,
                               ("nearest", 0) if _is_half(param.dtype) else None)


def _adam(param, exp_avg, exp_avg_sq):
    idx, vals = _grad(param.dtype)
    _core.adam_step(param, idx, vals, None, exp_avg, exp_avg_sq, None, None, None, None, None, None,
                    _core.AdamOptions(), 1, 1, ("nearest", 0) if _is_half(param.dtype) else None)


def test_good_arrays_are_taken(dtype):
    """The checks accept what they should: each call below writes the touched rows."""
    param = _filled((NUM_ROWS, WIDTH), dtype, 1.0)
    for step, state in ((_adagrad, _filled((NUM_ROWS, WIDTH), dtype, 0.5)),
                        (_rowwise, _filled((NUM_ROWS,), dtype, 0.5))):
        before = _bits(param)
        step(param, state)
        assert not np.array_equal(_bits(param), before)
    m, v = _filled((NUM_ROWS, WIDTH), dtype, 0.0), _filled((NUM_ROWS, WIDTH), dtype, 0.0)
    _adam(param, m, v)
    assert m.astype(np.float32)[0].all() and not m.astype(np.float32)[1].any()


def test_wrong_shape_names_the_shape(dtype):
    param = _filled((NUM_ROWS, WIDTH), dtype, 1.0)
    narrow = _filled((NUM_ROWS, WIDTH + 1), dtype, 0.5)
    _rejected(lambda: _adagrad(param, narrow), ValueError,
              r"^sum must have the parameter's shape \(4, 2\), got \(4, 3\)$", param, narrow)
    per_element = _filled((NUM_ROWS, WIDTH), dtype, 0.5)
    _rejected(lambda: _rowwise(param, per_element), ValueError,
              r"^sum must have shape \(4,\), one value per row of param, got \(4, 2\)$", param, per_element)
    short = _filled((NUM_ROWS - 1,), dtype, 0.5)
    _rejected(lambda: _rowwise(param, short), ValueError,
              r"^sum must have shape \(4,\), one value per row of param, got \(3,\)$", param, short)
    m = _filled((NUM_ROWS, WIDTH), dtype, 0.25)
    _rejected(lambda: _adam(param, m, narrow), ValueError,
              r"^exp_avg_sq must have the parameter's shape \(4, 2\)", param, m, narrow)


@pytest.mark.parametrize("per_row", [False, True], ids=["per_element", "per_row"])
def test_float_table_wrong_dtype_names_the_dtype(per_row):
    for dtype, other in ((np.float32, np.float64), (np.float64, np.float32)):
        param = _filled((NUM_ROWS, WIDTH), np.dtype(dtype), 1.0)
        state = _filled((NUM_ROWS,) if per_row else (NUM_ROWS, WIDTH), np.dtype(other), 0.5)
        want, got = np.dtype(dtype).name, np.dtype(other).name
        message = _rejected(lambda: (_rowwise if per_row else _adagrad)(param, state), TypeError,
                            rf"^sum must have the dtype of param \({want}\), got {got}; sparseopt updates sum in "
                            rf"place, so create it with dtype {want} ", param, state)
        assert "astype" not in message  # a converted copy would be updated instead


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_table_state_must_share_the_state_dtype(half):
    """A half table's state dtype is its first state array's; a second of another dtype is
    refused with the dtype it must have."""
    dtype = _bf16() if half == "bfloat16" else np.dtype(half)
    param = _filled((NUM_ROWS, WIDTH), dtype, 1.0)
    for first, second in ((np.dtype(np.float32), dtype), (dtype, np.dtype(np.float32))):
        m = _filled((NUM_ROWS, WIDTH), first, 0.25)
        v = _filled((NUM_ROWS, WIDTH), second, 0.5)
        message = _rejected(
            lambda: _adam(param, m, v), TypeError,
            rf"^exp_avg_sq must have dtype {first.name} \(the state_dtype, the same for every state array of a "
            rf"{dtype.name} table\), got {second.name}; sparseopt updates exp_avg_sq in place, so create it with "
            rf"dtype {first.name} ", param, m, v)
        assert "astype" not in message
