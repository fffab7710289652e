"""sparseopt.optim.Adam / AdamW: mode="exact", and the lazy mode of the new options.

mode="exact": after any steps and ``opt.flush()``, ``param`` and the state arrays
``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with amsgrad) equal those of the
DENSE ``torch.optim.Adam`` / ``torch.optim.AdamW`` (default implementation) fed, every
step, the gradient densified with zeros for untouched rows (an empty step = an all-zero
gradient step). Tolerance: float32 rtol 1e-5, float64 rtol 1e-9, atol = rtol*max(1, max|ref|).
torch's dense Adam step t (single-tensor path):
    [Adam, wd]   g = g + wd*p            [AdamW]  p *= 1 - lr*wd
    m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g;  [amsgrad] vmax = max(vmax, v)
    p -= lr/(1-b1^t) * m / (sqrt(v or vmax)/sqrt(1-b2^t) + eps)
bias_correction="none" (no torch option): the same without the 1-b^t factors (NumPy
reference below, itself checked against torch with bias correction on).

Lazy mode (NumPy references, plain formulas), on touched coalesced rows only:
    [Adam, wd]  g' = g + wd*p      [AdamW]  p *= 1 - lr*wd
    m += (1-b1)(g'-m);  v += (1-b2)(g'^2-v);  [amsgrad] vmax = max(vmax, v)
    p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v or vmax)+eps),  t = global step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseopt.optim as so

from _helpers import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    assert_close_exact,
    assert_runs_close,
    coalesce_ref,
    densify,
    lr_schedule,
    make_exact_steps,
    random_param,
    run_sparse,
    run_torch_dense,
)

DTYPE_IDS = lambda d: np.dtype(d).name  # noqa: E731


def _names(amsgrad):
    return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())


def _make(cls_name, param, **kw):
    return getattr(so, cls_name)(param, **kw)


# --------------------------------------------------------------------------- #
# NumPy references
# --------------------------------------------------------------------------- #
class NumpyDenseAdam:
    """torch's dense Adam/AdamW step, transcribed; bias_correction "global" or "none"."""

    def __init__(self, p0, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled=False, amsgrad=False, bias_correction="global"):
        self.p = np.array(p0, copy=True)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.vmax = np.zeros_like(self.p)
        self.t = 0
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.wd, self.decoupled, self.amsgrad = weight_decay, decoupled, amsgrad
        self.bias_correction = bias_correction

    def step(self, g):
        self.t += 1
        dt = self.p.dtype.type
        lr, b1, b2 = self.lr, self.b1, self.b2
        if self.wd:
            if self.decoupled:
                self.p = self.p * dt(1 - lr * self.wd)
            else:
                g = g + dt(self.wd) * self.p
        self.m = self.m + (g - self.m) * dt(1 - b1)
        self.v = self.v * dt(b2) + dt(1 - b2) * g * g
        d = self.v
        if self.amsgrad:
            self.vmax = np.maximum(self.vmax, self.v)
            d = self.vmax
        if self.bias_correction == "global":
            step_size = lr / (1 - b1**self.t)
            denom = np.sqrt(d) / dt(math.sqrt(1 - b2**self.t)) + dt(self.eps)
        else:
            step_size = lr
            denom = np.sqrt(d) + dt(self.eps)
        self.p = self.p - dt(step_size) * (self.m / denom)

    def state(self):
        st_ = {"exp_avg": self.m.copy(), "exp_avg_sq": self.v.copy()}
        if self.amsgrad:
            st_["max_exp_avg_sq"] = self.vmax.copy()
        return st_


def run_numpy_dense(p0, steps, lrs=None, checkpoints=(), **kw):
    ref = NumpyDenseAdam(p0, **kw)
    out = {}
    for s, (idx, vals) in enumerate(steps):
        if lrs is not None:
            ref.lr = lrs[s]
        ref.step(densify(idx, vals, ref.p.shape))
        if s + 1 in checkpoints:
            out[s + 1] = (ref.p.copy(), ref.state())
    out[len(steps)] = (ref.p.copy(), ref.state())
    return out


