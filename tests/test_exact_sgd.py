"""sparseopt.optim.SGD: mode="exact", and lazy weight decay.

mode="exact": after any steps and ``opt.flush()``, ``param`` and ``momentum_buffer`` equal
those of the DENSE ``torch.optim.SGD`` fed, every step, the densified gradient (zeros for
untouched rows; an empty step is an all-zero gradient step). torch's dense step:
    g = g + wd*p                              (weight_decay)
    buf = g (torch's first step)  else  buf = mu*buf + (1-dampening)*g
    d = g + mu*buf if nesterov else buf;  p -= lr*d
The buffer is created at the optimizer's first step, for every row at once (so a row first
touched later has its gradient dampened). Tolerance: float32 rtol 1e-5, float64 rtol 1e-9.
SGD(momentum>0, weight_decay>0, mode="exact") is exact too: also against a plain NumPy dense
loop (NumpyDenseSGD), over rests of thousands of steps and every alignment of the step-range
products the catch-up uses.

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
    densify,
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
# momentum + weight decay (coupled: g = wd*p moves the buffer of untouched rows)
# --------------------------------------------------------------------------- #
class NumpyDenseSGD:
    """torch.optim.SGD written plainly from its formula, fed dense gradients (zeros for
    untouched rows): g = grad + wd*p; buf = g at the first step, else mu*buf + (1-damp)*g;
    p -= lr * (g + mu*buf if nesterov else buf). Arithmetic in p's dtype."""

    def __init__(self, p0, momentum, dampening=0.0, nesterov=False, weight_decay=0.0):
        self.p = np.array(p0, copy=True)
        self.buf = None
        self.mu, self.damp, self.nesterov, self.wd = momentum, dampening, nesterov, weight_decay

    def step(self, lr, idx, vals):
        dt = self.p.dtype.type
        g = densify(idx, vals, self.p.shape) + dt(self.wd) * self.p
        if self.buf is None:
            self.buf = g.copy()
        else:
            self.buf = dt(self.mu) * self.buf + dt(1 - self.damp) * g
        d = g + dt(self.mu) * self.buf if self.nesterov else self.buf
        self.p = self.p - dt(lr) * d


MOM_WD = {
    "mom0.9_wd0.1": dict(momentum=0.9, weight_decay=0.1),
    "mom0.9_damp0.3_wd0.1": dict(momentum=0.9, dampening=0.3, weight_decay=0.1),
    "nesterov0.9_wd0.1": dict(momentum=0.9, nesterov=True, weight_decay=0.1),
    "mom0.5_damp0.9_wd0.01": dict(momentum=0.5, dampening=0.9, weight_decay=0.01),
    "mom0.99_wd1e-4": dict(momentum=0.99, weight_decay=1e-4),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(MOM_WD))
def test_exact_momentum_weight_decay_matches_dense_torch(torch, rng, case, dtype, index_dtype):
    """3000 steps, lr changed every step, cold rows resting ~3000 steps (caught up by a step
    or only by flush), never-touched rows (decayed through the buffer), repeats, empty steps."""
    num_rows, n = 12, 3000
    p0 = random_param(rng, num_rows, (3,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (3,), dtype, index_dtype, never=2, cold=4,
                             p_touch=0.3, empty_every=7)
    lrs = lr_schedule(rng, n, 0.05)
    kw = dict(lr=0.05, **MOM_WD[case])
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(1, 2, 3, 64, 1025), **kw)
    opt = SGD(param, mode="exact", **kw)
    got = run_sparse(opt, steps, lrs, checkpoints=(1, 2, 3, 64, 1025))
    assert_runs_close(got, ref, dtype, MOM, case)
    assert opt.param is param
    assert not np.array_equal(param[:2], p0[:2])  # never touched, but decayed


@pytest.mark.requires_torch
@pytest.mark.parametrize("first_empty", [False, True], ids=["first_touched", "first_empty"])
@pytest.mark.parametrize("case", sorted(MOM_WD))
def test_exact_momentum_weight_decay_first_step(torch, rng, case, first_empty):
    """torch creates the buffer at its first step for every row (buf = wd*p, undampened, for
    an untouched row); rows first touched later are dampened."""
    num_rows, n = 10, 40
    p0 = random_param(rng, num_rows, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), np.float64, never=2, cold=3,
                             p_touch=0.3, first_empty=first_empty)
    lrs = lr_schedule(rng, n, 0.1, kind="random")
    kw = dict(lr=0.1, **MOM_WD[case])
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(1, 2, 5), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(1, 2, 5))
    assert_runs_close(got, ref, np.float64, MOM, case)


