"""Rejected calls: the right exception type, a message naming the argument for
TypeErrors, and *nothing changed*: param and every state array bit-for-bit as
before, step counter and hyper-parameters unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseopt
from sparseopt.optim import SGD, Adagrad, Adam

from _helpers import assert_unchanged, make_steps, snapshot

OPTIMIZERS = {
    "sgd": lambda p, **kw: SGD(p, lr=0.1, **kw),
    "sgd_momentum": lambda p, **kw: SGD(p, lr=0.1, momentum=0.9, **kw),
    "sgd_nesterov": lambda p, **kw: SGD(p, lr=0.1, momentum=0.9, nesterov=True, **kw),
    "adagrad": lambda p, **kw: Adagrad(p, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, **kw),
    "adam": lambda p, **kw: Adam(p, lr=0.01, **kw),
}
STATEFUL = ["sgd_momentum", "adagrad", "adam"]
CLASSES = {"SGD": (SGD, dict(lr=0.1)), "Adagrad": (Adagrad, dict()), "Adam": (Adam, dict())}

NUM_ROWS = 12


@pytest.fixture(params=sorted(OPTIMIZERS))
def opt_name(request):
    return request.param


@pytest.fixture(params=[(), (3,)], ids=["1d", "2d"])
def row_shape(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def _prime(rng, opt_name, row_shape, dtype):
    """An optimizer that has taken a few valid steps (non-trivial state)."""
    param = np.ascontiguousarray(rng.standard_normal((NUM_ROWS, *row_shape)).astype(dtype))
    opt = OPTIMIZERS[opt_name](param)
    for idx, vals in make_steps(rng, NUM_ROWS, 3, row_shape, dtype, np.int64):
        opt.step(idx, vals)
    assert opt.state_dict()["step"] == 3
    return opt, param, row_shape, dtype


@pytest.fixture
def primed(rng, opt_name, row_shape, dtype):
    return _prime(rng, opt_name, row_shape, dtype)


def _good(row_shape, dtype, n=3, index_dtype=np.int64):
    idx = np.arange(n, dtype=index_dtype) % NUM_ROWS
    vals = np.ones((n, *row_shape), dtype=dtype)
    return idx, vals


def _other_float(dtype):
    return np.float64 if dtype == np.float32 else np.float32


def _strided_values(row_shape, dtype, n=3):
    return np.ones((2 * n, *row_shape), dtype=dtype)[::2]


def _expect_rejected(opt, param, exc, match, call):
    snap = snapshot(opt, param)
    lr0 = opt.lr
    with pytest.raises(exc, match=match):
        call()
    assert_unchanged(opt, param, snap)
    assert opt.lr == lr0


# --------------------------------------------------------------------------- #
# step(): TypeError, message names the argument
# --------------------------------------------------------------------------- #
STEP_TYPE_ERRORS = {
    "indices_list": lambda rs, dt: ([0, 1, 2], np.ones((3, *rs), dt)),
    "indices_tuple": lambda rs, dt: ((0, 1, 2), np.ones((3, *rs), dt)),
    "indices_float64": lambda rs, dt: (np.array([0.0, 1.0, 2.0]), np.ones((3, *rs), dt)),
    "indices_float32": lambda rs, dt: (np.array([0, 1, 2], np.float32), np.ones((3, *rs), dt)),
    "indices_uint64": lambda rs, dt: (np.array([0, 1, 2], np.uint64), np.ones((3, *rs), dt)),
    "indices_uint32": lambda rs, dt: (np.array([0, 1, 2], np.uint32), np.ones((3, *rs), dt)),
    "indices_int16": lambda rs, dt: (np.array([0, 1, 2], np.int16), np.ones((3, *rs), dt)),
    "indices_bool": lambda rs, dt: (np.array([True, False, True]), np.ones((3, *rs), dt)),
    "indices_strided": lambda rs, dt: (np.arange(6, dtype=np.int64)[::2], np.ones((3, *rs), dt)),
    "indices_reversed": lambda rs, dt: (np.arange(3, dtype=np.int32)[::-1], np.ones((3, *rs), dt)),
}
STEP_VALUE_TYPE_ERRORS = {
    "values_list": lambda rs, dt: (np.arange(3), np.ones((3, *rs)).tolist()),
    "values_other_float": lambda rs, dt: (np.arange(3), np.ones((3, *rs), _other_float(dt))),
    "values_float16": lambda rs, dt: (np.arange(3), np.ones((3, *rs), np.float16)),
    "values_int64": lambda rs, dt: (np.arange(3), np.ones((3, *rs), np.int64)),
    "values_complex": lambda rs, dt: (np.arange(3), np.ones((3, *rs), np.complex128)),
    "values_strided": lambda rs, dt: (np.arange(3), _strided_values(rs, dt)),
}


@pytest.mark.parametrize("case", sorted(STEP_TYPE_ERRORS))
def test_step_bad_indices_type(primed, case):
    opt, param, rs, dt = primed
    idx, vals = STEP_TYPE_ERRORS[case](rs, dt)
    _expect_rejected(opt, param, TypeError, "indices", lambda: opt.step(idx, vals))


@pytest.mark.parametrize("case", sorted(STEP_VALUE_TYPE_ERRORS))
def test_step_bad_values_type(primed, case):
    opt, param, rs, dt = primed
    idx, vals = STEP_VALUE_TYPE_ERRORS[case](rs, dt)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    _expect_rejected(opt, param, TypeError, "values", lambda: opt.step(idx, vals))


def test_step_values_transposed_2d(rng, opt_name):
    param = rng.standard_normal((NUM_ROWS, 4))
    opt = OPTIMIZERS[opt_name](param)
    opt.step(np.array([1, 2, 1], dtype=np.int64), np.ones((3, 4)))
    vals = np.ones((4, 3)).T  # shape (3, 4), Fortran order
    assert vals.shape == (3, 4) and not vals.flags.c_contiguous
    idx = np.array([0, 5, 7], dtype=np.int64)
    _expect_rejected(opt, param, TypeError, "values", lambda: opt.step(idx, vals))


def test_step_values_non_contiguous_inner_dim(rng, opt_name):
    param = rng.standard_normal((NUM_ROWS, 3))
    opt = OPTIMIZERS[opt_name](param)
    opt.step(np.array([3], dtype=np.int64), np.ones((1, 3)))
    vals = np.ones((2, 6))[:, ::2]  # rows contiguous in the outer dim only
    assert vals.shape == (2, 3) and not vals.flags.c_contiguous
    idx = np.array([0, 1], dtype=np.int64)
    _expect_rejected(opt, param, TypeError, "values", lambda: opt.step(idx, vals))


# --------------------------------------------------------------------------- #
# step(): ValueError (shapes)
# --------------------------------------------------------------------------- #
def _shape_cases(rs, dt):
    """Shape errors that apply to any row shape."""
    return {
        "values_more_rows": (np.arange(3, dtype=np.int64), np.ones((4, *rs), dt)),
        "values_fewer_rows": (np.arange(3, dtype=np.int64), np.ones((2, *rs), dt)),
        "indices_2d": (np.arange(3, dtype=np.int64).reshape(1, 3), np.ones((3, *rs), dt)),
        "indices_2d_column": (np.arange(3, dtype=np.int64).reshape(3, 1), np.ones((3, *rs), dt)),
        "indices_0d": (np.array(1, dtype=np.int64), np.ones((1, *rs), dt)),
        "values_extra_dim": (np.arange(3, dtype=np.int64), np.ones((3, *rs, 2), dt)),
        "empty_indices_values_wrong_rows": (np.zeros(0, np.int64), np.ones((1, *rs), dt)),
    }


@pytest.mark.parametrize("case", sorted(_shape_cases((), np.float64)))
def test_step_shape_mismatch(primed, case):
    opt, param, rs, dt = primed
    idx, vals = _shape_cases(rs, dt)[case]
    _expect_rejected(opt, param, ValueError, None, lambda: opt.step(idx, vals))


ROW_SPECIFIC_SHAPE_CASES = {
    # (param row shape, values shape)
    "1d_param_values_0d": ((), ()),
    "1d_param_values_column": ((), (3, 1)),
    "2d_param_values_wrong_width": ((3,), (3, 4)),
    "2d_param_values_missing_row_dims": ((3,), (3,)),
    "3d_param_values_rows_flattened": ((2, 3), (3, 6)),
    "3d_param_values_transposed_row": ((2, 3), (3, 3, 2)),
}


@pytest.mark.parametrize("case", sorted(ROW_SPECIFIC_SHAPE_CASES))
def test_step_row_shape_mismatch(rng, opt_name, dtype, case):
    row_shape, vshape = ROW_SPECIFIC_SHAPE_CASES[case]
    opt, param, _, _ = _prime(rng, opt_name, row_shape, dtype)
    n = vshape[0] if vshape else 1
    idx = np.arange(n, dtype=np.int64)
    vals = np.ones(vshape, dtype=dtype)
    _expect_rejected(opt, param, ValueError, None, lambda: opt.step(idx, vals))


# --------------------------------------------------------------------------- #
# step(): IndexError
# --------------------------------------------------------------------------- #
def _index_cases():
    return {
        "equal_num_rows": [NUM_ROWS],
        "far_too_big": [10**6],
        "negative": [-1],
        "very_negative": [-(10**6)],
        "mixed_bad_last": [0, 5, 5, 11, NUM_ROWS],
        "mixed_bad_first": [NUM_ROWS + 3, 0, 1, 2],
        "mixed_negative_middle": [1, 2, -2, 3, 4],
    }


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("case", sorted(_index_cases()))
def test_step_index_out_of_range(primed, case, index_dtype):
    opt, param, rs, dt = primed
    idx = np.array(_index_cases()[case], dtype=index_dtype)
    vals = np.full((len(idx), *rs), 0.5, dtype=dt)
    _expect_rejected(opt, param, IndexError, None, lambda: opt.step(idx, vals))


def test_step_valid_after_rejection_matches_twin(rng, opt_name):
    """A rejected call leaves no trace: the next valid step is bit-identical to
    that of a twin optimizer that never saw the bad call."""
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
        "float16_strided": np.ones((NUM_ROWS, 6), np.float16)[:, ::2],
        "int64": np.ones((NUM_ROWS, 3), np.int64),
        "complex": np.ones((NUM_ROWS, 3), np.complex128),
        "transposed": np.ones((3, NUM_ROWS)).T,
        "row_strided": np.ones((2 * NUM_ROWS, 3))[::2],
        "col_strided": np.ones((NUM_ROWS, 6))[:, ::2],
        "1d_strided": np.ones(2 * NUM_ROWS)[::2],
        "read_only": ro,
    }


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
@pytest.mark.parametrize("case", sorted(_bad_params()))
def test_construct_bad_param(cls_name, case):
    cls, kw = CLASSES[cls_name]
    bad = _bad_params()[case]
    before = np.array(bad, copy=True)
    with pytest.raises(TypeError, match="param"):
        cls(bad, **kw)
    assert np.array_equal(np.asarray(bad), before)


# --------------------------------------------------------------------------- #
# construction: bad hyper-parameters (ValueError)
# --------------------------------------------------------------------------- #
BAD_LRS = {
    "negative": -0.1,
    "nan": math.nan,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "empty_array": np.array([]),
}

BAD_HYPER = {
    ("SGD", "momentum_negative"): dict(lr=0.1, momentum=-0.1),
    ("SGD", "nesterov_no_momentum"): dict(lr=0.1, nesterov=True),
    ("SGD", "nesterov_momentum_zero"): dict(lr=0.1, momentum=0.0, nesterov=True),
    ("SGD", "nesterov_with_dampening"): dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    ("SGD", "unknown_mode"): dict(lr=0.1, mode="eager"),
    ("SGD", "mode_none"): dict(lr=0.1, mode="none"),
    ("SGD", "num_threads_negative"): dict(lr=0.1, num_threads=-1),
    ("Adagrad", "lr_decay_negative"): dict(lr_decay=-0.01),
    ("Adagrad", "initial_accumulator_negative"): dict(initial_accumulator_value=-0.1),
    ("Adagrad", "eps_negative"): dict(eps=-1e-10),
    ("Adagrad", "num_threads_negative"): dict(num_threads=-2),
    ("Adam", "beta1_one"): dict(betas=(1.0, 0.999)),
    ("Adam", "beta2_one"): dict(betas=(0.9, 1.0)),
    ("Adam", "beta1_negative"): dict(betas=(-0.1, 0.999)),
    ("Adam", "beta2_negative"): dict(betas=(0.9, -0.001)),
    ("Adam", "beta1_nan"): dict(betas=(math.nan, 0.999)),
    ("Adam", "beta2_above_one"): dict(betas=(0.9, 1.5)),
    ("Adam", "eps_negative"): dict(eps=-1e-8),
    ("Adam", "unknown_mode"): dict(mode="eager"),
    ("Adam", "unknown_bias_correction"): dict(bias_correction="local"),
    ("Adam", "num_threads_negative"): dict(num_threads=-1),
}


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
@pytest.mark.parametrize("lr_case", sorted(BAD_LRS))
def test_construct_bad_lr(rng, cls_name, lr_case):
    cls, kw = CLASSES[cls_name]
    param = rng.standard_normal((NUM_ROWS, 2))
    p0 = param.copy()
    kw = dict(kw, lr=BAD_LRS[lr_case])
    with pytest.raises(ValueError):
        cls(param, **kw)
    assert np.array_equal(param, p0)


@pytest.mark.parametrize("key", sorted(BAD_HYPER), ids=lambda k: f"{k[0]}-{k[1]}")
def test_construct_bad_hyperparameter(rng, key):
    cls, _ = CLASSES[key[0]]
    param = rng.standard_normal((NUM_ROWS, 2))
    p0 = param.copy()
    with pytest.raises(ValueError):
        cls(param, **BAD_HYPER[key])
    assert np.array_equal(param, p0)


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_construct_good_edge_values_accepted(rng, cls_name):
    """The boundaries of the valid ranges are accepted (so the ValueErrors above
    are about the value, not about the keyword)."""
    cls, kw = CLASSES[cls_name]
    param = rng.standard_normal((NUM_ROWS, 2))
    extra = {
        "SGD": dict(lr=0.0, momentum=0.0, dampening=0.0, nesterov=False, num_threads=0),
        "Adagrad": dict(lr=0.0, lr_decay=0.0, eps=0.0, initial_accumulator_value=0.0, num_threads=1),
        "Adam": dict(lr=0.0, betas=(0.0, 0.0), eps=0.0, mode="lazy", bias_correction="global"),
    }[cls_name]
    opt = cls(param, **dict(kw, **extra))
    assert opt.param is param
    assert opt.lr == 0.0


# --------------------------------------------------------------------------- #
# lr setter
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("bad", [math.nan, -1.0, -1e-12, math.inf], ids=["nan", "neg", "tiny_neg", "inf"])
def test_set_bad_lr(primed, bad):
    opt, param, rs, dt = primed
    lr0 = opt.lr

    def call():
        opt.lr = bad

    _expect_rejected(opt, param, ValueError, None, call)
    assert opt.lr == lr0


# --------------------------------------------------------------------------- #
# load_state_dict
# --------------------------------------------------------------------------- #
@pytest.fixture(params=STATEFUL)
def stateful(request, rng):
    param = rng.standard_normal((NUM_ROWS, 3))
    opt = OPTIMIZERS[request.param](param)
    for idx, vals in make_steps(rng, NUM_ROWS, 3, (3,), np.float64, np.int64):
        opt.step(idx, vals)
    return opt, param


def _good_sd_for_load(opt, rng):
    """A valid state dict that differs from opt's own (so a partial load would show)."""
    sd = opt.state_dict()
    sd["step"] = sd["step"] + 10
    for k, v in sd["state"].items():
        if v.dtype.kind == "f":
            sd["state"][k] = np.abs(rng.standard_normal(v.shape)).astype(v.dtype) + 1.0
        else:
            sd["state"][k] = v + 7
    return sd


