"""sparseopt.optim.Adagrad against torch.optim.Adagrad with sparse gradients and
against a NumPy transcription of its formula:

    t += 1 (every step, empty ones too);  clr = lr / (1 + (t-1)*lr_decay)
    per touched, coalesced row:  s += g^2;  p -= clr * g / (sqrt(s) + eps)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt.optim import Adagrad

from _helpers import (
    coalesce_ref,
    random_param,
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    empty_step,
    make_steps,
)



class NumpyAdagrad:
    def __init__(self, param, lr=1e-2, lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0):
        self.p = np.array(param, copy=True)
        self.s = np.full_like(self.p, initial_accumulator_value)
        self.t = 0
        self.lr, self.lr_decay, self.eps = lr, lr_decay, eps

    def step(self, idx, vals):
        self.t += 1
        clr = self.lr / (1 + (self.t - 1) * self.lr_decay)
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        s_new = self.s[u] + g * g
        self.s[u] = s_new
        self.p[u] = self.p[u] - dt(clr) * (g / (np.sqrt(s_new) + dt(self.eps)))


def run_torch(torch, p0, steps, lrs=None, **kw):
    p = torch.nn.Parameter(torch.from_numpy(np.array(p0, copy=True)))
    opt = torch.optim.Adagrad([p], **kw)
    out = []
    with torch.sparse.check_sparse_tensor_invariants(True):
        for s, (idx, vals) in enumerate(steps):
            if lrs is not None:
                opt.param_groups[0]["lr"] = lrs[s]
            idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(1, -1).copy())
            p.grad = torch.sparse_coo_tensor(idx_t, torch.from_numpy(vals.copy()), p.shape)
            opt.step()
            out.append((p.detach().numpy().copy(), opt.state[p]["sum"].numpy().copy()))
    return out



# --------------------------------------------------------------------------- #
# against torch.optim.Adagrad
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=0.1, lr_decay=0.05, eps=1e-10, initial_accumulator_value=0.1),
        dict(lr=0.3, lr_decay=0.0, eps=1e-6, initial_accumulator_value=0.0),
    ],
    ids=["decay_init", "plain"],
)
def test_matches_torch_adagrad(torch, rng, dtype, index_dtype, row_shape, hp):
    num_rows, n_steps = 50, 40
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=6, hot_rows=3
    )
    ref = run_torch(torch, p0, steps, **hp)
    opt = Adagrad(param, **hp)
    assert opt.param is param
    for s, (idx, vals) in enumerate(steps):
        opt.step(idx, vals)
        assert_close(param, ref[s][0], dtype, err_msg=f"param, step {s}")
        sd = opt.state_dict()
        assert sd["step"] == s + 1
        assert_close(sd["state"]["sum"], ref[s][1], dtype, err_msg=f"sum, step {s}")
    assert np.array_equal(param[:3], p0[:3])
    assert np.all(opt.state_dict()["state"]["sum"][:3] == dtype(hp["initial_accumulator_value"]))


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_lr_schedule_matches_torch(torch, rng, dtype):
    num_rows, n_steps = 30, 30
    param = random_param(rng, num_rows, (2,), dtype)
    steps = make_steps(rng, num_rows, n_steps, (2,), dtype, np.int64, empty_every=5)
    lrs = [0.2 * 0.9**s for s in range(n_steps)]
    hp = dict(lr=lrs[0], lr_decay=0.1, initial_accumulator_value=0.05)
    ref = run_torch(torch, param.copy(), steps, lrs=lrs, **hp)
    opt = Adagrad(param, **hp)
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        assert_close(param, ref[s][0], dtype, err_msg=f"step {s}")


@pytest.mark.requires_torch
def test_defaults_match_torch(torch, rng):
    param = random_param(rng, 25, (3,), np.float64)
    steps = make_steps(rng, 25, 15, (3,), np.float64, np.int64)
    ref = run_torch(torch, param.copy(), steps)  # torch defaults
    opt = Adagrad(param)
    for idx, vals in steps:
        opt.step(idx, vals)
    assert_close(param, ref[-1][0], np.float64)
    assert_close(opt.state_dict()["state"]["sum"], ref[-1][1], np.float64)
    assert opt.lr == 1e-2


# --------------------------------------------------------------------------- #
# against the NumPy formula
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_numpy_formula(rng, dtype, row_shape):
    num_rows, n_steps = 60, 40
    hp = dict(lr=0.2, lr_decay=0.03, eps=1e-8, initial_accumulator_value=0.5)
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyAdagrad(param, **hp)
    opt = Adagrad(param, **hp)
    for idx, vals in make_steps(
        rng, num_rows, n_steps, row_shape, dtype, np.int32, empty_every=4, hot_rows=2
    ):
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype)
    assert_close(opt.state_dict()["state"]["sum"], ref.s, dtype)
    assert np.array_equal(param[:2], ref.p[:2])


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 25),
    n_steps=st.integers(1, 12),
    row_shape=st.sampled_from(ROW_SHAPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    lr_decay=st.sampled_from([0.0, 0.1, 1.0]),
    init=st.sampled_from([0.0, 0.1, 2.0]),
)
def test_random_sequences_match_numpy(
    seed, num_rows, n_steps, row_shape, dtype, index_dtype, lr_decay, init
):
    rng = np.random.default_rng(seed)
    param = random_param(rng, num_rows, row_shape, dtype)
    hp = dict(lr=0.1, lr_decay=lr_decay, eps=1e-10, initial_accumulator_value=init)
    ref = NumpyAdagrad(param, **hp)
    opt = Adagrad(param, **hp)
    for idx, vals in make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, 3):
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    assert_close(opt.state_dict()["state"]["sum"], ref.s, dtype)
    assert opt.state_dict()["step"] == n_steps


# --------------------------------------------------------------------------- #
# focused behaviours
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_steps_advance_lr_decay(rng, dtype):
    param = random_param(rng, 8, (), dtype)
    p0 = param.copy()
    opt = Adagrad(param, lr=0.5, lr_decay=1.0)
    for _ in range(3):
        opt.step(*empty_step((), dtype, np.int64))
    assert np.array_equal(param, p0)
    assert opt.state_dict()["step"] == 3
    idx = np.array([2, 5, 2], dtype=np.int32)
    vals = np.array([1.0, -2.0, 0.5], dtype=dtype)
    opt.step(idx, vals)
    # t = 4 -> clr = 0.5 / (1 + 3) ; g = [1.5, -2]; s = g^2 ; p -= clr * g / |g|
    expect = p0.copy()
    expect[2] -= dtype(0.125) * dtype(1.5) / (np.sqrt(dtype(2.25)) + dtype(1e-10))
    expect[5] -= dtype(0.125) * dtype(-2.0) / (np.sqrt(dtype(4.0)) + dtype(1e-10))
    assert_close(param, expect, dtype)
    # the t=1 answer (empty steps ignored) would be 4x larger: make sure we are not there
    assert abs(float(param[2] - p0[2])) < 0.2


def test_sum_initialised_to_initial_accumulator_value(rng):
    param = random_param(rng, 10, (2,), np.float64)
    opt = Adagrad(param, lr=0.1, initial_accumulator_value=0.75)
    opt.step(np.array([3], dtype=np.int64), np.array([[1.0, 2.0]]))
    s = opt.state_dict()["state"]["sum"]
    assert s.shape == param.shape and s.dtype == param.dtype
    expect = np.full_like(param, 0.75)
    expect[3] = [1.75, 4.75]
    assert np.array_equal(s, expect)


def test_duplicates_are_coalesced_before_squaring(rng):
    param = np.zeros(4, dtype=np.float64)
    opt = Adagrad(param, lr=1.0, eps=0.0)
    opt.step(np.array([1, 1], dtype=np.int64), np.array([1.0, 1.0]))
    # coalesced: g = 2, s = 4, p = -2/2 = -1 ; per-entry would give s = 2
    assert opt.state_dict()["state"]["sum"][1] == 4.0
    assert param[1] == -1.0
    assert np.array_equal(param[[0, 2, 3]], [0.0, 0.0, 0.0])


def test_untouched_rows_bit_identical(rng):
    param = random_param(rng, 80, (3,), np.float32)
    p0 = param.copy()
    opt = Adagrad(param, lr=0.1, initial_accumulator_value=0.2)
    rows = np.array([0, 40, 79, 0], dtype=np.int64)
    for _ in range(4):
        opt.step(rows, rng.standard_normal((4, 3)).astype(np.float32))
    mask = np.ones(80, dtype=bool)
    mask[[0, 40, 79]] = False
    assert np.array_equal(param[mask], p0[mask])
    assert np.all(opt.state_dict()["state"]["sum"][mask] == np.float32(0.2))
    assert not np.array_equal(param[~mask], p0[~mask])


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
def test_state_dict_contents(rng):
    param = random_param(rng, 12, (3,), np.float32)
    opt = Adagrad(param, lr=0.1)
    opt.step(np.array([1, 2], dtype=np.int64), np.ones((2, 3), dtype=np.float32))
    sd = opt.state_dict()
    assert sd["step"] == 1 and isinstance(sd["step"], int)
    assert isinstance(sd["hyperparams"], dict)
    assert set(sd["state"]) == {"sum"}
    s = sd["state"]["sum"]
    assert isinstance(s, np.ndarray) and s.shape == param.shape and s.dtype == np.float32


def test_state_dict_returns_copies(rng):
    param = random_param(rng, 6, (), np.float64)
    opt = Adagrad(param, lr=0.1)
    opt.step(np.array([1, 2], dtype=np.int64), np.ones(2))
    sd = opt.state_dict()
    keep = sd["state"]["sum"].copy()
    sd["state"]["sum"][...] = -5.0
    assert np.array_equal(opt.state_dict()["state"]["sum"], keep)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_round_trip_bit_identical(rng, dtype):
    num_rows, row_shape = 30, (2, 2)
    hp = dict(lr=0.1, lr_decay=0.02, eps=1e-9, initial_accumulator_value=0.3)
    param = random_param(rng, num_rows, row_shape, dtype)
    steps = make_steps(rng, num_rows, 12, row_shape, dtype, np.int64, empty_every=4)
    k = 5
    opt = Adagrad(param, **hp)
    for idx, vals in steps[:k]:
        opt.step(idx, vals)
    opt.lr = 0.07
    saved = opt.state_dict()
    saved_param = param.copy()
    for idx, vals in steps[k:]:
        opt.step(idx, vals)

    param2 = saved_param.copy()
    opt2 = Adagrad(param2, **hp)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.07
    assert opt2.state_dict()["step"] == k
    for idx, vals in steps[k:]:
        opt2.step(idx, vals)
    assert np.array_equal(param2, param)
    assert np.array_equal(opt2.state_dict()["state"]["sum"], opt.state_dict()["state"]["sum"])
    assert opt2.state_dict()["step"] == opt.state_dict()["step"] == len(steps)


def test_load_state_dict_copies_arrays(rng):
    param = random_param(rng, 6, (), np.float64)
    opt = Adagrad(param, lr=0.1)
    opt.step(np.array([0], dtype=np.int64), np.ones(1))
    sd = opt.state_dict()
    other = Adagrad(np.zeros(6), lr=0.1)
    other.load_state_dict(sd)
    sd["state"]["sum"][...] = 9.0
    assert not np.any(other.state_dict()["state"]["sum"] == 9.0)