class NumpyLazyAdamX:
    """SparseAdam's row update with the new options (see the module docstring)."""

    def __init__(self, p0, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled=False, amsgrad=False):
        self.p = np.array(p0, copy=True)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.vmax = np.zeros_like(self.p)
        self.t = 0
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.wd, self.decoupled, self.amsgrad = weight_decay, decoupled, amsgrad

    def step(self, idx, vals):
        self.t += 1
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        lr = self.lr
        p = self.p[u]
        if self.wd and self.decoupled:
            p = p * dt(1 - lr * self.wd)
        elif self.wd:
            g = g + dt(self.wd) * p
        m = self.m[u] + (g - self.m[u]) * dt(1 - self.b1)
        v = self.v[u] + (g * g - self.v[u]) * dt(1 - self.b2)
        self.m[u], self.v[u] = m, v
        d = v
        if self.amsgrad:
            d = np.maximum(self.vmax[u], v)
            self.vmax[u] = d
        step_size = lr * math.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        self.p[u] = p - dt(step_size) * (m / (np.sqrt(d) + dt(self.eps)))


# --------------------------------------------------------------------------- #
# the references themselves (no sparseopt): the NumPy transcriptions agree with torch
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize(
    "cls_name,kw",
    [
        ("Adam", dict()),
        ("Adam", dict(amsgrad=True, betas=(0.5, 0.9), eps=1e-3)),
        ("Adam", dict(weight_decay=0.1)),
        ("AdamW", dict(weight_decay=0.1, amsgrad=True)),
    ],
)
def test_reference_numpy_dense_adam_matches_torch(torch, rng, cls_name, kw):
    p0 = random_param(rng, 7, (2,), np.float64)
    steps = make_exact_steps(rng, 7, 80, (2,), np.float64, empty_every=5)
    lrs = lr_schedule(rng, 80, 0.02)
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, lr=0.02, **kw)
    np_kw = dict(kw, decoupled=cls_name == "AdamW", lr=0.02)
    if cls_name == "AdamW":
        np_kw.setdefault("weight_decay", 1e-2)
    mine = run_numpy_dense(p0, steps, lrs, **np_kw)
    assert_runs_close(mine, ref, np.float64, _names(kw.get("amsgrad", False)), "numpy ref")


@pytest.mark.requires_torch
@pytest.mark.parametrize("cls_name,kw", [("Adam", dict(amsgrad=True)), ("AdamW", dict(weight_decay=0.1))])
def test_reference_numpy_lazy_adam_is_torch_when_all_rows_touched(torch, rng, cls_name, kw):
    """eps=0 and every row touched every step: the lazy formula is the dense one."""
    p0 = random_param(rng, 5, (3,), np.float64)
    steps = make_exact_steps(rng, 5, 60, (3,), np.float64, never=0, cold=0, p_touch=1.0)
    ref = run_torch_dense(torch, cls_name, p0, steps, lr=0.03, eps=0.0, **kw)[60]
    lazy = NumpyLazyAdamX(p0, lr=0.03, eps=0.0, decoupled=cls_name == "AdamW", **kw)
    for idx, vals in steps:
        lazy.step(idx, vals)
    assert_close(lazy.p, ref[0], rtol=1e-12)
    assert_close(lazy.m, ref[1]["exp_avg"], rtol=1e-12)
    assert_close(lazy.v, ref[1]["exp_avg_sq"], rtol=1e-12)
    if kw.get("amsgrad"):
        assert_close(lazy.vmax, ref[1]["max_exp_avg_sq"], rtol=1e-12)