def _mutations():
    def wrong_shape(sd, name):
        a = sd["state"][name]
        sd["state"][name] = np.zeros((a.shape[0] - 1, *a.shape[1:]), a.dtype)

    def wrong_row_shape(sd, name):
        a = sd["state"][name]
        sd["state"][name] = np.zeros((a.shape[0], a.shape[1] + 1) if a.ndim == 2 else (a.shape[0], 2), a.dtype)

    def wrong_dtype(sd, name):
        a = sd["state"][name]
        sd["state"][name] = a.astype(np.float32 if a.dtype != np.float32 else np.float64)

    def missing_name(sd, name):
        del sd["state"][name]

    def extra_name(sd, name):
        sd["state"]["bogus"] = np.zeros(3)

    def missing_state_key(sd, name):
        del sd["state"]

    def missing_step_key(sd, name):
        del sd["step"]

    return {
        "wrong_shape": wrong_shape,
        "wrong_row_shape": wrong_row_shape,
        "wrong_dtype": wrong_dtype,
        "missing_name": missing_name,
        "extra_name": extra_name,
        "missing_state_key": missing_state_key,
        "missing_step_key": missing_step_key,
    }


@pytest.mark.parametrize("mutation", sorted(_mutations()))
def test_load_state_dict_rejects(stateful, rng, mutation):
    opt, param = stateful
    names = sorted(opt.state_dict()["state"])
    for name in names:
        sd = _good_sd_for_load(opt, rng)
        _mutations()[mutation](sd, name)
        _expect_rejected(opt, param, (ValueError, TypeError), None, lambda: opt.load_state_dict(sd))


