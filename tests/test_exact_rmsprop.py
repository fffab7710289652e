"""sparseopt.optim.RMSprop: mode="exact" and mode="lazy".

mode="exact": after any steps and ``opt.flush()``, ``param`` and the state arrays
``square_avg``, ``momentum_buffer`` (momentum > 0) and ``grad_avg`` (centered) equal those of
the DENSE ``torch.optim.RMSprop`` fed, every step, the densified gradient (zeros for untouched
rows; an empty step is an all-zero gradient step). torch's dense step:
    square_avg = alpha*square_avg + (1-alpha)*g*g
    centered: grad_avg = lerp(grad_avg, g, 1-alpha); avg = sqrt(square_avg - grad_avg^2) + eps
    else:     avg = sqrt(square_avg) + eps
    momentum: buf = momentum*buf + g/avg; p -= lr*buf      else: p -= lr*g/avg
Tolerance: float32 rtol 1e-5, float64 rtol 1e-9, atol = rtol*max(1, max|ref|).

mode="lazy" (NumPy reference): each touched coalesced row follows that formula for the step;
untouched rows keep param and state.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt.optim as so

from _helpers import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    ROW_SHAPES,
    assert_close,
    assert_runs_close,
    coalesce_ref,
    lr_schedule,
    make_exact_steps,
    random_param,
    run_sparse,
    run_torch_dense,
)

DTYPE_IDS = lambda d: np.dtype(d).name  # noqa: E731


def _names(momentum, centered):
    return ("square_avg",) + (("momentum_buffer",) if momentum else ()) + (
        ("grad_avg",) if centered else ())


class NumpyLazyRMSprop:
    def __init__(self, p0, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
        self.p = np.array(p0, copy=True)
        self.sa = np.zeros_like(self.p)
        self.ga = np.zeros_like(self.p)
        self.buf = np.zeros_like(self.p)
        self.lr, self.alpha, self.eps, self.momentum, self.centered = (
            lr, alpha, eps, momentum, centered)

    def step(self, idx, vals):
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        a = self.alpha
        sa = self.sa[u] * dt(a) + dt(1 - a) * g * g
        self.sa[u] = sa
        if self.centered:
            ga = self.ga[u] + (g - self.ga[u]) * dt(1 - a)
            self.ga[u] = ga
            avg = np.sqrt(sa - ga * ga) + dt(self.eps)
        else:
            avg = np.sqrt(sa) + dt(self.eps)
        if self.momentum > 0:
            b = self.buf[u] * dt(self.momentum) + g / avg
            self.buf[u] = b
            self.p[u] = self.p[u] - dt(self.lr) * b
        else:
            self.p[u] = self.p[u] - dt(self.lr) * (g / avg)

    def state(self):
        st_ = {"square_avg": self.sa.copy()}
        if self.momentum > 0:
            st_["momentum_buffer"] = self.buf.copy()
        if self.centered:
            st_["grad_avg"] = self.ga.copy()
        return st_


OPTIONS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "centered": dict(centered=True),
    "momentum_centered": dict(momentum=0.9, centered=True),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_reference_numpy_lazy_is_torch_when_all_rows_touched(torch, rng, option):
    """The NumPy transcription (no sparseopt) is torch's formula."""
    p0 = random_param(rng, 5, (3,), np.float64)
    steps = make_exact_steps(rng, 5, 60, (3,), np.float64, never=0, cold=0, p_touch=1.0)
    kw = dict(lr=0.01, alpha=0.9, **OPTIONS[option])
    ref = run_torch_dense(torch, "RMSprop", p0, steps, **kw)[60]
    mine = NumpyLazyRMSprop(p0, **kw)
    for idx, vals in steps:
        mine.step(idx, vals)
    assert_close(mine.p, ref[0], rtol=1e-12)
    for name, arr in mine.state().items():
        assert_close(arr, ref[1][name], rtol=1e-12, err_msg=name)


# --------------------------------------------------------------------------- #
# exact vs dense torch
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_exact_matches_dense_torch(torch, rng, dtype, index_dtype, row_shape):
    num_rows, n = 12, 300
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3,
                             p_touch=0.35, empty_every=9)
    lrs = lr_schedule(rng, n, 0.01)
    kw = dict(lr=0.01, alpha=0.95, eps=1e-8, momentum=0.9, centered=True)
    ref = run_torch_dense(torch, "RMSprop", p0, steps, lrs, checkpoints=(100, 200), **kw)
    opt = so.RMSprop(param, mode="exact", **kw)
    assert opt.param is param
    got = run_sparse(opt, steps, lrs, checkpoints=(100, 200))
    assert_runs_close(got, ref, dtype, _names(0.9, True), "RMSprop")
    assert np.array_equal(param[:2], p0[:2])