# --------------------------------------------------------------------------- #
# exact vs dense torch: dtypes, index dtypes, row shapes
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_matches_dense_torch(torch, rng, cls_name, dtype, index_dtype, row_shape):
    num_rows, n = 12, 300
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    steps = make_exact_steps(
        rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3, p_touch=0.35,
        empty_every=9,
    )
    lrs = lr_schedule(rng, n, 0.02)
    kw = dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8)
    if cls_name == "AdamW":
        kw["weight_decay"] = 0.05
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(100, 200), **kw)
    opt = _make(cls_name, param, mode="exact", **kw)
    assert opt.param is param
    got = run_sparse(opt, steps, lrs, checkpoints=(100, 200))
    assert_runs_close(got, ref, dtype, _names(False), cls_name)
    assert opt.param is param and param.dtype == np.dtype(dtype)
    assert opt.state_dict()["step"] == n
    # a row never touched: unchanged (Adam) / decayed by prod(1 - lr*wd) (AdamW), zero moments
    sd = opt.state_dict()["state"]
    assert not np.any(sd["exp_avg"][:2]) and not np.any(sd["exp_avg_sq"][:2])
    if cls_name == "Adam":
        assert np.array_equal(param[:2], p0[:2])


@pytest.mark.requires_torch
@pytest.mark.parametrize("amsgrad", [False, True], ids=["plain", "amsgrad"])
@pytest.mark.parametrize("eps", [1e-8, 1e-3])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)], ids=["b0.9_0.999", "b0.5_0.9"])
def test_exact_options_match_dense_torch(torch, rng, betas, eps, amsgrad):
    num_rows, n = 10, 400
    p0 = random_param(rng, num_rows, (3,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (3,), np.float64, never=1, cold=4, p_touch=0.3,
                             empty_every=6, first_empty=True)
    lrs = lr_schedule(rng, n, 0.01, kind="random")
    kw = dict(lr=0.01, betas=betas, eps=eps, amsgrad=amsgrad)
    ref = run_torch_dense(torch, "Adam", p0, steps, lrs, checkpoints=(50,), **kw)
    got = run_sparse(so.Adam(param, mode="exact", **kw), steps, lrs, checkpoints=(50,))
    assert_runs_close(got, ref, np.float64, _names(amsgrad), "Adam")


@pytest.mark.requires_torch
@pytest.mark.parametrize("amsgrad", [False, True], ids=["plain", "amsgrad"])
@pytest.mark.parametrize("weight_decay", [1e-2, 0.1])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_exact_adamw_matches_dense_torch(torch, rng, dtype, weight_decay, amsgrad):
    num_rows, n = 10, 400
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int32, never=2, cold=3,
                             p_touch=0.3, empty_every=5)
    lrs = lr_schedule(rng, n, 0.02, kind="zeros")  # includes steps with lr exactly 0
    kw = dict(lr=0.02, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay, amsgrad=amsgrad)
    ref = run_torch_dense(torch, "AdamW", p0, steps, lrs, checkpoints=(133,), **kw)
    got = run_sparse(so.AdamW(param, mode="exact", **kw), steps, lrs, checkpoints=(133,))
    assert_runs_close(got, ref, dtype, _names(amsgrad), "AdamW")
    # never-touched rows follow the decoupled decay alone
    decay = np.prod([1 - lr * weight_decay for lr in lrs])
    assert_close_exact(param[:2], p0[:2] * decay, dtype)