def test_load_state_dict_wrong_optimizer_kind(rng):
    p1, p2 = rng.standard_normal((NUM_ROWS, 2)), rng.standard_normal((NUM_ROWS, 2))
    adam, adagrad = Adam(p1, lr=0.1), Adagrad(p2, lr=0.1)
    adam.step(np.array([1], dtype=np.int64), np.ones((1, 2)))
    adagrad.step(np.array([1], dtype=np.int64), np.ones((1, 2)))
    sd = adam.state_dict()
    _expect_rejected(adagrad, p2, (ValueError, TypeError), None, lambda: adagrad.load_state_dict(sd))


def test_load_state_dict_wrong_param_dtype(rng):
    """State saved from a float32 table must not load into a float64 one."""
    p32 = rng.standard_normal((NUM_ROWS, 2)).astype(np.float32)
    p64 = rng.standard_normal((NUM_ROWS, 2))
    a, b = Adam(p32, lr=0.1), Adam(p64, lr=0.1)
    a.step(np.array([1], dtype=np.int64), np.ones((1, 2), np.float32))
    b.step(np.array([2], dtype=np.int64), np.ones((1, 2)))
    sd = a.state_dict()
    _expect_rejected(b, p64, (ValueError, TypeError), None, lambda: b.load_state_dict(sd))


