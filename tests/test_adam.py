"""sparseopt.optim.Adam, mode="lazy", bias_correction="global".

References: torch.optim.SparseAdam, and a plain NumPy transcription of its
formula (per touched, coalesced row):
    m += (1-b1)(g-m);  v += (1-b2)(g^2-v)
    p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps),  t = global step count
Untouched rows keep param and state.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt.optim import Adam

from _helpers import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    coalesce_ref,
    make_steps,
    random_param,
)


# --------------------------------------------------------------------------- #
# references
# --------------------------------------------------------------------------- #

class NumpyLazyAdam:
    def __init__(self, param, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.p = np.array(param, copy=True)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.t = 0
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps

    def step(self, idx, vals):
        self.t += 1
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        m_old, v_old = self.m[u], self.v[u]
        m_new = m_old + (g - m_old) * dt(1 - self.b1)
        v_new = v_old + (g * g - v_old) * dt(1 - self.b2)
        self.m[u] = m_new
        self.v[u] = v_new
        step_size = self.lr * math.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        self.p[u] = self.p[u] - dt(step_size) * (m_new / (np.sqrt(v_new) + dt(self.eps)))


def run_torch(torch, p0, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, lrs=None):
    """torch.optim.SparseAdam; returns [(param, exp_avg, exp_avg_sq)] after each step."""
    p = torch.nn.Parameter(torch.from_numpy(np.array(p0, copy=True)))
    opt = torch.optim.SparseAdam([p], lr=lr, betas=betas, eps=eps)
    out = []
    with torch.sparse.check_sparse_tensor_invariants(True):
        for s, (idx, vals) in enumerate(steps):
            if lrs is not None:
                opt.param_groups[0]["lr"] = lrs[s]
            idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(1, -1).copy())
            p.grad = torch.sparse_coo_tensor(idx_t, torch.from_numpy(vals.copy()), p.shape)
            opt.step()
            st_ = opt.state[p]
            out.append(
                (
                    p.detach().numpy().copy(),
                    st_["exp_avg"].numpy().copy(),
                    st_["exp_avg_sq"].numpy().copy(),
                )
            )
    return out



# --------------------------------------------------------------------------- #
# against torch.optim.SparseAdam
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_torch_sparse_adam(torch, rng, dtype, index_dtype, row_shape):
    num_rows, n_steps = 50, 60
    lr, betas, eps = 1e-2, (0.9, 0.999), 1e-8
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=7, hot_rows=3
    )
    ref = run_torch(torch, p0, steps, lr, betas, eps)

    opt = Adam(param, lr=lr, betas=betas, eps=eps, mode="lazy", bias_correction="global")
    assert opt.param is param
    for s, (idx, vals) in enumerate(steps):
        opt.step(idx, vals)
        p_ref, m_ref, v_ref = ref[s]
        assert_close(param, p_ref, dtype, err_msg=f"param, step {s}")
        sd = opt.state_dict()
        assert sd["step"] == s + 1
        assert_close(sd["state"]["exp_avg"], m_ref, dtype, err_msg=f"exp_avg, step {s}")
        assert_close(sd["state"]["exp_avg_sq"], v_ref, dtype, err_msg=f"exp_avg_sq {s}")
    # rows 0..2 were never touched: bit-identical, state still zero
    assert np.array_equal(param[:3], p0[:3])
    sd = opt.state_dict()
    assert not np.any(sd["state"]["exp_avg"][:3])
    assert not np.any(sd["state"]["exp_avg_sq"][:3])
    assert param.dtype == np.dtype(dtype)


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_lr_changing_every_step_matches_torch(torch, rng, dtype):
    num_rows, n_steps = 40, 50
    param = random_param(rng, num_rows, (3,), dtype)
    p0 = param.copy()
    steps = make_steps(rng, num_rows, n_steps, (3,), dtype, np.int64, empty_every=9)
    lrs = [0.05 * (0.5 + 0.5 * math.cos(0.3 * s)) + 1e-4 for s in range(n_steps)]
    betas, eps = (0.8, 0.99), 1e-6
    ref = run_torch(torch, p0, steps, lrs[0], betas, eps, lrs=lrs)

    opt = Adam(param, lr=lrs[0], betas=betas, eps=eps)
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        assert opt.lr == lrs[s]
        opt.step(idx, vals)
        assert_close(param, ref[s][0], dtype, err_msg=f"step {s}")
    sd = opt.state_dict()
    assert_close(sd["state"]["exp_avg"], ref[-1][1], dtype)
    assert_close(sd["state"]["exp_avg_sq"], ref[-1][2], dtype)


@pytest.mark.requires_torch
def test_defaults_match_torch(torch, rng):
    """Adam(param) uses lr=1e-3, betas=(0.9, 0.999), eps=1e-8, like SparseAdam."""
    param = random_param(rng, 30, (2,), np.float64)
    p0 = param.copy()
    steps = make_steps(rng, 30, 20, (2,), np.float64, np.int64)
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    topt = torch.optim.SparseAdam([p])
    opt = Adam(param)
    with torch.sparse.check_sparse_tensor_invariants(True):
        for idx, vals in steps:
            p.grad = torch.sparse_coo_tensor(
                torch.from_numpy(idx.astype(np.int64).reshape(1, -1)),
                torch.from_numpy(vals.copy()),
                p.shape,
            )
            topt.step()
            opt.step(idx, vals)
    assert_close(param, p.detach().numpy(), np.float64)
    assert opt.lr == 1e-3


# --------------------------------------------------------------------------- #
# against the NumPy formula
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_numpy_formula_with_lr_schedule(rng, dtype, row_shape):
    num_rows, n_steps = 60, 80
    betas, eps = (0.85, 0.995), 1e-7
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyLazyAdam(param, lr=0.02, betas=betas, eps=eps)
    opt = Adam(param, lr=0.02, betas=betas, eps=eps)
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, np.int32, empty_every=11, hot_rows=5
    )
    for s, (idx, vals) in enumerate(steps):
        lr = 0.02 / (1 + 0.1 * s)
        opt.lr = lr
        ref.lr = lr
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"param, step {s}")
    sd = opt.state_dict()
    assert sd["step"] == n_steps
    assert_close(sd["state"]["exp_avg"], ref.m, dtype)
    assert_close(sd["state"]["exp_avg_sq"], ref.v, dtype)
    assert np.array_equal(param[:5], ref.p[:5])  # untouched: exactly the start values


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 30),
    n_steps=st.integers(1, 15),
    row_shape=st.sampled_from(ROW_SHAPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    b1=st.sampled_from([0.0, 0.5, 0.9]),
    b2=st.sampled_from([0.0, 0.9, 0.999]),
)
def test_random_sequences_match_numpy(
    seed, num_rows, n_steps, row_shape, dtype, index_dtype, b1, b2
):
    rng = np.random.default_rng(seed)
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyLazyAdam(param, lr=0.01, betas=(b1, b2), eps=1e-8)
    opt = Adam(param, lr=0.01, betas=(b1, b2), eps=1e-8)
    steps = make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=4)
    for idx, vals in steps:
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    sd = opt.state_dict()
    assert_close(sd["state"]["exp_avg"], ref.m, dtype)
    assert_close(sd["state"]["exp_avg_sq"], ref.v, dtype)
    assert sd["step"] == n_steps


# --------------------------------------------------------------------------- #
# focused behaviours
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_step_counts_for_bias_correction(rng, dtype, empty_step):
    param = random_param(rng, 10, (3,), dtype)
    p0 = param.copy()
    opt = Adam(param, lr=0.1)
    opt.step(*empty_step((3,), dtype, np.int64))
    assert np.array_equal(param, p0)
    sd = opt.state_dict()
    assert sd["step"] == 1
    assert not np.any(sd["state"]["exp_avg"]) and not np.any(sd["state"]["exp_avg_sq"])

    idx = np.array([4, 7, 4], dtype=np.int64)
    vals = rng.standard_normal((3, 3)).astype(dtype)
    opt.step(idx, vals)
    # reference with t = 2 (the empty step counted) ...
    ref = NumpyLazyAdam(p0, lr=0.1)
    ref.t = 1
    ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    # ... which is far from the t = 1 result (so the test can tell them apart)
    ref1 = NumpyLazyAdam(p0, lr=0.1)
    ref1.step(idx, vals)
    assert not np.allclose(ref.p[[4, 7]], ref1.p[[4, 7]], rtol=1e-3, atol=0)
    assert opt.state_dict()["step"] == 2


def test_duplicates_equal_summed_gradient(rng):
    param = random_param(rng, 8, (4,), np.float64)
    p_dup, p_sum = param.copy(), param.copy()
    a, b = Adam(p_dup, lr=0.05), Adam(p_sum, lr=0.05)
    idx = np.array([3, 1, 3, 3, 6, 1], dtype=np.int64)
    vals = rng.standard_normal((6, 4))
    u, g = coalesce_ref(idx, vals)[:2]
    for _ in range(3):
        a.step(idx, vals)
        b.step(u, g)
    assert_close(p_dup, p_sum, np.float64)
    # and it is *not* the same as applying each duplicate as its own row update
    c_param = param.copy()
    c = Adam(c_param, lr=0.05)
    for _ in range(3):
        for j in range(len(idx)):
            c.step(idx[j : j + 1], vals[j : j + 1])
    assert not np.allclose(c_param, p_sum, rtol=1e-6)


def test_untouched_rows_bit_identical(rng):
    param = random_param(rng, 100, (5,), np.float32)
    p0 = param.copy()
    opt = Adam(param, lr=0.1)
    touched = np.array([2, 50, 99, 50], dtype=np.int64)
    for _ in range(5):
        opt.step(touched, rng.standard_normal((4, 5)).astype(np.float32))
    mask = np.ones(100, dtype=bool)
    mask[[2, 50, 99]] = False
    assert np.array_equal(param[mask], p0[mask])
    assert not np.array_equal(param[[2, 50, 99]], p0[[2, 50, 99]])
    sd = opt.state_dict()
    assert not np.any(sd["state"]["exp_avg"][mask])
    assert not np.any(sd["state"]["exp_avg_sq"][mask])


def test_zero_copy_param_updated_in_place(rng):
    param = random_param(rng, 20, (2,), np.float64)
    p0 = param.copy()
    opt = Adam(param, lr=0.1)
    assert opt.param is param
    opt.step(np.array([0, 5], dtype=np.int64), np.ones((2, 2)))
    assert opt.param is param
    # the update happened in *our* array (not in a private copy)
    assert not np.array_equal(param[[0, 5]], p0[[0, 5]])
    assert np.array_equal(np.delete(param, [0, 5], axis=0), np.delete(p0, [0, 5], axis=0))
    # a later in-place change by the user is seen by the optimizer
    param[1] = 10.0
    opt.lr = 0.0
    opt.step(np.array([1], dtype=np.int64), np.ones((1, 2)))
    assert np.array_equal(param[1], [10.0, 10.0])


def test_lr_property(rng):
    param = random_param(rng, 5, (), np.float64)
    opt = Adam(param, lr=0.25)
    assert opt.lr == 0.25
    opt.lr = 0.125
    assert opt.lr == 0.125
    opt.lr = 0.0  # zero is a valid learning rate (no-op update of param)
    p0 = param.copy()
    opt.step(np.array([1, 2], dtype=np.int64), np.array([1.0, -1.0]))
    assert np.array_equal(param, p0)
    assert np.any(opt.state_dict()["state"]["exp_avg"])


def test_bias_correction_global_is_default(rng):
    p1 = random_param(rng, 20, (3,), np.float64)
    p2 = p1.copy()
    a = Adam(p1, lr=0.05)
    b = Adam(p2, lr=0.05, mode="lazy", bias_correction="global")
    for idx, vals in make_steps(rng, 20, 10, (3,), np.float64, np.int64, empty_every=3):
        a.step(idx, vals)
        b.step(idx, vals)
    assert np.array_equal(p1, p2)


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_contents(rng, dtype):
    param = random_param(rng, 12, (2, 3), dtype)
    opt = Adam(param, lr=0.01)
    for idx, vals in make_steps(rng, 12, 4, (2, 3), dtype, np.int64):
        opt.step(idx, vals)
    sd = opt.state_dict()
    assert set(sd) >= {"step", "hyperparams", "state"}
    assert isinstance(sd["step"], int) and sd["step"] == 4
    assert isinstance(sd["hyperparams"], dict)
    assert set(sd["state"]) == {"exp_avg", "exp_avg_sq"}
    for name, arr in sd["state"].items():
        assert isinstance(arr, np.ndarray), name
        assert arr.shape == param.shape and arr.dtype == param.dtype, name
        assert not np.shares_memory(arr, param), name
    assert np.all(sd["state"]["exp_avg_sq"] >= 0)


def test_state_dict_returns_copies(rng):
    param = random_param(rng, 10, (2,), np.float64)
    opt = Adam(param, lr=0.01)
    opt.step(np.array([1, 3, 1], dtype=np.int64), rng.standard_normal((3, 2)))
    sd = opt.state_dict()
    keep = {k: v.copy() for k, v in sd["state"].items()}
    for v in sd["state"].values():
        v[...] = 123.0
    sd["step"] = 99
    sd2 = opt.state_dict()
    assert sd2["step"] == 1
    for k, v in keep.items():
        assert np.array_equal(sd2["state"][k], v), k


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_round_trip_bit_identical(rng, dtype):
    num_rows, row_shape = 30, (4,)
    param = random_param(rng, num_rows, row_shape, dtype)
    steps = make_steps(rng, num_rows, 14, row_shape, dtype, np.int64, empty_every=5)
    k = 6
    opt = Adam(param, lr=0.03, betas=(0.8, 0.99), eps=1e-6)
    for s, (idx, vals) in enumerate(steps[:k]):
        opt.lr = 0.03 / (1 + s)
        opt.step(idx, vals)
    saved = opt.state_dict()
    saved_param = param.copy()
    for idx, vals in steps[k:]:
        opt.step(idx, vals)

    param2 = saved_param.copy()
    opt2 = Adam(param2, lr=0.5, betas=(0.8, 0.99), eps=1e-6)  # lr is restored by load
    opt2.load_state_dict(saved)
    assert opt2.lr == opt.lr == 0.03 / k
    assert opt2.state_dict()["step"] == k
    for idx, vals in steps[k:]:
        opt2.step(idx, vals)
    assert np.array_equal(param2, param)
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["step"] == sd2["step"] == len(steps)
    for name in ("exp_avg", "exp_avg_sq"):
        assert np.array_equal(sd1["state"][name], sd2["state"][name]), name


def test_load_state_dict_copies_arrays(rng):
    param = random_param(rng, 10, (2,), np.float64)
    opt = Adam(param, lr=0.01)
    opt.step(np.array([1, 2], dtype=np.int64), rng.standard_normal((2, 2)))
    sd = opt.state_dict()
    other = Adam(np.zeros_like(param), lr=0.01)
    other.load_state_dict(sd)
    sd["state"]["exp_avg"][...] = 7.0
    assert not np.any(other.state_dict()["state"]["exp_avg"] == 7.0)
    assert other.state_dict()["step"] == 1


# --------------------------------------------------------------------------- #
# bias_correction="row" / "none" (lazy)
# --------------------------------------------------------------------------- #
class NumpyLazyAdamBias(NumpyLazyAdam):
    """SparseAdam's row update with the bias-correction count t chosen per row:
    "row": t = number of steps that touched the row (this one included);
    "none": no correction (step size = lr)."""

    def __init__(self, param, bias_correction, **kw):
        super().__init__(param, **kw)
        self.bias_correction = bias_correction
        self.row_steps = np.zeros(self.p.shape[0], dtype=np.int64)

    def step(self, idx, vals):
        self.t += 1
        u, g = coalesce_ref(idx, vals)[:2]
        dt = self.p.dtype.type
        for r, gr in zip(u, g):
            self.row_steps[r] += 1
            m = self.m[r] + (gr - self.m[r]) * dt(1 - self.b1)
            v = self.v[r] + (gr * gr - self.v[r]) * dt(1 - self.b2)
            self.m[r], self.v[r] = m, v
            if self.bias_correction == "none":
                size = self.lr
            else:
                t = int(self.row_steps[r])
                size = self.lr * math.sqrt(1 - self.b2**t) / (1 - self.b1**t)
            self.p[r] = self.p[r] - dt(size) * (m / (np.sqrt(v) + dt(self.eps)))


@pytest.mark.parametrize("bias_correction", ["row", "none"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_row_and_no_bias_correction_match_numpy(rng, dtype, index_dtype, bias_correction):
    p0 = random_param(rng, 40, (3,), dtype)
    param = p0.copy()
    opt = Adam(param, lr=0.05, bias_correction=bias_correction)
    ref = NumpyLazyAdamBias(p0, bias_correction, lr=0.05)
    steps = make_steps(rng, 40, 60, (3,), dtype, index_dtype, empty_every=7, hot_rows=5)
    for idx, vals in steps:
        opt.step(idx, vals)
        ref.step(idx, vals)
    state = opt.state_dict()["state"]
    assert_close(param, ref.p)
    assert_close(state["exp_avg"], ref.m)
    assert_close(state["exp_avg_sq"], ref.v)
    if bias_correction == "row":
        np.testing.assert_array_equal(state["row_steps"], ref.row_steps)
    else:
        assert "row_steps" not in state


def test_row_bias_correction_gives_a_late_row_a_first_step_of_lr(rng):
    """A row first touched after many steps moves by ~lr (m/sqrt(v) = sign(g) on a first
    touch), where the global count shrinks that first step by sqrt(1-b2^t)/(1-b1^t)."""
    lr, late = 0.01, 2000
    moved = {}
    for bias_correction in ("row", "global"):
        param = np.zeros((2, 1))
        opt = Adam(param, lr=lr, eps=0.0, bias_correction=bias_correction)
        for _ in range(late):
            opt.step(np.array([0]), np.array([[1.0]]))
        opt.step(np.array([1]), np.array([[3.0]]))
        moved[bias_correction] = -param[1, 0]
    assert moved["row"] == pytest.approx(lr, rel=1e-12)
    t = late + 1
    expected_global = lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * 0.1 / math.sqrt(0.001)
    assert moved["global"] == pytest.approx(expected_global, rel=1e-12)
    assert moved["global"] > 2 * moved["row"]