STRONG_AND_TINY = {
    # lr*wd up to 1.5 (> 1: refused without momentum, fine with it), p changes sign; each
    # step's matrix contracts (plain: lr*(1-damp)*wd < 2(1+mu); Nesterov:
    # lr*wd < 2(1+mu)/(1+2mu)) and so does their product under this schedule (lr*wd = 3
    # would not: a product of varying contracting matrices can grow, and torch gives inf)
    "strong_mom0.9": (dict(momentum=0.9, weight_decay=1.5), 1.0),
    "strong_damp0.5": (dict(momentum=0.9, dampening=0.5, weight_decay=2.0), 1.0),
    "strong_nesterov": (dict(momentum=0.9, nesterov=True, weight_decay=1.0), 1.0),
    "decay_underflow": (dict(momentum=0.5, weight_decay=0.9), 0.5),
    "tiny_wd": (dict(momentum=0.9, weight_decay=1e-7), 0.05),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(STRONG_AND_TINY))
def test_exact_momentum_strong_and_tiny_weight_decay(torch, rng, case, dtype):
    opts, lr = STRONG_AND_TINY[case]
    num_rows, n = 10, 2500
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, never=1, cold=4, p_touch=0.2,
                             empty_every=11)
    lrs = lr_schedule(rng, n, lr, kind="random")
    if case.startswith("strong"):  # keep lr*wd where the pair contracts
        lrs = [min(x, lr) for x in lrs]
    kw = dict(lr=lr, **opts)
    ref = run_torch_dense(torch, "SGD", p0, steps, lrs, checkpoints=(3, 500), **kw)
    got = run_sparse(SGD(param, mode="exact", **kw), steps, lrs, checkpoints=(3, 500))
    assert_runs_close(got, ref, dtype, MOM, case)
    assert np.all(np.isfinite(param))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", sorted(MOM_WD))
def test_exact_momentum_weight_decay_matches_numpy(rng, case, dtype):
    """Against the plain NumPy dense loop, 6000 steps (13 levels of step-range products),
    flushing single rows at random points (catch-ups from every kind of (s, e) pair)."""
    num_rows, n = 9, 6000
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int32, never=1, cold=4,
                             p_touch=0.05, empty_every=5)
    lrs = lr_schedule(rng, n, 0.05, kind="zeros")
    kw = dict(lr=0.05, **MOM_WD[case])
    opt = SGD(param, mode="exact", **kw)
    ref = NumpyDenseSGD(p0, **MOM_WD[case])
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(lrs[s], idx, vals)
        if rng.random() < 0.01 or s + 1 in (1, 2, 1024, 4096):
            rows = rng.choice(num_rows, size=2).astype(np.int64)
            opt.flush(rows)
            assert_close_exact(param[rows], ref.p[rows], dtype, err_msg=f"step {s + 1}")
            buf = opt.state["momentum_buffer"]
            assert_close_exact(buf[rows], ref.buf[rows], dtype, err_msg=f"buf, step {s + 1}")
    opt.flush()
    assert_close_exact(param, ref.p, dtype)
    assert_close_exact(opt.state["momentum_buffer"], ref.buf, dtype)