def test_load_state_dict_valid_sanity(stateful, rng):
    """The unmutated dict used above *is* accepted (so rejections are about the mutation)."""
    opt, param = stateful
    sd = _good_sd_for_load(opt, rng)
    opt.load_state_dict(sd)
    got = opt.state_dict()
    assert got["step"] == sd["step"]
    for k, v in sd["state"].items():
        assert np.array_equal(got["state"][k], v), k


# --------------------------------------------------------------------------- #
# coalesce
# --------------------------------------------------------------------------- #
COALESCE_TYPE_ERRORS = {
    "indices_list": (lambda: ([0, 1], np.ones(2)), "indices"),
    "indices_float": (lambda: (np.array([0.0, 1.0]), np.ones(2)), "indices"),
    "indices_uint64": (lambda: (np.array([0, 1], np.uint64), np.ones(2)), "indices"),
    "indices_strided": (lambda: (np.arange(4, dtype=np.int64)[::2], np.ones(2)), "indices"),
    "values_list": (lambda: (np.array([0, 1], np.int64), [1.0, 2.0]), "values"),
    "values_float16": (lambda: (np.array([0, 1], np.int64), np.ones(2, np.float16)), "values"),
    "values_strided": (lambda: (np.array([0, 1], np.int64), np.ones((4, 3))[::2]), "values"),
}


