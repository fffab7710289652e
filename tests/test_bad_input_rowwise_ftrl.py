"""Rejected calls of RowWiseAdagrad and FTRL, as tests/test_bad_input.py checks the other
optimizers: the right exception type, a message naming the argument, and *nothing changed*
(param and every state array bit for bit, step counter and hyper-parameters as before).
Hyper-parameter rules specific to each optimizer are in test_rowwise_adagrad.py and
test_ftrl.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparseopt.optim import FTRL, RowWiseAdagrad

from _helpers import assert_unchanged, make_steps, snapshot

OPTIMIZERS = {
    "rowwise_adagrad": lambda p, **kw: RowWiseAdagrad(p, lr=0.1, **kw),
    "ftrl": lambda p, **kw: FTRL(p, lr=0.1, l1=0.01, l2=0.01, **kw),
    "ftrl_pow": lambda p, **kw: FTRL(p, lr=0.1, lr_power=-1.0, initial_accumulator_value=0.5, **kw),
}

NUM_ROWS = 12


@pytest.fixture(params=sorted(OPTIMIZERS))
def opt_name(request):
    return request.param


@pytest.fixture(params=[(), (3,), (2, 3)], ids=["1d", "2d", "3d"])
def row_shape(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def primed(rng, opt_name, row_shape, dtype):
    """An optimizer that has taken a few valid steps (non-trivial state)."""
    param = np.ascontiguousarray(rng.standard_normal((NUM_ROWS, *row_shape)).astype(dtype))
    opt = OPTIMIZERS[opt_name](param)
    for idx, vals in make_steps(rng, NUM_ROWS, 3, row_shape, dtype, np.int64):
        opt.step(idx, vals)
    return opt, param, row_shape, dtype


def _expect_rejected(opt, param, exc, match, call):
    snap = snapshot(opt, param)
    lr0 = opt.lr
    with pytest.raises(exc, match=match):
        call()
    assert_unchanged(opt, param, snap)
    assert opt.lr == lr0


def _other_float(dtype):
    return np.float64 if dtype == np.float32 else np.float32


# --------------------------------------------------------------------------- #
# step(): TypeError naming the argument
# --------------------------------------------------------------------------- #
STEP_TYPE_ERRORS = {
    "indices_list": (lambda rs, dt: ([0, 1, 2], np.ones((3, *rs), dt)), "indices"),
    "indices_float64": (lambda rs, dt: (np.array([0.0, 1.0, 2.0]), np.ones((3, *rs), dt)), "indices"),
    "indices_uint64": (lambda rs, dt: (np.array([0, 1, 2], np.uint64), np.ones((3, *rs), dt)), "indices"),
    "indices_int16": (lambda rs, dt: (np.array([0, 1, 2], np.int16), np.ones((3, *rs), dt)), "indices"),
    "indices_strided": (lambda rs, dt: (np.arange(6, dtype=np.int64)[::2], np.ones((3, *rs), dt)), "indices"),
    "values_list": (lambda rs, dt: (np.arange(3), np.ones((3, *rs)).tolist()), "values"),
    "values_other_float": (lambda rs, dt: (np.arange(3), np.ones((3, *rs), _other_float(dt))), "values"),
    "values_float16": (lambda rs, dt: (np.arange(3), np.ones((3, *rs), np.float16)), "values"),
    "values_int64": (lambda rs, dt: (np.arange(3), np.ones((3, *rs), np.int64)), "values"),
    "values_strided": (lambda rs, dt: (np.arange(3), np.ones((6, *rs), dt)[::2]), "values"),
}


@pytest.mark.parametrize("case", sorted(STEP_TYPE_ERRORS))
def test_step_type_errors(primed, case):
    opt, param, rs, dt = primed
    make, name = STEP_TYPE_ERRORS[case]
    idx, vals = make(rs, dt)
    _expect_rejected(opt, param, TypeError, name, lambda: opt.step(idx, vals))


def test_step_values_fortran_order(rng, opt_name):
    param = rng.standard_normal((NUM_ROWS, 4))
    opt = OPTIMIZERS[opt_name](param)
    opt.step(np.array([1, 2, 1], np.int64), np.ones((3, 4)))
    vals = np.ones((4, 3)).T
    _expect_rejected(opt, param, TypeError, "values",
                     lambda: opt.step(np.array([0, 5, 7], np.int64), vals))


# --------------------------------------------------------------------------- #
# step(): ValueError (shapes)
# --------------------------------------------------------------------------- #
def _shape_cases(rs, dt):
    return {
        "values_more_rows": (np.arange(3, dtype=np.int64), np.ones((4, *rs), dt)),
        "values_fewer_rows": (np.arange(3, dtype=np.int64), np.ones((2, *rs), dt)),
        "indices_2d": (np.arange(3, dtype=np.int64).reshape(1, 3), np.ones((3, *rs), dt)),
        "indices_0d": (np.array(1, dtype=np.int64), np.ones((1, *rs), dt)),
        "values_extra_dim": (np.arange(3, dtype=np.int64), np.ones((3, *rs, 2), dt)),
        "values_wrong_row_width": (np.arange(3, dtype=np.int64), np.ones((3, 5), dt)),
        "empty_indices_values_wrong_rows": (np.zeros(0, np.int64), np.ones((1, *rs), dt)),
    }


@pytest.mark.parametrize("case", sorted(_shape_cases((), np.float64)))
def test_step_shape_mismatch(primed, case):
    opt, param, rs, dt = primed
    idx, vals = _shape_cases(rs, dt)[case]
    _expect_rejected(opt, param, ValueError, None, lambda: opt.step(idx, vals))


def test_values_sharing_memory_with_param(rng, opt_name):
    param = rng.standard_normal((NUM_ROWS, 2))
    opt = OPTIMIZERS[opt_name](param)
    _expect_rejected(opt, param, ValueError, "share memory",
                     lambda: opt.step(np.array([0, 1], np.int64), param[2:4]))


# --------------------------------------------------------------------------- #
# step(): IndexError
# --------------------------------------------------------------------------- #
INDEX_CASES = {
    "equal_num_rows": [NUM_ROWS],
    "far_too_big": [10**6],
    "negative": [-1],
    "mixed_bad_last": [0, 5, 5, 11, NUM_ROWS],
    "mixed_negative_middle": [1, 2, -2, 3, 4],
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_step_index_out_of_range(primed, case, index_dtype):
    opt, param, rs, dt = primed
    idx = np.array(INDEX_CASES[case], dtype=index_dtype)
    vals = np.full((len(idx), *rs), 0.5, dtype=dt)
    _expect_rejected(opt, param, IndexError, None, lambda: opt.step(idx, vals))


def test_valid_step_after_rejections_matches_twin(rng, opt_name):
    """A rejected call leaves no trace: later steps are bit-identical to a twin's."""
    param = rng.standard_normal((NUM_ROWS, 2))
    twin_param = param.copy()
    opt, twin = OPTIMIZERS[opt_name](param), OPTIMIZERS[opt_name](twin_param)
    steps = make_steps(rng, NUM_ROWS, 4, (2,), np.float64, np.int64)
    for idx, vals in steps[:2]:
        opt.step(idx, vals)
        twin.step(idx, vals)
    with pytest.raises(IndexError):
        opt.step(np.array([0, 1, NUM_ROWS], dtype=np.int64), np.ones((3, 2)))
    with pytest.raises(ValueError):
        opt.step(np.array([0, 1], dtype=np.int64), np.ones((3, 2)))
    with pytest.raises(ValueError):
        opt.lr = -1.0
    for idx, vals in steps[2:]:
        opt.step(idx, vals)
        twin.step(idx, vals)
    assert np.array_equal(param, twin_param)
    a, b = opt.state_dict(), twin.state_dict()
    assert a["step"] == b["step"] == 4
    for k in a["state"]:
        assert np.array_equal(a["state"][k], b["state"][k]), k


