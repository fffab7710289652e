"""sparseopt.optim.SGD, mode="lazy".

Without momentum: torch.optim.SGD with a sparse gradient (p -= lr * coalesced g).
With momentum (lazy): each row follows torch's *dense* SGD formula over only
the steps that touch it (NumPy reference below):
    first touch:  buf = g                      (no dampening)
    later:        buf = momentum*buf + (1-dampening)*g
    d = g + momentum*buf if nesterov else buf;   p -= lr*d
Untouched rows keep param and buffer; row_steps counts touches per row.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt.optim import SGD

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



class NumpyLazyMomentumSGD:
    def __init__(self, param, lr, momentum=0.0, dampening=0.0, nesterov=False):
        self.p = np.array(param, copy=True)
        self.buf = np.zeros_like(self.p)
        self.row_steps = np.zeros(self.p.shape[0], dtype=np.int64)
        self.lr, self.momentum, self.dampening, self.nesterov = lr, momentum, dampening, nesterov
        self.t = 0

    def step(self, idx, vals):
        self.t += 1
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        if self.momentum == 0:
            self.p[u] = self.p[u] - dt(self.lr) * g
            return
        first = self.row_steps[u] == 0
        b = self.buf[u]
        b_new = np.where(
            first.reshape((-1,) + (1,) * (g.ndim - 1)),
            g,
            b * dt(self.momentum) + g * dt(1 - self.dampening),
        )
        self.buf[u] = b_new
        self.row_steps[u] += 1
        d = g + dt(self.momentum) * b_new if self.nesterov else b_new
        self.p[u] = self.p[u] - dt(self.lr) * d


def run_torch_sgd(torch, p0, steps, lrs=None, **kw):
    p = torch.nn.Parameter(torch.from_numpy(np.array(p0, copy=True)))
    opt = torch.optim.SGD([p], **kw)
    out = []
    with torch.sparse.check_sparse_tensor_invariants(True):
        for s, (idx, vals) in enumerate(steps):
            if lrs is not None:
                opt.param_groups[0]["lr"] = lrs[s]
            idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(1, -1).copy())
            p.grad = torch.sparse_coo_tensor(idx_t, torch.from_numpy(vals.copy()), p.shape)
            opt.step()
            out.append(p.detach().numpy().copy())
    return out



# --------------------------------------------------------------------------- #
# plain SGD against torch
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_plain_sgd_matches_torch(torch, rng, dtype, index_dtype, row_shape):
    num_rows, n_steps = 50, 30
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=5, hot_rows=2
    )
    ref = run_torch_sgd(torch, p0, steps, lr=0.05)
    opt = SGD(param, lr=0.05)
    assert opt.param is param
    for s, (idx, vals) in enumerate(steps):
        opt.step(idx, vals)
        assert_close(param, ref[s], dtype, err_msg=f"step {s}")
        assert opt.state_dict()["step"] == s + 1
    assert np.array_equal(param[:2], p0[:2])


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_plain_sgd_lr_schedule_matches_torch(torch, rng, dtype):
    num_rows, n_steps = 30, 25
    param = random_param(rng, num_rows, (3,), dtype)
    steps = make_steps(rng, num_rows, n_steps, (3,), dtype, np.int64)
    lrs = [0.1 / (1 + s) for s in range(n_steps)]
    ref = run_torch_sgd(torch, param.copy(), steps, lrs=lrs, lr=lrs[0])
    opt = SGD(param, lr=lrs[0])
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        assert_close(param, ref[s], dtype, err_msg=f"step {s}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_plain_sgd_exact_small_case(dtype):
    param = np.arange(5, dtype=dtype)
    opt = SGD(param, lr=0.5)
    opt.step(np.array([4, 1, 4], dtype=np.int32), np.array([1.0, 2.0, 3.0], dtype=dtype))
    assert np.array_equal(param, np.array([0.0, 0.0, 2.0, 3.0, 2.0], dtype=dtype))
    assert param.dtype == np.dtype(dtype)


# --------------------------------------------------------------------------- #
# momentum, lazy (NumPy reference)
# --------------------------------------------------------------------------- #
MOMENTUM_CONFIGS = [
    dict(momentum=0.9, dampening=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.3, nesterov=False),
    dict(momentum=0.5, dampening=0.0, nesterov=True),
    dict(momentum=0.99, dampening=1.0, nesterov=False),  # g ignored after the first touch
]
MOMENTUM_IDS = ["heavy_ball", "dampened", "nesterov", "full_dampening"]


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cfg", MOMENTUM_CONFIGS, ids=MOMENTUM_IDS)
def test_lazy_momentum_matches_numpy(rng, dtype, row_shape, cfg):
    num_rows, n_steps = 40, 40
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    ref = NumpyLazyMomentumSGD(param, lr=0.05, **cfg)
    opt = SGD(param, lr=0.05, mode="lazy", **cfg)
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, np.int64, empty_every=6, hot_rows=3
    )
    for s, (idx, vals) in enumerate(steps):
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"param, step {s}")
        sd = opt.state_dict()
        assert sd["step"] == s + 1
        assert_close(sd["state"]["momentum_buffer"], ref.buf, dtype, err_msg=f"buf, step {s}")
        assert np.array_equal(sd["state"]["row_steps"], ref.row_steps), f"row_steps, step {s}"
    assert np.array_equal(param[:3], p0[:3])
    sd = opt.state_dict()
    assert np.array_equal(sd["state"]["row_steps"][:3], [0, 0, 0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_lazy_momentum_lr_schedule(rng, dtype):
    num_rows, n_steps = 30, 30
    param = random_param(rng, num_rows, (2,), dtype)
    ref = NumpyLazyMomentumSGD(param, lr=0.1, momentum=0.8, dampening=0.1)
    opt = SGD(param, lr=0.1, momentum=0.8, dampening=0.1)
    for s, (idx, vals) in enumerate(make_steps(rng, num_rows, n_steps, (2,), dtype, np.int32)):
        lr = 0.1 * (1 + s % 3)
        opt.lr = lr
        ref.lr = lr
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"step {s}")


def test_first_touch_buffer_is_undampened():
    param = np.zeros((6, 2), dtype=np.float64)
    opt = SGD(param, lr=0.5, momentum=0.9, dampening=0.5)
    idx = np.array([3, 3, 1], dtype=np.int64)
    vals = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, -0.5]])
    opt.step(idx, vals)
    sd = opt.state_dict()
    buf, rs = sd["state"]["momentum_buffer"], sd["state"]["row_steps"]
    assert np.array_equal(buf[3], [4.0, 6.0])  # coalesced, not dampened
    assert np.array_equal(buf[1], [0.5, -0.5])
    assert np.array_equal(param[3], [-2.0, -3.0])
    assert np.array_equal(param[1], [-0.25, 0.25])
    assert rs.dtype == np.int64 and rs.shape == (6,)
    assert np.array_equal(rs, [0, 1, 0, 1, 0, 0])  # duplicates count once per step
    # second touch of row 3 only: buf = 0.9*buf + 0.5*g
    opt.step(np.array([3], dtype=np.int64), np.array([[2.0, 2.0]]))
    sd = opt.state_dict()
    assert np.allclose(sd["state"]["momentum_buffer"][3], [0.9 * 4 + 1.0, 0.9 * 6 + 1.0], rtol=1e-15)
    assert np.array_equal(sd["state"]["momentum_buffer"][1], [0.5, -0.5])
    assert np.array_equal(param[1], [-0.25, 0.25])  # untouched: no momentum drift
    assert np.array_equal(sd["state"]["row_steps"], [0, 1, 0, 2, 0, 0])


def test_nesterov_small_case():
    param = np.zeros(3, dtype=np.float64)
    opt = SGD(param, lr=1.0, momentum=0.5, nesterov=True)
    opt.step(np.array([0], dtype=np.int64), np.array([2.0]))
    # buf = 2 ; d = g + m*buf = 3
    assert param[0] == -3.0
    opt.step(np.array([0], dtype=np.int64), np.array([2.0]))
    # buf = 0.5*2 + 2 = 3 ; d = 2 + 1.5 = 3.5
    assert param[0] == -6.5
    assert np.array_equal(param[1:], [0.0, 0.0])


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cfg", MOMENTUM_CONFIGS[:3], ids=MOMENTUM_IDS[:3])
def test_momentum_all_rows_touched_equals_torch_dense(torch, rng, dtype, cfg):
    """When every step touches every row, lazy momentum is dense torch SGD."""
    num_rows, n_steps, row_shape = 20, 25, (3,)
    param = random_param(rng, num_rows, row_shape, dtype)
    p_t = torch.nn.Parameter(torch.from_numpy(param.copy()))
    topt = torch.optim.SGD([p_t], lr=0.05, **cfg)
    opt = SGD(param, lr=0.05, **cfg)
    for s in range(n_steps):
        extra = rng.integers(0, num_rows, size=15)
        idx = np.concatenate([rng.permutation(num_rows), extra]).astype(np.int64)
        vals = rng.standard_normal((len(idx), *row_shape)).astype(dtype)
        dense = np.zeros_like(param)
        np.add.at(dense, idx, vals)
        p_t.grad = torch.from_numpy(dense)
        topt.step()
        opt.step(idx, vals)
        assert_close(param, p_t.detach().numpy(), dtype, err_msg=f"step {s}")
    assert_close(
        opt.state_dict()["state"]["momentum_buffer"],
        topt.state[p_t]["momentum_buffer"].numpy(),
        dtype,
    )
    assert np.array_equal(opt.state_dict()["state"]["row_steps"], np.full(num_rows, n_steps))


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 25),
    n_steps=st.integers(1, 12),
    row_shape=st.sampled_from(ROW_SHAPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    cfg=st.sampled_from(MOMENTUM_CONFIGS[:3] + [dict(momentum=0.0, dampening=0.0, nesterov=False)]),
)
def test_random_sequences_match_numpy(seed, num_rows, n_steps, row_shape, dtype, index_dtype, cfg):
    rng = np.random.default_rng(seed)
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyLazyMomentumSGD(param, lr=0.1, **cfg)
    opt = SGD(param, lr=0.1, **cfg)
    for idx, vals in make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, 3):
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    sd = opt.state_dict()
    assert sd["step"] == n_steps
    if cfg["momentum"] != 0:
        assert_close(sd["state"]["momentum_buffer"], ref.buf, dtype)
        assert np.array_equal(sd["state"]["row_steps"], ref.row_steps)


# --------------------------------------------------------------------------- #
# empty steps, laziness, zero copy
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("row_shape", [(), (3,)], ids=lambda s: f"row{s}")
def test_empty_step(rng, momentum, row_shape):
    param = random_param(rng, 10, row_shape, np.float64)
    opt = SGD(param, lr=0.1, momentum=momentum)
    opt.step(np.array([1, 2], dtype=np.int64), np.ones((2, *row_shape)))
    p1 = param.copy()
    sd1 = opt.state_dict()
    opt.step(*empty_step(row_shape, np.float64, np.int64))
    opt.step(*empty_step(row_shape, np.float64, np.int32))
    assert np.array_equal(param, p1)
    sd2 = opt.state_dict()
    assert sd2["step"] == sd1["step"] + 2 == 3
    for k in sd1["state"]:
        assert np.array_equal(sd2["state"][k], sd1["state"][k]), k


def test_untouched_rows_keep_param_and_buffer(rng):
    param = random_param(rng, 50, (4,), np.float32)
    opt = SGD(param, lr=0.1, momentum=0.9)
    opt.step(np.array([1, 7, 7], dtype=np.int64), rng.standard_normal((3, 4)).astype(np.float32))
    p1 = param.copy()
    buf1 = opt.state_dict()["state"]["momentum_buffer"]
    for _ in range(5):
        opt.step(np.array([20, 30], dtype=np.int64), rng.standard_normal((2, 4)).astype(np.float32))
    mask = np.ones(50, dtype=bool)
    mask[[20, 30]] = False
    assert np.array_equal(param[mask], p1[mask])  # no momentum drift on rows 1 and 7
    assert np.array_equal(opt.state_dict()["state"]["momentum_buffer"][mask], buf1[mask])
    assert np.array_equal(opt.state_dict()["state"]["row_steps"][[1, 7, 20, 30]], [1, 1, 5, 5])


def test_zero_copy(rng):
    param = random_param(rng, 10, (2,), np.float64)
    p0 = param.copy()
    opt = SGD(param, lr=1.0)
    assert opt.param is param
    opt.step(np.array([4], dtype=np.int64), np.array([[1.0, 1.0]]))
    assert np.array_equal(param[4], p0[4] - 1.0)
    assert opt.param is param


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_contents_momentum(rng, dtype):
    param = random_param(rng, 9, (2, 2), dtype)
    opt = SGD(param, lr=0.1, momentum=0.9)
    opt.step(np.array([0, 8, 0], dtype=np.int64), np.ones((3, 2, 2), dtype=dtype))
    sd = opt.state_dict()
    assert sd["step"] == 1 and isinstance(sd["step"], int)
    assert isinstance(sd["hyperparams"], dict)
    assert set(sd["state"]) == {"momentum_buffer", "row_steps"}
    buf, rs = sd["state"]["momentum_buffer"], sd["state"]["row_steps"]
    assert buf.shape == param.shape and buf.dtype == param.dtype
    assert rs.shape == (9,) and rs.dtype == np.int64


def test_state_dict_returns_copies(rng):
    param = random_param(rng, 6, (), np.float64)
    opt = SGD(param, lr=0.1, momentum=0.5)
    opt.step(np.array([1, 2], dtype=np.int64), np.ones(2))
    sd = opt.state_dict()
    keep = {k: v.copy() for k, v in sd["state"].items()}
    for v in sd["state"].values():
        v[...] = 42
    sd2 = opt.state_dict()
    for k, v in keep.items():
        assert np.array_equal(sd2["state"][k], v), k


@pytest.mark.parametrize("cfg", MOMENTUM_CONFIGS[:3] + [dict(momentum=0.0)], ids=MOMENTUM_IDS[:3] + ["plain"])
def test_state_dict_round_trip_bit_identical(rng, cfg):
    num_rows, row_shape, dtype = 30, (3,), np.float32
    param = random_param(rng, num_rows, row_shape, dtype)
    steps = make_steps(rng, num_rows, 14, row_shape, dtype, np.int64, empty_every=4)
    k = 6
    opt = SGD(param, lr=0.05, **cfg)
    for idx, vals in steps[:k]:
        opt.step(idx, vals)
    opt.lr = 0.02
    saved = opt.state_dict()
    saved_param = param.copy()
    for idx, vals in steps[k:]:
        opt.step(idx, vals)

    param2 = saved_param.copy()
    opt2 = SGD(param2, lr=0.05, **cfg)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.02
    assert opt2.state_dict()["step"] == k
    for idx, vals in steps[k:]:
        opt2.step(idx, vals)
    assert np.array_equal(param2, param)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["step"] == s2["step"] == len(steps)
    assert set(s1["state"]) == set(s2["state"])
    for name in s1["state"]:
        assert np.array_equal(s1["state"][name], s2["state"][name]), name


def test_load_state_dict_copies_arrays(rng):
    param = random_param(rng, 6, (), np.float64)
    opt = SGD(param, lr=0.1, momentum=0.9)
    opt.step(np.array([0, 1], dtype=np.int64), np.ones(2))
    sd = opt.state_dict()
    other = SGD(np.zeros(6), lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    sd["state"]["momentum_buffer"][...] = 9.0
    sd["state"]["row_steps"][...] = 9
    osd = other.state_dict()
    assert not np.any(osd["state"]["momentum_buffer"] == 9.0)
    assert np.array_equal(osd["state"]["row_steps"], [1, 1, 0, 0, 0, 0])