@pytest.mark.parametrize("case", sorted(COALESCE_TYPE_ERRORS))
def test_coalesce_type_errors(case):
    make, name = COALESCE_TYPE_ERRORS[case]
    idx, vals = make()
    with pytest.raises(TypeError, match=name):
        sparseopt.coalesce(idx, vals)


@pytest.mark.parametrize(
    "idx,vals",
    [
        (np.array([0, 1, 2], np.int64), np.ones(2)),
        (np.array([0, 1], np.int64), np.ones(3)),
        (np.array([[0, 1]], np.int64), np.ones(2)),
        (np.array([0, 1], np.int64), np.array(1.0)),
    ],
    ids=["values_short", "values_long", "indices_2d", "values_0d"],
)
def test_coalesce_value_errors(idx, vals):
    with pytest.raises(ValueError):
        sparseopt.coalesce(idx, vals)


def test_coalesce_negative_num_threads():
    with pytest.raises(ValueError):
        sparseopt.coalesce(np.array([0, 1], np.int64), np.ones(2), num_threads=-1)


# --------------------------------------------------------------------------- #
# memory shared between the arrays a step reads and writes
# --------------------------------------------------------------------------- #
def test_values_sharing_memory_with_param_are_rejected():
    """The kernels update rows through non-aliasing pointers, so a gradient that is a view
    of the table itself is refused (ValueError) before anything is written."""
    from sparseopt.optim import Adam

    param = np.arange(12, dtype=np.float64).reshape(6, 2)
    opt = Adam(param, lr=0.1)
    before, state_before = param.copy(), opt.state_dict()
    with pytest.raises(ValueError, match="share memory"):
        opt.step(np.array([0, 1]), param[2:4])
    np.testing.assert_array_equal(param, before)
    for name, array in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(array, state_before["state"][name])
    assert opt.state_dict()["step"] == 0


@pytest.mark.parametrize("lr", [-0.0015, -1e-300, -123456.789, -(2.0 ** 70), -0.1, -1 / 3, -2.5e-07,
                                -123456789012345678.0, -math.pi])
def test_messages_write_numbers_in_full(lr):
    """The core's messages write a floating-point number as the shortest of 15, 16 or 17
    significant digits that reads back as the same double, as Python's repr() writes these
    (-0.1, not -0.10000000000000001), and an integer in decimal (errors.hpp's concat, which uses
    no iostreams)."""
    with pytest.raises(ValueError, match=r"^lr must be") as info:
        Adam(np.zeros((3, 2), np.float32), lr=lr)
    assert str(info.value).endswith(f"got {lr!r}"), str(info.value)
    big = 2 ** 40 + 3
    with pytest.raises(IndexError) as info:
        sparseopt.coalesce(np.array([0, big], np.int64), np.ones((2, 1)), 7)
    assert f"indices[1] = {big} is out of range for a table of 7 rows" in str(info.value)