# --------------------------------------------------------------------------- #
# long runs: rows untouched for thousands of steps
# --------------------------------------------------------------------------- #
LONG_CASES = {
    # 8000 steps: (b1/sqrt(b2))^t underflows float64 for the default betas
    "adam_f64_8000": ("Adam", np.float64, 8000, dict(lr=0.01)),
    "adam_f32_3000": ("Adam", np.float32, 3000, dict(lr=0.01)),
    "adam_amsgrad_b0.5_f64_3000": ("Adam", np.float64, 3000,
                                   dict(lr=0.01, betas=(0.5, 0.9), amsgrad=True)),
    "adam_eps1e-3_f64_3000": ("Adam", np.float64, 3000, dict(lr=0.01, eps=1e-3)),
    "adamw_wd0.1_f64_3000": ("AdamW", np.float64, 3000, dict(lr=0.01, weight_decay=0.1)),
    "adamw_wd0.01_amsgrad_f32_3000": ("AdamW", np.float32, 3000,
                                      dict(lr=0.01, weight_decay=1e-2, amsgrad=True)),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("case", sorted(LONG_CASES))
def test_exact_long_untouched_rows_match_dense_torch(torch, rng, case):
    cls_name, dtype, n, kw = LONG_CASES[case]
    num_rows = 8
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    # rows 1..4 are cold: touched at steps 1..4, rows 2 and 4 again ~n-4 steps later
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int64, never=1, cold=4,
                             p_touch=0.3, scale=0.5)
    lrs = lr_schedule(rng, n, kw["lr"], kind="cosine")
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(n // 2,), **kw)
    got = run_sparse(_make(cls_name, param, mode="exact", **kw), steps, lrs,
                     checkpoints=(n // 2,))
    assert_runs_close(got, ref, dtype, _names(kw.get("amsgrad", False)), case)


@pytest.mark.parametrize(
    "cls_name,kw",
    [("Adam", dict()), ("AdamW", dict(weight_decay=1e-2, amsgrad=True))],
    ids=["adam", "adamw_amsgrad"],
)
def test_exact_very_long_run_matches_numpy_dense(rng, cls_name, kw):
    """20,000 steps (rows resting for almost all of them) against the NumPy transcription of
    torch's dense step (checked against torch above): far past any window or underflow."""
    num_rows, n = 6, 20000
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=1, cold=3, p_touch=0.05)
    lrs = lr_schedule(rng, n, 0.01)
    ref = run_numpy_dense(p0, steps, lrs, checkpoints=(n // 2,), lr=0.01,
                          decoupled=cls_name == "AdamW", **kw)
    got = run_sparse(_make(cls_name, param, lr=0.01, mode="exact", **kw), steps, lrs,
                     checkpoints=(n // 2,))
    assert_runs_close(got, ref, np.float64, _names(kw.get("amsgrad", False)), cls_name)


# --------------------------------------------------------------------------- #
# tiny gradients: sqrt(v) near eps
# --------------------------------------------------------------------------- #
TINY_CASES = {
    # eps, per-row gradient scales (cycled over the rows)
    "eps1e-8": (1e-8, [1e-7, 1e-8, 1.0, 1e-6, 3e-8]),
    "eps1e-3": (1e-3, [1e-3, 1e-4, 1.0, 1e-2, 3e-4]),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)], ids=["b0.9_0.999", "b0.5_0.9"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(TINY_CASES))
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_tiny_gradients_match_dense_torch(torch, rng, cls_name, case, dtype, betas):
    eps, scales = TINY_CASES[case]
    num_rows, n = 14, 700
    row_scale = np.array([scales[r % len(scales)] for r in range(num_rows)])
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int64, never=1, cold=6,
                             p_touch=0.2, row_scale=row_scale)
    lrs = lr_schedule(rng, n, 0.01)
    kw = dict(lr=0.01, betas=betas, eps=eps)
    if cls_name == "AdamW":
        kw["weight_decay"] = 1e-2
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(300,), **kw)
    got = run_sparse(_make(cls_name, param, mode="exact", **kw), steps, lrs, checkpoints=(300,))
    assert_runs_close(got, ref, dtype, (), f"{cls_name} tiny")
    # the moments, on the scale of each row's own gradients (atol = rtol*max(1, ...)
    # alone would accept anything for them)
    rs = row_scale.reshape(-1, 1)
    for k in sorted(ref):
        for name, power in (("exp_avg", 1), ("exp_avg_sq", 2)):
            assert_close_exact(
                got[k][1][name] / rs**power, ref[k][1][name] / rs**power, dtype,
                err_msg=f"{name} (per-row scaled) after {k} steps",
            )


@pytest.mark.requires_torch
@pytest.mark.parametrize("eps", [1e-8, 1e-3])
@pytest.mark.parametrize("betas", [(0.9, 0.9), (0.95, 0.95)], ids=["b0.9_0.9", "b0.95_0.95"])
def test_exact_eps_crossover_matches_dense_torch(torch, rng, betas, eps):
    """b1 close to sqrt(b2) and b2 small: over a rest, b1^j/sqrt(b2)^j fades slowly while
    the effective eps of the resting row, eps*sqrt(1-b2^t)/b2^(j/2), grows fast, so it
    crosses sqrt(v) within the range that matters, for normal and tiny gradients alike."""
    num_rows, n = 10, 1500
    row_scale = np.array([1.0, 1e-7, 1e-3, 1.0, 1e-8, 1e-5, 1.0, 1e-2, 1e-6, 1.0])
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=1, cold=5, p_touch=0.15,
                             row_scale=row_scale)
    lrs = lr_schedule(rng, n, 0.01)
    kw = dict(lr=0.01, betas=betas, eps=eps)
    ref = run_torch_dense(torch, "Adam", p0, steps, lrs, checkpoints=(500,), **kw)
    got = run_sparse(so.Adam(param, mode="exact", **kw), steps, lrs, checkpoints=(500,))
    assert_runs_close(got, ref, np.float64, _names(False), "crossover")


@pytest.mark.requires_torch
@pytest.mark.parametrize("amsgrad", [False, True], ids=["plain", "amsgrad"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_rows_mixing_zero_tiny_and_normal_columns_match_dense_torch(torch, rng, cls_name,
                                                                          dtype, amsgrad):
    """Within one row: columns whose gradient is always 0 (an input feature that is always
    zero, as MNIST's border pixels in a first layer's weight), columns of tiny gradients and
    ordinary ones. Rows are caught up column by column: the zero columns must stay put (v = 0,
    m = 0: no 0/0), the tiny ones take the per-step sum, the rest the series."""
    col_scale = np.array([1.0, 0.0, 1e-7, 1.0, 0.0, 0.0, 1e-8, 1e-6, 1.0, 3e-8, 0.0, 1.0,
                          1e-3, 0.0, 1.0, 1e-9], dtype)
    num_rows, n = 9, 600
    p0 = random_param(rng, num_rows, (col_scale.size,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (col_scale.size,), dtype, never=1, cold=3,
                             p_touch=0.3)
    steps = [(idx, vals * col_scale) for idx, vals in steps]
    lrs = lr_schedule(rng, n, 0.01)
    kw = dict(lr=0.01, amsgrad=amsgrad)
    if cls_name == "AdamW":
        kw["weight_decay"] = 1e-2
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(n // 3,), **kw)
    got = run_sparse(_make(cls_name, param, mode="exact", **kw), steps, lrs,
                     checkpoints=(n // 3,))
    assert np.all(np.isfinite(param))
    assert_runs_close(got, ref, dtype, _names(amsgrad), f"{cls_name} mixed columns")
    zero = col_scale == 0
    if cls_name == "Adam":  # no decay: the always-zero columns never move
        np.testing.assert_array_equal(param[:, zero], p0[:, zero])


@pytest.mark.requires_torch
def test_exact_adamw_decay_product_underflow_matches_dense_torch(torch, rng):
    """lr*wd up to 0.9 for 2500 steps: prod(1 - lr_t*wd) underflows float64 many times over;
    a row resting through it decays to 0, a row touched late moves like any other."""
    num_rows, n = 8, 2500
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=1, cold=4, p_touch=0.2)
    lrs = lr_schedule(rng, n, 0.5, kind="random")
    kw = dict(lr=0.5, weight_decay=0.9, amsgrad=True)
    ref = run_torch_dense(torch, "AdamW", p0, steps, lrs, checkpoints=(n // 2,), **kw)
    got = run_sparse(so.AdamW(param, mode="exact", **kw), steps, lrs, checkpoints=(n // 2,))
    assert_runs_close(got, ref, np.float64, _names(True), "AdamW decay underflow")
    assert np.all(np.isfinite(param))


# --------------------------------------------------------------------------- #
# bias_correction="none" (NumPy dense reference)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "cls_name,kw",
    [
        ("Adam", dict()),
        ("Adam", dict(amsgrad=True, betas=(0.5, 0.9))),
        ("Adam", dict(eps=1e-3)),
        ("AdamW", dict(weight_decay=0.1)),
        ("AdamW", dict(weight_decay=1e-2, amsgrad=True)),
    ],
    ids=["adam", "adam_amsgrad_b0.5", "adam_eps1e-3", "adamw_wd0.1", "adamw_amsgrad"],
)
def test_exact_no_bias_correction_matches_numpy(rng, cls_name, kw, dtype):
    num_rows, n = 10, 1500
    p0 = random_param(rng, num_rows, (3,), dtype)
    param = p0.copy()
    row_scale = np.array([1.0, 1e-7, 1.0, 1e-8, 1.0] * 2)
    steps = make_exact_steps(rng, num_rows, n, (3,), dtype, np.int64, never=1, cold=4,
                             p_touch=0.3, empty_every=8, row_scale=row_scale)
    lrs = lr_schedule(rng, n, 0.005)
    full = dict(lr=0.005, **kw)
    ref = run_numpy_dense(p0, steps, lrs, checkpoints=(400,), bias_correction="none",
                          decoupled=cls_name == "AdamW", **full)
    opt = _make(cls_name, param, mode="exact", bias_correction="none", **full)
    got = run_sparse(opt, steps, lrs, checkpoints=(400,))
    assert_runs_close(got, ref, dtype, _names(kw.get("amsgrad", False)), "bias none")


@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_no_bias_correction_differs_from_global(rng, cls_name):
    """So that the "none" test above could tell the two apart."""
    p0 = random_param(rng, 6, (2,), np.float64)
    steps = make_exact_steps(rng, 6, 50, (2,), np.float64)
    res = {}
    for bc in ("global", "none"):
        param = p0.copy()
        opt = _make(cls_name, param, lr=0.01, mode="exact", bias_correction=bc)
        run_sparse(opt, steps)
        res[bc] = param
    assert np.max(np.abs(res["global"] - res["none"])) > 1e-3


# --------------------------------------------------------------------------- #
# defaults
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_defaults_match_torch(torch, rng, cls_name):
    """Adam(p, mode="exact") / AdamW(p, mode="exact") use torch's defaults
    (lr 1e-3, betas (0.9, 0.999), eps 1e-8; AdamW weight_decay 1e-2)."""
    p0 = random_param(rng, 8, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, 8, 200, (2,), np.float64, cold=3)
    ref = run_torch_dense(torch, cls_name, p0, steps)
    opt = _make(cls_name, param, mode="exact")
    assert opt.lr == 1e-3
    got = run_sparse(opt, steps)
    assert_runs_close(got, ref, np.float64, _names(False), cls_name)


def test_adamw_default_weight_decay_is_torchs():
    hp = so.AdamW(np.zeros((3, 2)), mode="exact").state_dict()["hyperparams"]
    assert hp["weight_decay"] == 1e-2


# --------------------------------------------------------------------------- #
# random configurations (Hypothesis)
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cls_name=st.sampled_from(["Adam", "AdamW"]),
    b1=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    b2=st.sampled_from([0.0, 0.5, 0.9, 0.999]),
    eps=st.sampled_from([1e-8, 1e-6, 1e-3, 0.1]),
    amsgrad=st.booleans(),
    n=st.integers(1, 60),
    num_rows=st.integers(1, 8),
    row_shape=st.sampled_from(ROW_SHAPES),
)
def test_exact_random_configs_match_dense_torch(
    torch, seed, cls_name, b1, b2, eps, amsgrad, n, num_rows, row_shape
):
    rng = np.random.default_rng(seed)
    p0 = random_param(rng, num_rows, row_shape, np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, row_shape, np.float64, np.int64,
                             never=min(1, num_rows), cold=min(2, num_rows - 1) if num_rows > 1 else 0,
                             p_touch=float(rng.uniform(0.1, 0.9)), empty_every=3)
    lrs = lr_schedule(rng, n, 0.05, kind="random")
    kw = dict(lr=0.05, betas=(b1, b2), eps=eps, amsgrad=amsgrad)
    if cls_name == "AdamW":
        kw["weight_decay"] = 0.1
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, **kw)
    got = run_sparse(_make(cls_name, param, mode="exact", **kw), steps, lrs)
    assert_runs_close(got, ref, np.float64, _names(amsgrad), cls_name)


@pytest.mark.requires_torch
@pytest.mark.parametrize("betas", [(0.9, 0.5), (0.99, 0.9), (0.5, 0.2), (0.0, 0.0)],
                         ids=["b0.9_0.5", "b0.99_0.9", "b0.5_0.2", "b0_0"])
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_betas_with_b1_above_sqrt_b2_match_dense_torch(torch, rng, cls_name, betas):
    """torch.optim.Adam takes any 0 <= beta < 1; b1 >= sqrt(b2) makes m/sqrt(v) of a
    resting row grow until eps takes over, but the dense result is still well defined and
    no such refusal is in the specification of exact mode."""
    num_rows, n = 8, 400
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=1, cold=4, p_touch=0.3)
    lrs = lr_schedule(rng, n, 0.01)
    kw = dict(lr=0.01, betas=betas, eps=1e-8)
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(100,), **kw)
    opt = _make(cls_name, param, mode="exact", **kw)
    got = run_sparse(opt, steps, lrs, checkpoints=(100,))
    assert_runs_close(got, ref, np.float64, _names(False), f"{cls_name} betas={betas}")


# --------------------------------------------------------------------------- #
# lazy vs exact
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_lazy_and_exact_differ_when_rows_rest(rng, cls_name):
    p0 = random_param(rng, 10, (2,), np.float64)
    steps = make_exact_steps(rng, 10, 300, (2,), np.float64, never=1, cold=4, p_touch=0.1)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = _make(cls_name, param, lr=0.01, mode=mode)
        for idx, vals in steps:
            opt.step(idx, vals)
        opt.flush()
        res[mode] = param
    rel = np.max(np.abs(res["lazy"] - res["exact"])) / max(1.0, np.max(np.abs(res["exact"])))
    assert rel > 1e-3, rel
    # lazy leaves a never-touched row alone
    assert np.array_equal(res["lazy"][0], p0[0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "cls_name,kw",
    [("Adam", dict()), ("Adam", dict(amsgrad=True)), ("AdamW", dict(weight_decay=0.1)),
     ("AdamW", dict(amsgrad=True))],
    ids=["adam", "adam_amsgrad", "adamw", "adamw_amsgrad"],
)
def test_lazy_and_exact_coincide_when_every_row_is_touched(rng, cls_name, kw, dtype):
    """eps=0 (SparseAdam's eps placement is then the dense one) and every row touched
    every step: lazy is the dense optimizer too."""
    p0 = random_param(rng, 6, (3,), dtype)
    steps = make_exact_steps(rng, 6, 150, (3,), dtype, never=0, cold=0, p_touch=1.0)
    lrs = lr_schedule(rng, 150, 0.02)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = _make(cls_name, param, lr=0.02, eps=0.0, mode=mode, **kw)
        res[mode] = run_sparse(opt, steps, lrs, state_names=_names(kw.get("amsgrad", False)))
    assert_runs_close(res["lazy"], res["exact"], dtype, _names(kw.get("amsgrad", False)),
                      "lazy vs exact")


# --------------------------------------------------------------------------- #
# construction: combinations that cannot be exact
# --------------------------------------------------------------------------- #
def test_exact_adam_with_coupled_weight_decay_is_refused():
    with pytest.raises(ValueError, match=r"^Adam\(weight_decay=0\.1\) adds the decay"):
        so.Adam(np.zeros((4, 2)), lr=0.01, weight_decay=0.1, mode="exact")


@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_with_row_bias_correction_is_refused(cls_name):
    with pytest.raises(ValueError, match="bias_correction"):
        _make(cls_name, np.zeros((4, 2)), mode="exact", bias_correction="row")


@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_exact_accepts_global_and_none(cls_name):
    for bc in ("global", "none"):
        opt = _make(cls_name, np.zeros((4, 2)), mode="exact", bias_correction=bc)
        opt.flush()
    so.Adam(np.zeros((4, 2)), weight_decay=0.0, mode="exact")  # no L2 term: fine


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_state_names(cls_name, mode, amsgrad):
    opt = _make(cls_name, np.zeros((4, 2)), mode=mode, amsgrad=amsgrad)
    opt.step(np.array([1, 1], dtype=np.int64), np.ones((2, 2)))
    opt.flush()
    state = opt.state_dict()["state"]
    assert {"exp_avg", "exp_avg_sq"} <= set(state)
    assert ("max_exp_avg_sq" in state) == amsgrad
    for name in _names(amsgrad):
        assert state[name].shape == (4, 2) and state[name].dtype == np.float64


# --------------------------------------------------------------------------- #
# lazy mode of the new options (NumPy references)
# --------------------------------------------------------------------------- #
LAZY_CASES = {
    "adam_wd": ("Adam", dict(weight_decay=0.1)),
    "adam_amsgrad": ("Adam", dict(amsgrad=True)),
    "adam_wd_amsgrad": ("Adam", dict(weight_decay=1e-2, amsgrad=True, betas=(0.5, 0.9))),
    "adamw": ("AdamW", dict()),
    "adamw_wd0.1": ("AdamW", dict(weight_decay=0.1)),
    "adamw_amsgrad": ("AdamW", dict(weight_decay=0.1, amsgrad=True)),
}


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(LAZY_CASES))
def test_lazy_new_options_match_numpy(rng, case, dtype, index_dtype):
    cls_name, kw = LAZY_CASES[case]
    if cls_name == "AdamW":
        kw = dict(kw)
        kw.setdefault("weight_decay", 1e-2)
    num_rows, n = 20, 80
    p0 = random_param(rng, num_rows, (3,), dtype)
    param = p0.copy()
    opt = _make(cls_name, param, lr=0.03, eps=1e-6, mode="lazy", **kw)
    ref = NumpyLazyAdamX(p0, lr=0.03, eps=1e-6, decoupled=cls_name == "AdamW", **kw)
    steps = make_exact_steps(rng, num_rows, n, (3,), dtype, index_dtype, never=2, cold=3,
                             p_touch=0.3, empty_every=7)
    lrs = lr_schedule(rng, n, 0.03)
    for s, (idx, vals) in enumerate(steps):
        opt.lr = ref.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"param, step {s}")
    state = opt.state_dict()["state"]
    assert_close(state["exp_avg"], ref.m, dtype)
    assert_close(state["exp_avg_sq"], ref.v, dtype)
    if kw.get("amsgrad"):
        assert_close(state["max_exp_avg_sq"], ref.vmax, dtype)
    else:
        assert "max_exp_avg_sq" not in state
    # never-touched rows: bit-identical (no decay in lazy mode, not even AdamW's)
    assert np.array_equal(param[:2], p0[:2])
    opt.flush()  # lazy flush: a no-op
    assert np.array_equal(param[:2], p0[:2])
    assert_close(param, ref.p, dtype)


def test_lazy_adamw_decay_only_on_touched_rows(rng):
    p0 = random_param(rng, 4, (2,), np.float64)
    param = p0.copy()
    opt = so.AdamW(param, lr=0.1, weight_decay=0.5, mode="lazy")
    # a zero gradient on row 1: m = v = 0 so only the decay moves it
    opt.step(np.array([1], dtype=np.int64), np.zeros((1, 2)))
    expected = p0.copy()
    expected[1] *= 1 - 0.1 * 0.5
    assert_close(param, expected)
    assert np.array_equal(param[[0, 2, 3]], p0[[0, 2, 3]])