@pytest.mark.requires_torch
@pytest.mark.parametrize("alpha", [0.99, 0.9])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_exact_options_match_dense_torch(torch, rng, option, alpha):
    num_rows, n = 10, 400
    p0 = random_param(rng, num_rows, (3,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (3,), np.float64, np.int64, never=1, cold=4,
                             p_touch=0.3, empty_every=6, first_empty=True)
    lrs = lr_schedule(rng, n, 0.01, kind="random")
    kw = dict(lr=0.01, alpha=alpha, eps=1e-6, **OPTIONS[option])
    ref = run_torch_dense(torch, "RMSprop", p0, steps, lrs, checkpoints=(1, 50), **kw)
    got = run_sparse(so.RMSprop(param, mode="exact", **kw), steps, lrs, checkpoints=(1, 50))
    assert_runs_close(got, ref, np.float64,
                      _names(kw.get("momentum", 0), kw.get("centered", False)), option)


LONG_CASES = {
    "momentum_f64_4000": (np.float64, 4000, dict(momentum=0.9)),
    "momentum_centered_f32_3000": (np.float32, 3000, dict(momentum=0.9, centered=True)),
    "centered_f64_3000": (np.float64, 3000, dict(centered=True, alpha=0.9)),
    "plain_f32_3000": (np.float32, 3000, dict()),
}


@pytest.mark.requires_torch
@pytest.mark.parametrize("case", sorted(LONG_CASES))
def test_exact_long_untouched_rows_match_dense_torch(torch, rng, case):
    dtype, n, opts = LONG_CASES[case]
    num_rows = 8
    p0 = random_param(rng, num_rows, (2,), dtype)
    param = p0.copy()
    steps = make_exact_steps(rng, num_rows, n, (2,), dtype, np.int64, never=1, cold=4,
                             p_touch=0.3, scale=0.5)
    lrs = lr_schedule(rng, n, 0.005, kind="cosine")
    kw = dict(lr=0.005, **opts)
    ref = run_torch_dense(torch, "RMSprop", p0, steps, lrs, checkpoints=(n // 2,), **kw)
    got = run_sparse(so.RMSprop(param, mode="exact", **kw), steps, lrs, checkpoints=(n // 2,))
    assert_runs_close(got, ref, dtype, _names(opts.get("momentum", 0),
                                              opts.get("centered", False)), case)


@pytest.mark.requires_torch
def test_exact_defaults_match_torch(torch, rng):
    """RMSprop(p, mode="exact"): lr 1e-2, alpha 0.99, eps 1e-8, no momentum, not centered."""
    p0 = random_param(rng, 6, (2,), np.float64)
    param = p0.copy()
    steps = make_exact_steps(rng, 6, 100, (2,), np.float64)
    ref = run_torch_dense(torch, "RMSprop", p0, steps)
    opt = so.RMSprop(param, mode="exact")
    assert opt.lr == 1e-2
    got = run_sparse(opt, steps)
    assert_runs_close(got, ref, np.float64, ("square_avg",), "defaults")


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_state_names(option, mode):
    kw = OPTIONS[option]
    opt = so.RMSprop(np.zeros((4, 2)), mode=mode, **kw)
    opt.step(np.array([3, 3], dtype=np.int32), np.ones((2, 2)))
    opt.flush()
    state = opt.state_dict()["state"]
    want = _names(kw.get("momentum", 0), kw.get("centered", False))
    assert set(want) <= set(state)
    assert ("momentum_buffer" in state) == bool(kw.get("momentum"))
    assert ("grad_avg" in state) == bool(kw.get("centered"))
    for name in want:
        assert state[name].shape == (4, 2) and state[name].dtype == np.float64


# --------------------------------------------------------------------------- #
# lazy vs exact
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_lazy_and_exact_differ_when_rows_rest(rng, option):
    p0 = random_param(rng, 10, (2,), np.float64)
    steps = make_exact_steps(rng, 10, 300, (2,), np.float64, never=1, cold=4, p_touch=0.1)
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = so.RMSprop(param, lr=0.05, alpha=0.99, mode=mode, **OPTIONS[option])
        run_sparse(opt, steps)
        res[mode] = param
    rel = np.max(np.abs(res["lazy"] - res["exact"])) / max(1.0, np.max(np.abs(res["exact"])))
    assert rel > 1e-3, rel


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_lazy_and_exact_coincide_when_every_row_is_touched(rng, option, dtype):
    p0 = random_param(rng, 6, (3,), dtype)
    steps = make_exact_steps(rng, 6, 150, (3,), dtype, never=0, cold=0, p_touch=1.0)
    lrs = lr_schedule(rng, 150, 0.01)
    kw = OPTIONS[option]
    names = _names(kw.get("momentum", 0), kw.get("centered", False))
    res = {}
    for mode in ("lazy", "exact"):
        param = p0.copy()
        opt = so.RMSprop(param, lr=0.01, mode=mode, **kw)
        res[mode] = run_sparse(opt, steps, lrs, state_names=names)
    assert_runs_close(res["lazy"], res["exact"], dtype, names, "lazy vs exact")


# --------------------------------------------------------------------------- #
# lazy vs NumPy
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_shape", [(), (3,), (2, 2)], ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_lazy_matches_numpy(rng, option, dtype, index_dtype, row_shape):
    num_rows, n = 20, 60
    kw = dict(alpha=0.9, eps=1e-6, **OPTIONS[option])
    p0 = random_param(rng, num_rows, row_shape, dtype)
    param = p0.copy()
    opt = so.RMSprop(param, lr=0.01, mode="lazy", **kw)
    ref = NumpyLazyRMSprop(p0, lr=0.01, **kw)
    steps = make_exact_steps(rng, num_rows, n, row_shape, dtype, index_dtype, never=2, cold=3,
                             p_touch=0.3, empty_every=7)
    lrs = lr_schedule(rng, n, 0.01)
    for s, (idx, vals) in enumerate(steps):
        opt.lr = ref.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"step {s}")
    state = opt.state_dict()["state"]
    for name, arr in ref.state().items():
        assert_close(state[name], arr, dtype, err_msg=name)
    assert np.array_equal(param[:2], p0[:2])
    for name in ref.state():
        assert not np.any(state[name][:2]), name
    # a cold row (touched at step 1 only) keeps its state from then on
    assert_close(state["square_avg"][2], ref.sa[2], dtype)
    assert np.any(state["square_avg"][2])
