"""sparseopt.optim.SGD: mode="exact", and lazy weight decay.

mode="exact": after any steps and ``opt.flush()``, ``param`` and ``momentum_buffer`` equal
those of the DENSE ``torch.optim.SGD`` fed, every step, the densified gradient (zeros for
untouched rows; an empty step is an all-zero gradient step). torch's dense step:
    g = g + wd*p                              (weight_decay)
    buf = g (torch's first step)  else  buf = mu*buf + (1-dampening)*g
    d = g + mu*buf if nesterov else buf;  p -= lr*d
The buffer is created at the optimizer's first step, for every row at once (so a row first
touched later has its gradient dampened). Tolerance: float32 rtol 1e-5, float64 rtol 1e-9.
SGD(momentum>0, weight_decay>0, mode="exact") may be refused (ValueError at construction)
or implemented (then it must match torch).

Lazy weight decay (NumPy reference): g' = g + wd*p on touched rows only, then the lazy SGD
formula (each row follows the dense formula over only the steps that touch it, buffer = g'
at the row's first touch); untouched rows keep param and buffer.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparseopt.optim import SGD

from _helpers import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    assert_close_exact,
    assert_runs_close,
    coalesce_ref,
    lr_schedule,
    make_exact_steps,
    random_param,
    run_sparse,
    run_torch_dense,
)

DTYPE_IDS = lambda d: np.dtype(d).name  # noqa: E731
MOM = ("momentum_buffer",)


class NumpyLazySGD:
    """Lazy SGD with weight decay: every touched row follows torch's dense formula with
    g' = g + wd*p over the steps that touch it (buffer = g' at its first touch)."""

    def __init__(self, p0, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        self.p = np.array(p0, copy=True)
        self.buf = np.zeros_like(self.p)
        self.touched = np.zeros(self.p.shape[0], dtype=bool)
        self.lr, self.mu, self.damp, self.nesterov, self.wd = (
            lr, momentum, dampening, nesterov, weight_decay)

    def step(self, idx, vals):
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        p = self.p[u]
        if self.wd:
            g = g + dt(self.wd) * p
        if self.mu:
            first = (~self.touched[u]).reshape((-1,) + (1,) * (g.ndim - 1))
            b = np.where(first, g, self.buf[u] * dt(self.mu) + g * dt(1 - self.damp))
            self.buf[u] = b
            self.touched[u] = True
            g = g + dt(self.mu) * b if self.nesterov else b
        self.p[u] = p - dt(self.lr) * g


# --------------------------------------------------------------------------- #
# exact momentum vs dense torch
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_exact_momentum_matches_dense_torch(torch, rng, dtype, index_dtype, row_shape):
    num_rows, n = 12, 300
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3,
                             p_touch=0.35, empty_every=9)
    lrs = lr_schedule(rng, n, 0.05)
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(100, 200), **kw)
    opt = SGD(param, mode="exact", **kw)
    got = run_sparse(opt, steps, lrs, checkpoints=(100, 200))
    assert_runs_close(got, ref, dtype, MOM, "SGD momentum")
    assert opt.param is param
    assert np.array_equal(param[:2], p0[:2])  # never touched, no weight decay: never moved
    assert not np.any(opt.state_dict()["state"]["momentum_buffer"][:2])


SGD_OPTIONS = {
    "mom0.9": dict(momentum=0.9),
    "mom0.9_damp0.5": dict(momentum=0.9, dampening=0.5),
    "mom0.99_damp0.9": dict(momentum=0.99, dampening=0.9),
    "nesterov0.9": dict(momentum=0.9, nesterov=True),
    "nesterov0.5": dict(momentum=0.5, nesterov=True),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("first_empty", [False, True], ids=["first_touched", "first_empty"])
@pytest.mark.parametrize("option", sorted(SGD_OPTIONS))
def test_exact_momentum_options_match_dense_torch(torch, rng, option, first_empty):
    """first_empty: torch creates the buffer (all zeros) at the empty first step, so every
    later first touch is dampened: the exact mode must not restart the buffer per row."""
    num_rows, n = 10, 400
    p0 = random_param(rng, num_rows, (3,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (3,), np.float64, np.int64, never=1, cold=4,
                             p_touch=0.3, empty_every=6, first_empty=first_empty)
    lrs = lr_schedule(rng, n, 0.05, kind="random")
    kw = dict(lr=0.05, **SGD_OPTIONS[option])
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(1, 50), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(1, 50))
    assert_runs_close(got, ref, np.float64, MOM, option)


LONG_CASES = {
    "mom0.9_f64_5000": (np.float64, 5000, dict(momentum=0.9)),
    "mom0.99_damp0.5_f64_3000": (np.float64, 3000, dict(momentum=0.99, dampening=0.5)),
    "nesterov_f32_3000": (np.float32, 3000, dict(momentum=0.9, nesterov=True)),
    "mom0.9_f32_3000": (np.float32, 3000, dict(momentum=0.9, dampening=0.1)),
    "wd_f64_3000": (np.float64, 3000, dict(weight_decay=0.01)),
    "wd_f32_3000": (np.float32, 3000, dict(weight_decay=0.05)),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("case", sorted(LONG_CASES))
def test_exact_long_untouched_rows_match_dense_torch(torch, rng, case):
    dtype, n, opts = LONG_CASES[case]
    num_rows = 8
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int32, never=1, cold=4,
                             p_touch=0.3, scale=0.5)
    lrs = lr_schedule(rng, n, 0.02, kind="cosine")
    kw = dict(lr=0.02, **opts)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(n // 2,), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(n // 2,))
    assert_runs_close(got, ref, dtype, MOM if opts.get("momentum") else (), case)


# --------------------------------------------------------------------------- #
# exact weight decay without momentum
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", [(), (3, 2)], ids=["row()", "row(3, 2)"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_exact_weight_decay_matches_dense_torch(torch, rng, dtype, index_dtype, row_shape):
    num_rows, n = 12, 400
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3,
                             p_touch=0.3, empty_every=5)
    lrs = lr_schedule(rng, n, 0.05, kind="zeros")
    kw = dict(lr=0.05, weight_decay=0.1)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(77,), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(77,))
    assert_runs_close(got, ref, dtype, (), "SGD weight_decay")
    decay = np.prod([1 - lr * 0.1 for lr in lrs])
    assert_close_exact(param[:2], p0[:2] * decay, dtype)


@pytest.mark.requires_torch
def test_exact_weight_decay_product_underflow_matches_dense_torch(torch, rng):
    """lr*wd up to 0.9 for 2500 steps: prod(1 - lr_t*wd) underflows float64 many times over."""
    num_rows, n = 8, 2500
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=1, cold=4, p_touch=0.2)
    lrs = lr_schedule(rng, n, 0.5, kind="random")
    kw = dict(lr=0.5, weight_decay=0.9)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(n // 2,), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(n // 2,))
    assert_runs_close(got, ref, np.float64, (), "SGD decay underflow")
    assert np.all(np.isfinite(param))


# --------------------------------------------------------------------------- #
# momentum + weight decay: refused at construction, or exact
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize(
    "opts",
    [dict(momentum=0.9), dict(momentum=0.9, dampening=0.3), dict(momentum=0.9, nesterov=True)],
    ids=["momentum", "dampening", "nesterov"],
)
def test_exact_momentum_with_weight_decay_refused_or_exact(torch, rng, opts):
    p0 = random_param(rng, 8, (2,), np.float64)
    param = p0.copy()
    kw = dict(lr=0.02, weight_decay=0.1, **opts)
    try:
        opt = SGD(param, mode="exact", **kw)
    except ValueError as e:
        assert "weight_decay" in str(e) or "weight decay" in str(e), str(e)
        assert np.array_equal(param, p0)
        return
    n = 1500
    steps = make_exact_steps(rng, 8, n, (2,), np.float64, never=1, cold=4, p_touch=0.3)
    lrs = lr_schedule(rng, n, 0.02)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(300,), **kw)
    got = run_sparse(opt, steps, lrs, checkpoints=(300,))
    assert_runs_close(got, ref, np.float64, MOM, "SGD momentum+weight_decay")


# --------------------------------------------------------------------------- #
# plain SGD: the two modes are one algorithm
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_exact_plain_sgd_matches_dense_torch_and_lazy(torch, rng, dtype):
    p0 = random_param(rng, 10, (2,), dtype)
    steps = make_exact_steps(rng, 10, 200, (2,), dtype, empty_every=4)
    lrs = lr_schedule(rng, 200, 0.1)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, lr=0.1)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = SGD(param, lr=0.1, mode=mode)
        res[mode] = run_sparse(opt, steps, lrs)
        assert "momentum_buffer" not in opt.state_dict()["state"]
    assert_runs_close(res["exact"], ref, dtype, (), "exact")
    assert_runs_close(res["lazy"], res["exact"], dtype, (), "lazy vs exact")


# --------------------------------------------------------------------------- #
# lazy vs exact with momentum
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("nesterov", [False, True])
def test_lazy_and_exact_momentum_differ_when_rows_rest(rng, nesterov):
    p0 = random_param(rng, 10, (2,), np.float64)
    steps = make_exact_steps(rng, 10, 200, (2,), np.float64, never=1, cold=4, p_touch=0.1)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = SGD(param, lr=0.05, momentum=0.9, nesterov=nesterov, mode=mode)
        run_sparse(opt, steps)
        res[mode] = param
    rel = np.max(np.abs(res["lazy"] - res["exact"])) / max(1.0, np.max(np.abs(res["exact"])))
    assert rel > 1e-3, rel


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", sorted(SGD_OPTIONS))
def test_lazy_and_exact_momentum_coincide_when_every_row_is_touched(rng, option, dtype):
    p0 = random_param(rng, 6, (3,), dtype)
    steps = make_exact_steps(rng, 6, 150, (3,), dtype, never=0, cold=0, p_touch=1.0)
    lrs = lr_schedule(rng, 150, 0.02)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = SGD(param, lr=0.02, mode=mode, **SGD_OPTIONS[option])
        res[mode] = run_sparse(opt, steps, lrs, state_names=MOM)
    assert_runs_close(res["lazy"], res["exact"], dtype, MOM, "lazy vs exact")


# --------------------------------------------------------------------------- #
# lazy weight decay (NumPy reference)
# --------------------------------------------------------------------------- #
LAZY_WD = {
    "wd": dict(weight_decay=0.1),
    "wd_momentum": dict(weight_decay=0.05, momentum=0.9, dampening=0.2),
    "wd_nesterov": dict(weight_decay=0.05, momentum=0.8, nesterov=True),
}


@pytest.mark.parametrize("row_shape", [(), (3,)], ids=["row()", "row(3,)"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(LAZY_WD))
def test_lazy_weight_decay_matches_numpy(rng, case, dtype, index_dtype, row_shape):
    num_rows, n = 20, 60
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    opt = SGD(param, lr=0.05, mode="lazy", **LAZY_WD[case])
    ref = NumpyLazySGD(p0, lr=0.05, **LAZY_WD[case])
    steps = make_exact_steps(rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3,
                             p_touch=0.3, empty_every=7)
    lrs = lr_schedule(rng, n, 0.05)
    for s, (idx, vals) in enumerate(steps):
        opt.lr = ref.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"step {s}")
    if LAZY_WD[case].get("momentum"):
        assert_close(opt.state_dict()["state"]["momentum_buffer"], ref.buf, dtype)
    assert np.array_equal(param[:2], p0[:2])  # untouched rows: no decay in lazy mode
    opt.flush()
    assert np.array_equal(param[:2], p0[:2])


def test_lazy_weight_decay_zero_gradient_on_touched_row(rng):
    p0 = random_param(rng, 3, (2,), np.float64)
    param = p0.copy()
    opt = SGD(param, lr=0.1, weight_decay=0.5)
    opt.step(np.array([2], dtype=np.int64), np.zeros((1, 2)))
    expected = p0.copy()
    expected[2] = p0[2] - 0.1 * 0.5 * p0[2]
    assert_close(param, expected)
    assert np.array_equal(param[:2], p0[:2])


@pytest.mark.requires_torch
def test_exact_defaults_match_torch(torch, rng):
    """SGD(p, lr, mode="exact", momentum=...) defaults: dampening 0, nesterov False, wd 0."""
    p0 = random_param(rng, 6, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, 6, 100, (2,), np.float64)
    ref = run_torch_dense(torch, "SGD", p0, steps, lr=0.1, momentum=0.9)
    got = run_sparse(SGD(param, 0.1, 0.9, mode="exact"), steps)
    assert_runs_close(got, ref, np.float64, MOM, "defaults")
