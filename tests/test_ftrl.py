"""sparseopt.optim.FTRL against a NumPy transcription of TensorFlow's SparseApplyFtrl
(training_ops.cc, non-V2: no l2 shrinkage), applied to each element of each touched,
coalesced row, in the table's dtype (TensorFlow is not installed here, so this transcription
is the reference):

    accum_new = accum + g**2
    sigma     = (sqrt(accum_new) - sqrt(accum)) / lr                   lr_power == -0.5
              = (accum_new**(-lr_power) - accum**(-lr_power)) / lr     otherwise
    linear   += g - sigma * p
    quadratic = accum_new**(-lr_power) / lr + 2*l2                     (sqrt for -0.5)
    p         = (clip(linear, -l1, l1) - linear) / quadratic if |linear| > l1 else 0
    accum     = accum_new
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt import _core
from sparseopt.optim import FTRL

from _helpers import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    assert_unchanged,
    coalesce_ref,
    empty_step,
    make_steps,
    random_param,
    snapshot,
)


class NumpyFtrl:
    def __init__(self, param, lr, lr_power=-0.5, l1=0.0, l2=0.0, initial_accumulator_value=0.1):
        self.p = np.array(param, copy=True)
        self.accum = np.full_like(self.p, initial_accumulator_value)
        self.linear = np.zeros_like(self.p)
        self.lr, self.lr_power, self.l1, self.l2 = lr, lr_power, l1, l2

    def step(self, idx, vals):
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        lr, lr_power, l1, l2 = dt(self.lr), dt(self.lr_power), dt(self.l1), dt(self.l2)
        accum, linear, p = self.accum[u], self.linear[u], self.p[u]
        accum_new = accum + g * g
        if lr_power == dt(-0.5):
            sigma = (np.sqrt(accum_new) - np.sqrt(accum)) / lr
            quadratic = np.sqrt(accum_new) / lr + dt(2) * l2
        else:
            sigma = (accum_new ** -lr_power - accum ** -lr_power) / lr
            quadratic = accum_new ** -lr_power / lr + dt(2) * l2
        linear = linear + (g - sigma * p)
        p_new = np.where(np.abs(linear) > l1, (np.clip(linear, -l1, l1) - linear) / quadratic, dt(0))
        self.p[u], self.linear[u], self.accum[u] = p_new, linear, accum_new


HYPER = {
    "sqrt_l1_l2": dict(lr_power=-0.5, l1=0.05, l2=0.1, initial_accumulator_value=0.1),
    "sqrt_plain": dict(lr_power=-0.5, l1=0.0, l2=0.0, initial_accumulator_value=0.5),
    "pow_1": dict(lr_power=-1.0, l1=0.02, l2=0.0, initial_accumulator_value=0.2),
    "pow_0.3_init0_l2": dict(lr_power=-0.3, l1=0.01, l2=0.5, initial_accumulator_value=0.0),
    "fixed_lr_init0": dict(lr_power=0.0, l1=0.1, l2=0.0, initial_accumulator_value=0.0),
}


# --------------------------------------------------------------------------- #
# against the NumPy transcription of TensorFlow's kernel
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("hp", sorted(HYPER))
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_tf_formula_with_lr_schedule(rng, dtype, index_dtype, row_shape, hp):
    num_rows, n_steps = 50, 60
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=7, hot_rows=3
    )
    lrs = [0.2 * 0.97**s for s in range(n_steps)]
    ref = NumpyFtrl(param, lr=lrs[0], **HYPER[hp])
    opt = FTRL(param, lr=lrs[0], **HYPER[hp])
    assert opt.param is param
    for s, (idx, vals) in enumerate(steps):
        opt.lr = ref.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"param, step {s}")
        assert_close(opt.state["accumulator"], ref.accum, dtype, err_msg=f"accumulator, step {s}")
        assert_close(opt.state["linear"], ref.linear, dtype, err_msg=f"linear, step {s}")
    assert opt.step_count == n_steps
    assert np.all(np.isfinite(param))
    assert np.array_equal(param[:3], p0[:3])
    assert np.all(opt.state["accumulator"][:3] == dtype(HYPER[hp]["initial_accumulator_value"]))
    assert np.all(opt.state["linear"][:3] == 0)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 25),
    n_steps=st.integers(1, 12),
    row_shape=st.sampled_from(ROW_SHAPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    hp=st.sampled_from(sorted(HYPER)),
    lr=st.sampled_from([0.01, 0.5, 3.0]),
)
def test_random_sequences_match_tf_formula(
    seed, num_rows, n_steps, row_shape, dtype, index_dtype, hp, lr
):
    rng = np.random.default_rng(seed)
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyFtrl(param, lr=lr, **HYPER[hp])
    opt = FTRL(param, lr=lr, **HYPER[hp])
    for idx, vals in make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, 3):
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    assert_close(opt.state["accumulator"], ref.accum, dtype)
    assert_close(opt.state["linear"], ref.linear, dtype)


# --------------------------------------------------------------------------- #
# by hand
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_step_by_hand_sqrt_path(dtype):
    # lr = 0.5, lr_power = -0.5, l1 = 0.2, l2 = 0.25, accumulators start at 16.
    # Row 1 is [1, -0.5, -0.5] and appears twice: g = [1, 0.5, -1] + [2, -0.5, -2] = [3, 0, -3].
    #  element 0: accum 16 -> 25; sigma = (5 - 4) / 0.5 = 2; linear = 0 + (3 - 2 * 1) = 1;
    #             quadratic = 5 / 0.5 + 2 * 0.25 = 10.5; |1| > 0.2: p = (0.2 - 1) / 10.5 = -8/105
    #  element 1: g = 0: accum 16, sigma = 0, linear = 0 + (0 - 0) = 0; |0| <= 0.2: p = 0
    #  element 2: accum 16 -> 25; sigma = 2; linear = -3 - 2 * (-0.5) = -2; quadratic = 10.5;
    #             p = (-0.2 - (-2)) / 10.5 = 1.8 / 10.5 = 6/35
    # Rows 0 and 2 are untouched.
    param = np.array([[0.3, 0.3, 0.3], [1.0, -0.5, -0.5], [-0.7, 0.0, 0.7]], dtype)
    p0 = param.copy()
    opt = FTRL(param, lr=0.5, lr_power=-0.5, l1=0.2, l2=0.25, initial_accumulator_value=16.0)
    opt.step(np.array([1, 1], np.int64), np.array([[1, 0.5, -1], [2, -0.5, -2]], dtype))
    assert_close(param[1], np.array([-8 / 105, 0.0, 6 / 35], dtype), dtype)
    assert param[1, 1] == 0
    assert np.array_equal(opt.state["accumulator"][1], np.array([25, 16, 25], dtype))
    assert np.array_equal(opt.state["linear"][1], np.array([1, 0, -2], dtype))
    assert np.array_equal(param[[0, 2]], p0[[0, 2]])
    assert np.all(opt.state["accumulator"][[0, 2]] == 16) and np.all(opt.state["linear"][[0, 2]] == 0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_step_by_hand_pow_path(dtype):
    # lr = 2, lr_power = -1 (accum**1), l1 = l2 = 0, accumulators start at 1; 1-D table.
    # Row 0 (p = 0.5), g = 2: accum 1 -> 5; sigma = (5 - 1) / 2 = 2; linear = 2 - 2 * 0.5 = 1;
    #   quadratic = 5 / 2 = 2.5; p = (0 - 1) / 2.5 = -0.4
    # Row 2 (p = -1), g = -1: accum 1 -> 2; sigma = (2 - 1) / 2 = 0.5;
    #   linear = -1 - 0.5 * (-1) = -0.5; quadratic = 2 / 2 = 1; p = (0 + 0.5) / 1 = 0.5
    param = np.array([0.5, 9.0, -1.0], dtype)
    opt = FTRL(param, lr=2.0, lr_power=-1.0, initial_accumulator_value=1.0)
    opt.step(np.array([2, 0], np.int32), np.array([-1.0, 2.0], dtype))
    assert_close(param, np.array([-0.4, 9.0, 0.5], dtype), dtype)
    assert param[1] == 9.0 and param[2] == 0.5
    assert np.array_equal(opt.state["accumulator"], np.array([5, 1, 2], dtype))
    assert np.array_equal(opt.state["linear"], np.array([1, 0, -0.5], dtype))


def test_fixed_lr_power_zero_by_hand():
    # lr_power = 0: accum**0 = 1, so sigma = 0, linear accumulates g, quadratic = 1/lr + 2*l2.
    # lr = 0.5, l2 = 0.5 -> quadratic = 3; g = 4 twice (two steps): linear = 8 after step 2,
    # l1 = 1: p = (1 - 8) / 3 = -7/3. Accumulator starts at 0 (allowed when lr_power = 0).
    param = np.zeros(2)
    opt = FTRL(param, lr=0.5, lr_power=0.0, l1=1.0, l2=0.5, initial_accumulator_value=0.0)
    for _ in range(2):
        opt.step(np.array([1], np.int64), np.array([4.0]))
    assert_close(param, np.array([0.0, -7 / 3]), np.float64)
    assert np.array_equal(opt.state["accumulator"], [0.0, 32.0])


# --------------------------------------------------------------------------- #
# focused behaviours
# --------------------------------------------------------------------------- #
def test_duplicates_are_summed_before_the_update():
    """TensorFlow's optimizers sum repeated indices first (the raw op would apply them one
    after another, with a different result)."""
    a, b = np.zeros(3), np.zeros(3)
    opt_a = FTRL(a, lr=0.3, l1=0.01, l2=0.1)
    opt_b = FTRL(b, lr=0.3, l1=0.01, l2=0.1)
    opt_a.step(np.array([1, 1, 1], np.int64), np.array([0.5, 2.0, -1.0]))
    opt_b.step(np.array([1], np.int64), np.array([1.5]))
    assert np.array_equal(a, b)
    for name in ("accumulator", "linear"):
        assert np.array_equal(opt_a.state[name], opt_b.state[name])


def test_untouched_rows_bit_identical(rng):
    param = random_param(rng, 80, (3,), np.float32)
    p0 = param.copy()
    opt = FTRL(param, lr=0.1, l1=0.01)
    rows = np.array([0, 40, 79, 0], dtype=np.int64)
    for _ in range(4):
        opt.step(rows, rng.standard_normal((4, 3)).astype(np.float32))
    mask = np.ones(80, dtype=bool)
    mask[[0, 40, 79]] = False
    assert np.array_equal(param[mask], p0[mask])
    assert np.all(opt.state["accumulator"][mask] == np.float32(0.1))
    assert np.all(opt.state["linear"][mask] == 0)
    assert not np.array_equal(param[~mask], p0[~mask])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_gradient_recomputes_the_same_parameter(rng, dtype):
    """On a row FTRL has already written, a zero gradient (same lr) leaves everything bit for
    bit; on a row never touched, it sets p to the closed form from linear = 0, i.e. 0 (as
    TensorFlow does)."""
    param = random_param(rng, 6, (4,), dtype)
    opt = FTRL(param, lr=0.2, l1=0.05, l2=0.01)
    opt.step(np.array([1, 2], np.int64), rng.standard_normal((2, 4)).astype(dtype))
    p1 = param.copy()
    state1 = {k: v.copy() for k, v in opt.state.items()}
    opt.step(np.array([1, 2, 4], np.int64), np.zeros((3, 4), dtype))
    assert np.array_equal(param[[0, 1, 2, 3, 5]], p1[[0, 1, 2, 3, 5]])
    assert np.array_equal(param[4], np.zeros(4, dtype))
    for k, v in state1.items():
        assert np.array_equal(opt.state[k], v), k


@pytest.mark.parametrize(
    "hp",
    [dict(lr_power=-0.5, l2=0.3, initial_accumulator_value=0.0),
     dict(lr_power=-2.0, l2=1e-3, initial_accumulator_value=0.0),
     dict(lr_power=0.0, initial_accumulator_value=0.0)],
    ids=["sqrt_l2", "pow_l2", "fixed"],
)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_accumulators_and_gradients_stay_finite(rng, dtype, hp):
    """The allowed ways to start from a zero accumulator never divide 0 by 0."""
    param = random_param(rng, 10, (3,), dtype)
    opt = FTRL(param, lr=0.1, l1=0.5, **hp)
    opt.step(np.array([0, 1, 1], np.int64), np.zeros((3, 3), dtype))
    opt.step(np.array([2, 3], np.int64), np.full((2, 3), 1e-30, dtype))  # g**2 underflows in float32
    opt.step(np.array([0, 4], np.int64), rng.standard_normal((2, 3)).astype(dtype))
    assert np.all(np.isfinite(param))
    for v in opt.state.values():
        assert np.all(np.isfinite(v))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_steps_count_and_change_nothing(rng, dtype):
    param = random_param(rng, 6, (2,), dtype)
    p0 = param.copy()
    opt = FTRL(param, lr=0.1)
    for _ in range(3):
        opt.step(*empty_step((2,), dtype, np.int64))
    assert np.array_equal(param, p0)
    assert opt.step_count == 3


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
def test_state_arrays(rng, row_shape):
    param = random_param(rng, 7, row_shape, np.float32)
    opt = FTRL(param, lr=0.1, initial_accumulator_value=0.25)
    assert set(opt.state) == {"accumulator", "linear"}
    for name, fill in (("accumulator", 0.25), ("linear", 0.0)):
        a = opt.state[name]
        assert a.shape == param.shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert np.all(a == np.float32(fill))
    assert opt.state_dict()["hyperparams"] == dict(
        lr=0.1, lr_power=-0.5, l1=0.0, l2=0.0, initial_accumulator_value=0.25)


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("hp", ["sqrt_l1_l2", "pow_1"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_round_trip_bit_identical(rng, dtype, hp):
    num_rows, row_shape = 30, (2, 2)
    param = random_param(rng, num_rows, row_shape, dtype)
    steps = make_steps(rng, num_rows, 12, row_shape, dtype, np.int64, empty_every=4)
    k = 5
    opt = FTRL(param, lr=0.1, **HYPER[hp])
    for idx, vals in steps[:k]:
        opt.step(idx, vals)
    opt.lr = 0.07
    saved = opt.state_dict()
    saved_param = param.copy()
    for idx, vals in steps[k:]:
        opt.step(idx, vals)

    param2 = saved_param.copy()
    opt2 = FTRL(param2, lr=0.1, **HYPER[hp])
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.07 and opt2.step_count == k
    for idx, vals in steps[k:]:
        opt2.step(idx, vals)
    assert np.array_equal(param2, param)
    for name in ("accumulator", "linear"):
        assert np.array_equal(opt2.state[name], opt.state[name]), name


def test_load_state_dict_rejects_bad_hyperparameters(rng):
    param = random_param(rng, 6, (2,), np.float32)
    opt = FTRL(param, lr=0.1)
    opt.step(np.array([1], np.int64), np.ones((1, 2), np.float32))
    for bad in (dict(lr_power=0.5), dict(initial_accumulator_value=0.0),
                dict(initial_accumulator_value=1e-50)):  # the last underflows in float32 only
        sd = opt.state_dict()
        sd["hyperparams"].update(bad)
        snap = snapshot(opt, param)
        with pytest.raises(ValueError):
            opt.load_state_dict(sd)
        assert_unchanged(opt, param, snap)


# --------------------------------------------------------------------------- #
# hyper-parameters
# --------------------------------------------------------------------------- #
BAD_HYPER = {
    "lr_zero": (dict(lr=0.0), "lr"),
    "lr_negative": (dict(lr=-0.1), "lr"),
    "lr_nan": (dict(lr=math.nan), "lr"),
    "lr_inf": (dict(lr=math.inf), "lr"),
    "lr_none": (dict(lr=None), "lr"),
    "lr_power_positive": (dict(lr_power=0.5), "lr_power"),
    "lr_power_nan": (dict(lr_power=math.nan), "lr_power"),
    "lr_power_neg_inf": (dict(lr_power=-math.inf), "lr_power"),
    "l1_negative": (dict(l1=-1e-3), "l1"),
    "l1_nan": (dict(l1=math.nan), "l1"),
    "l2_negative": (dict(l2=-1e-3), "l2"),
    "l2_inf": (dict(l2=math.inf), "l2"),
    "initial_negative": (dict(initial_accumulator_value=-0.1), "initial_accumulator_value"),
    "initial_nan": (dict(initial_accumulator_value=math.nan), "initial_accumulator_value"),
    "initial_zero_sqrt": (dict(initial_accumulator_value=0.0), "initial_accumulator_value"),
    "initial_zero_pow": (dict(initial_accumulator_value=0.0, lr_power=-1.0),
                         "initial_accumulator_value"),
    "num_threads_negative": (dict(num_threads=-1), "num_threads"),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", sorted(BAD_HYPER))
def test_construct_bad_hyperparameter(rng, case, dtype):
    kw, name = BAD_HYPER[case]
    kw = dict(dict(lr=0.1), **kw)
    param = rng.standard_normal((8, 2)).astype(dtype)
    p0 = param.copy()
    with pytest.raises(ValueError, match=name):
        FTRL(param, **kw)
    assert np.array_equal(param, p0)


@pytest.mark.parametrize(
    "kw",
    [dict(initial_accumulator_value=1e-50),           # 0 in float32
     dict(lr=1e39),                                    # inf in float32
     dict(lr=1e-3, lr_power=-4.0, initial_accumulator_value=1e-12)],  # 1e-48 / 1e-3 -> 0
    ids=["initial_underflows", "lr_overflows", "power_underflows"],
)
def test_bounds_checked_in_the_table_dtype(rng, kw):
    kw = dict(dict(lr=0.1), **kw)
    param32 = rng.standard_normal((8, 2)).astype(np.float32)
    p0 = param32.copy()
    with pytest.raises(ValueError, match="float32"):
        FTRL(param32, **kw)
    assert np.array_equal(param32, p0)
    param64 = rng.standard_normal((8, 2))
    opt = FTRL(param64, **kw)  # fine in float64
    opt.step(np.array([0, 1], np.int64), np.zeros((2, 2)))
    assert np.all(np.isfinite(param64))


def test_edge_values_accepted(rng):
    param = rng.standard_normal((8, 2))
    FTRL(param, lr=1e-300, lr_power=0.0, l1=0.0, l2=0.0, initial_accumulator_value=0.0)
    FTRL(param, lr=0.1, lr_power=-0.5, l2=1e-300, initial_accumulator_value=0.0)
    FTRL(param, lr=0.1, lr_power=-7.5, initial_accumulator_value=1e-40)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf], ids=["zero", "neg", "nan", "inf"])
def test_set_bad_lr_changes_nothing(rng, bad):
    param = rng.standard_normal((8, 2))
    opt = FTRL(param, lr=0.1)
    opt.step(np.array([1], np.int64), np.ones((1, 2)))
    snap = snapshot(opt, param)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = bad
    assert_unchanged(opt, param, snap)
    assert opt.lr == 0.1


def test_lr_that_breaks_the_float32_bound_is_refused_by_the_step(rng):
    """The core step checks lr in float32 itself (a C++ caller has no setter), changing
    nothing."""
    param = rng.standard_normal((8, 2)).astype(np.float32)
    accumulator, linear = np.full((8, 2), 0.1, np.float32), np.zeros((8, 2), np.float32)
    p0, a0 = param.copy(), accumulator.copy()
    options = _core.FtrlOptions()
    options.lr = 1e39  # inf in float32
    options.validate()
    with pytest.raises(ValueError, match="lr"):
        _core.ftrl_step(param, np.array([2], np.int64), np.ones((1, 2), np.float32), None, accumulator,
                        linear, options, 0)
    assert np.array_equal(param, p0) and np.array_equal(accumulator, a0) and not linear.any()


# --------------------------------------------------------------------------- #
# the binding's checks of the state arrays
# --------------------------------------------------------------------------- #
def _bad_states():
    ro = np.zeros((8, 2))
    ro.flags.writeable = False
    return {
        "none": (None, TypeError),
        "float32": (np.zeros((8, 2), np.float32), TypeError),
        "fortran": (np.zeros((2, 8)).T, TypeError),
        "read_only": (ro, TypeError),
        "per_row": (np.zeros(8), ValueError),
        "too_few_rows": (np.zeros((7, 2)), ValueError),
    }


@pytest.mark.parametrize("which", ["accumulator", "linear"])
@pytest.mark.parametrize("case", sorted(_bad_states()))
def test_core_rejects_bad_state(rng, case, which):
    bad, exc = _bad_states()[case]
    param = rng.standard_normal((8, 2))
    p0 = param.copy()
    state = {"accumulator": np.full((8, 2), 0.1), "linear": np.zeros((8, 2))}
    before = {k: v.copy() for k, v in state.items()}
    state[which] = bad
    before[which] = None if bad is None else np.array(bad, copy=True)
    with pytest.raises(exc, match=which):
        _core.ftrl_step(param, np.array([1, 2], np.int64), np.ones((2, 2)), None, state["accumulator"],
                        state["linear"], _core.FtrlOptions(), 0)
    assert np.array_equal(param, p0)
    for k, v in state.items():
        if v is not None:
            assert np.array_equal(v, before[k]), k


def test_core_rejects_shared_state_memory(rng):
    param = rng.standard_normal((8, 2))
    p0 = param.copy()
    options = _core.FtrlOptions()
    shared = np.full((8, 2), 0.1)
    with pytest.raises(ValueError, match="share memory"):
        _core.ftrl_step(param, np.array([1], np.int64), np.ones((1, 2)), None, shared, shared, options, 0)
    buf = np.zeros((10, 2))
    with pytest.raises(ValueError, match="share memory"):
        _core.ftrl_step(param, np.array([1], np.int64), buf[7:8], None, np.full((8, 2), 0.1), buf[:8],
                        options, 0)
    assert np.array_equal(param, p0)
    assert np.all(shared == 0.1) and np.all(buf == 0)


def test_core_check_options_follows_the_table_dtype():
    options = _core.FtrlOptions()
    options.initial_accumulator_value = 1e-50  # 0 in float32
    _core.ftrl_check_options(np.zeros(3), options)
    with pytest.raises(ValueError, match="float32"):
        _core.ftrl_check_options(np.zeros(3, np.float32), options)
    with pytest.raises(TypeError, match="param"):
        _core.ftrl_check_options(np.zeros(3, np.int64), options)


# --------------------------------------------------------------------------- #
# threads
# --------------------------------------------------------------------------- #
NUM_ROWS, WIDTH, NNZ, N_STEPS = 20_000, 16, 30_000, 3


def _big_steps(rng, dtype, index_dtype):
    steps = []
    for _ in range(N_STEPS):
        hot = rng.integers(0, 500, size=NNZ // 2)  # many repeats of a few rows
        tail = rng.integers(0, NUM_ROWS, size=NNZ - NNZ // 2)
        idx = np.concatenate([hot, tail])
        rng.shuffle(idx)
        vals = rng.standard_normal((NNZ, WIDTH)).astype(dtype)
        vals[::7] *= dtype(1e4)  # mixed magnitudes make the summation order visible
        steps.append((idx.astype(index_dtype), vals))
    return steps


@pytest.mark.parametrize("hp", ["sqrt_l1_l2", "pow_1"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_thread_count_invariant(rng, dtype, hp):
    index_dtype = np.int32 if dtype == np.float32 else np.int64
    p0 = random_param(rng, NUM_ROWS, (WIDTH,), dtype)
    steps = _big_steps(rng, dtype, index_dtype)
    results = {}
    for nt in (1, 2, 0):
        param = p0.copy()
        opt = FTRL(param, lr=0.05, **HYPER[hp], num_threads=nt)
        for idx, vals in steps:
            opt.step(idx, vals)
        results[nt] = (param, opt.state_dict())
    p1, sd1 = results[1]
    assert not np.array_equal(p1, p0)
    for nt in (2, 0):
        assert np.array_equal(results[nt][0], p1), f"num_threads=1 vs {nt}: param differs"
        for name in ("accumulator", "linear"):
            assert np.array_equal(results[nt][1]["state"][name], sd1["state"][name]), (nt, name)
    ref = NumpyFtrl(p0, lr=0.05, **HYPER[hp])
    for idx, vals in steps:
        ref.step(idx, vals)
    assert_close(results[2][0], ref.p, dtype)
    assert_close(results[2][1]["state"]["linear"], ref.linear, dtype)


def test_lr_setter_checks_the_table_dtype(rng):
    """Setting lr runs the same float32 bound as construction (the step would refuse it
    anyway); the optimizer keeps its old lr."""
    param = rng.standard_normal((8, 2)).astype(np.float32)
    opt = FTRL(param, lr=0.1)
    with pytest.raises(ValueError, match="float32"):
        opt.lr = 1e39  # inf in float32
    assert opt.lr == 0.1
    FTRL(rng.standard_normal((8, 2)), lr=0.1).lr = 1e39  # float64 takes it