@pytest.mark.parametrize("case", sorted(MOM_WD))
def test_exact_momentum_weight_decay_one_row_every_rest_length(rng, case):
    """Row 0 rests for every length 0..199 in turn, then around 512 and 1024 (the start and
    end steps of its catch-ups take many alignments against the step-range products), each
    time caught up by a step; NumPy dense loop as reference."""
    kw = dict(lr=0.05, **MOM_WD[case])
    p0 = random_param(rng, 3, (2,), np.float64)
    param = p0.copy()
    opt = SGD(param, mode="exact", **kw)
    ref = NumpyDenseSGD(p0, **MOM_WD[case])
    t = 0
    for rest in list(range(200)) + [511, 512, 513, 1023, 1024, 1025]:
        for _ in range(rest):  # row 0 untouched; rows 1-2 touched
            lr = 0.05 * (0.5 + rng.random())
            idx = np.array([1, 2, 1], dtype=np.int64)
            vals = rng.standard_normal((3, 2))
            opt.lr = lr
            opt.step(idx, vals)
            ref.step(lr, idx, vals)
            t += 1
        idx, vals = np.array([0], dtype=np.int64), rng.standard_normal((1, 2))
        opt.step(idx, vals)
        ref.step(opt.lr, idx, vals)
        t += 1
        assert_close_exact(param[0], ref.p[0], np.float64, err_msg=f"rest {rest}, step {t}")
    opt.flush()
    assert_close_exact(param, ref.p, np.float64)
    assert_close_exact(opt.state["momentum_buffer"], ref.buf, np.float64)


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy_ball", "nesterov"])
def test_exact_momentum_weight_decay_threads_bitwise(rng, nesterov):
    num_rows, n = 5000, 40
    p0 = rng.standard_normal((num_rows, 8)).astype(np.float32)
    steps = []
    for s in range(n):
        idx = rng.integers(0, num_rows // (1 + s % 5), size=4000).astype(np.int64)
        steps.append((idx, rng.standard_normal((4000, 8)).astype(np.float32)))
    kw = dict(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-2, mode="exact")
    runs = []
    for nt in (1, 2, 0):
        param = p0.copy()
        opt = SGD(param, num_threads=nt, **kw)
        for s, (idx, vals) in enumerate(steps):
            opt.lr = 0.05 * (1 + 0.5 * np.sin(s))
            opt.step(idx, vals)
            if s % 13 == 5:
                opt.flush(idx[:300])
        opt.flush()
        runs.append((param, opt.state_dict()["state"]))
    for param, state in runs[1:]:
        assert np.array_equal(param, runs[0][0])
        for name in state:
            assert np.array_equal(state[name], runs[0][1][name]), name


def test_exact_momentum_weight_decay_history_and_layout(rng):
    """One history row per step (lr, log decay and one 2x2 product, 6 float64), no window;
    a state_dict mid-run holds step + 1 rows and nothing is flushed."""
    param = random_param(rng, 5, (2,), np.float64)
    opt = SGD(param, lr=0.1, momentum=0.9, weight_decay=0.1, mode="exact")
    st = opt.state
    assert set(st) == {"momentum_buffer", "last_step", "history", "window", "history_start"}
    assert st["history"].shape[1] == 6
    assert st["window"].shape == (1, 0)
    for _ in range(37):
        opt.step(np.array([4], dtype=np.int64), np.ones((1, 2)))
    before = param.copy()
    sd = opt.state_dict()
    assert sd["state"]["history"].shape == (38, 6)
    assert np.array_equal(param, before)
    assert sd["state"]["last_step"].tolist() == [0, 0, 0, 0, 37]


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(weight_decay=float("inf")), "weight_decay"),
        (dict(lr=float("inf")), "lr"),
        (dict(momentum=-0.5), "momentum"),
        (dict(dampening=float("nan")), "dampening"),
        (dict(nesterov=True, dampening=0.1), "nesterov"),
    ],
    ids=["wd_negative", "wd_nan", "wd_inf", "lr_inf", "momentum_negative", "dampening_nan",
         "nesterov_dampening"],
)
def test_exact_momentum_weight_decay_bad_hyperparameters(rng, kw, match):
    param = random_param(rng, 4, (2,), np.float64)
    p0 = param.copy()
    args = dict(lr=0.1, momentum=0.9, weight_decay=0.1, mode="exact")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        SGD(param, **args)
    assert np.array_equal(param, p0)


def test_exact_momentum_weight_decay_bad_lr_mid_run_changes_nothing(rng):
    from _helpers import assert_unchanged, snapshot

    param = random_param(rng, 6, (2,), np.float64)
    opt = SGD(param, lr=0.1, momentum=0.9, weight_decay=0.1, mode="exact")
    for _ in range(20):
        opt.step(rng.integers(0, 3, 4), rng.standard_normal((4, 2)))
    snap = snapshot(opt, param)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr"):
            opt.lr = bad
    assert opt.lr == 0.1
    assert_unchanged(opt, param, snap)
    opt.lr = 30.0  # lr * weight_decay = 3: fine with momentum (the decay is in the matrices)
    opt.step(np.array([1]), np.ones((1, 2)))


def test_exact_momentum_weight_decay_cannot_be_shared(rng):
    """Hogwild! replicas and shared memory stay refused in exact mode for this combination."""
    opt = SGD(random_param(rng, 4, (2,), np.float64), lr=0.1, momentum=0.9, weight_decay=0.1,
              mode="exact")
    with pytest.raises(ValueError, match="mode='exact'"):
        opt.replica()
    with pytest.raises(ValueError, match="mode='exact'"):
        opt.share_memory()


def test_exact_weight_decay_without_momentum_needs_lr_wd_below_one(rng):
    param = random_param(rng, 4, (2,), np.float64)
    p0 = param.copy()
    with pytest.raises(ValueError, match=r"lr \* weight_decay < 1"):
        SGD(param, lr=1.0, weight_decay=1.0, mode="exact")
    opt = SGD(param, lr=0.5, weight_decay=1.0, mode="exact")
    opt.step(np.array([1]), np.ones((1, 2)))
    snap_p = param.copy()
    with pytest.raises(ValueError, match=r"lr \* weight_decay < 1"):
        opt.lr = 2.0
    assert opt.lr == 0.5 and np.array_equal(param, snap_p)
    SGD(p0.copy(), lr=1.0, weight_decay=1.0, momentum=0.5, mode="exact")  # fine with momentum
    SGD(p0.copy(), lr=1.0, weight_decay=1.0, mode="lazy")  # and in lazy mode


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
