"""sparseopt.zeros: np.zeros with the data on a cache-line (large: 2 MiB) boundary."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import sparseopt
from sparseopt import optim


@pytest.mark.parametrize("shape", [0, 7, (3,), (5, 4), (1000, 3, 2), (600_000,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_matches_np_zeros_and_is_aligned(shape, dtype):
    a = sparseopt.zeros(shape, dtype)
    expected = np.zeros(shape, dtype)
    assert a.shape == expected.shape and a.dtype == expected.dtype
    assert a.flags["C_CONTIGUOUS"] and a.flags["WRITEABLE"]
    assert np.array_equal(a, expected)
    boundary = 2 << 20 if a.nbytes >= 2 << 20 else 64
    assert a.nbytes == 0 or a.ctypes.data % boundary == 0


def test_default_dtype_is_float32():
    assert sparseopt.zeros((2, 3)).dtype == np.float32


def test_optimizers_update_it_in_place_and_it_outlives_its_buffer():
    table = sparseopt.zeros((100, 8))
    opt = optim.SGD(table, lr=0.5)
    assert opt.param is table
    gc.collect()
    opt.step(np.array([3, 3]), np.ones((2, 8), np.float32))
    assert np.all(table[3] == -1.0) and np.count_nonzero(table) == 8


@pytest.mark.parametrize("shape, error", [((2, -1), ValueError), ((2.5, 3), TypeError),
                                          ("10", TypeError), (None, TypeError)])
def test_bad_shapes_are_named(shape, error):
    with pytest.raises(error, match="shape"):
        sparseopt.zeros(shape)


def _optimizers(table):
    yield optim.Adam(table, lr=1e-3)
    yield optim.Adam(table, lr=1e-3, mode="exact")
    yield optim.Adagrad(table, lr=0.1, initial_accumulator_value=0.25)
    yield optim.RowWiseAdagrad(table, lr=0.1)
    yield optim.SGD(table, lr=0.1, momentum=0.9)
    yield optim.RMSprop(table, lr=0.1, momentum=0.5, centered=True)
    yield optim.FTRL(table, lr=0.1)


@pytest.mark.parametrize("rows", [1000, 40_000])  # below and above 2 MiB of state
def test_optimizer_state_starts_on_a_cache_line_with_its_fill(rows):
    # The state the optimizers allocate is read and written row by row, as the table is: it
    # starts where sparseopt.zeros would put it (np.full's arrays start 16 bytes past a line),
    # and holds what np.full would.
    table = np.ones((rows, 16), np.float32)  # the table's own offset does not matter
    for opt in _optimizers(table):
        for name, array in opt.state.items():
            if array.shape[:1] == (rows,):  # per element or per row (not exact mode's record)
                boundary = 2 << 20 if array.nbytes >= 2 << 20 else 64
                assert array.ctypes.data % boundary == 0, (type(opt).__name__, name)
                assert array.flags["C_CONTIGUOUS"] and array.flags["WRITEABLE"]
        if isinstance(opt, optim.Adagrad):
            assert np.all(opt.state["sum"] == np.float32(0.25))