# --------------------------------------------------------------------------- #
# construction: bad param (TypeError naming "param")
# --------------------------------------------------------------------------- #
def _bad_params():
    ro = np.ones((NUM_ROWS, 3))
    ro.flags.writeable = False
    return {
        "list": [[1.0, 2.0], [3.0, 4.0]],
        "int16": np.ones((NUM_ROWS, 3), np.int16),  # 2 bytes, but not a half float
        "int64": np.ones((NUM_ROWS, 3), np.int64),
        "transposed": np.ones((3, NUM_ROWS)).T,
        "row_strided": np.ones((2 * NUM_ROWS, 3))[::2],
        "read_only": ro,
    }


@pytest.mark.parametrize("case", sorted(_bad_params()))
def test_construct_bad_param(opt_name, case):
    bad = _bad_params()[case]
    before = np.array(bad, copy=True)
    with pytest.raises(TypeError, match="param"):
        OPTIMIZERS[opt_name](bad)
    assert np.array_equal(np.asarray(bad), before)


def test_construct_0d_param(opt_name):
    with pytest.raises(ValueError, match="param"):
        OPTIMIZERS[opt_name](np.array(1.0))


# --------------------------------------------------------------------------- #
# load_state_dict
# --------------------------------------------------------------------------- #
def _mutations():
    def wrong_rows(sd, name):
        a = sd["state"][name]
        sd["state"][name] = np.ones((a.shape[0] - 1, *a.shape[1:]), a.dtype)

    def wrong_dtype(sd, name):
        a = sd["state"][name]
        sd["state"][name] = a.astype(np.float32 if a.dtype != np.float32 else np.float64)

    def not_an_array(sd, name):
        sd["state"][name] = sd["state"][name].tolist()

    def missing_name(sd, name):
        del sd["state"][name]

    def extra_name(sd, name):
        sd["state"]["bogus"] = np.zeros(3)

    return {"wrong_rows": wrong_rows, "wrong_dtype": wrong_dtype, "not_an_array": not_an_array,
            "missing_name": missing_name, "extra_name": extra_name}


@pytest.mark.parametrize("mutation", sorted(_mutations()))
def test_load_state_dict_rejects(rng, opt_name, mutation):
    param = rng.standard_normal((NUM_ROWS, 3))
    opt = OPTIMIZERS[opt_name](param)
    for idx, vals in make_steps(rng, NUM_ROWS, 3, (3,), np.float64, np.int64):
        opt.step(idx, vals)
    for name in sorted(opt.state):
        sd = opt.state_dict()
        sd["step"] += 10
        for k in sd["state"]:
            sd["state"][k] = sd["state"][k] + 1.0  # a valid dict that differs from opt's own
        _mutations()[mutation](sd, name)
        _expect_rejected(opt, param, (ValueError, TypeError), None,
                         lambda: opt.load_state_dict(sd))


def test_load_state_dict_of_the_other_optimizer(rng):
    p1, p2 = rng.standard_normal((NUM_ROWS, 2)), rng.standard_normal((NUM_ROWS, 2))
    rowwise, ftrl = RowWiseAdagrad(p1, lr=0.1), FTRL(p2, lr=0.1)
    for opt in (rowwise, ftrl):
        opt.step(np.array([1], np.int64), np.ones((1, 2)))
    _expect_rejected(ftrl, p2, (ValueError, TypeError), None,
                     lambda: ftrl.load_state_dict(rowwise.state_dict()))
    _expect_rejected(rowwise, p1, (ValueError, TypeError), None,
                     lambda: rowwise.load_state_dict(ftrl.state_dict()))
