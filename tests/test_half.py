"""Half-precision tables (float16, bfloat16): conversions, stochastic rounding, and the lazy
Adam/AdamW/SGD steps against references written plainly in NumPy from the formulas.

The references keep float32 state and a float32 copy of the update, and round with NumPy's own
``astype`` (float16) or ml_dtypes' (bfloat16): independent of sparseopt's conversions.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt
from sparseopt import _core, _half, optim
from _helpers import assert_unchanged, snapshot


def _bf16():
    return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)


@pytest.fixture(params=["float16", "bfloat16"])
def half(request):
    return np.dtype(np.float16) if request.param == "float16" else _bf16()


def bits(a):
    return np.ascontiguousarray(a).view(np.uint16)


def widened(a):
    return a.astype(np.float32)


# -- conversions ------------------------------------------------------------------------------

def test_widen_is_exact_for_every_bit_pattern(half):
    h = np.arange(2**16, dtype=np.uint16).view(half)
    out = np.empty(h.shape, np.float32)
    _core.widen_half(h, out)
    ref = h.astype(np.float32)
    nan = np.isnan(ref)
    assert np.isnan(out[nan]).all()
    assert np.array_equal(out[~nan].view(np.uint32), ref[~nan].view(np.uint32))


def _probe_values(rng):
    parts = [(rng.standard_normal(20000) * s).astype(np.float32)
             for s in (1, 1e-3, 1e-5, 1e-7, 1e-9, 1e4, 7e4, 1e37)]
    parts.append(rng.integers(0, 2**32, 50000, dtype=np.uint64).astype(np.uint32).view(np.float32))
    # ties, the edges of the float16 range, subnormals, signed zeros
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.996, 65520, 65536, -65520,
               2**-24, 2**-25, 1.5 * 2**-25, 2**-14, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8,
               1 + 3 * 2**-8, 3.4e38, -3.4e38, 1e-40, -1e-45]
    parts.append(np.array(special, np.float32))
    return np.concatenate(parts).reshape(1, -1)


def test_nearest_matches_numpy_astype(rng, half):
    x = _probe_values(rng)
    out = np.empty(x.shape, half)
    _core.round_to_half(x, out, "nearest", 0, 0)
    with np.errstate(all="ignore"):
        ref = x.astype(half)
    nan = np.isnan(x)
    assert np.isnan(widened(out)[nan]).all()
    assert np.array_equal(bits(out)[~nan], bits(ref)[~nan])


def _next_up(h):
    """The next half value above each of h (finite, by bit arithmetic on sign-magnitude)."""
    b = bits(h).astype(np.int32)
    up = np.where(b & 0x8000, np.where(b == 0x8000, 1, b - 1), b + 1)
    return up.astype(np.uint16).view(h.dtype)


def _next_down(h):
    b = bits(h).astype(np.int32)
    down = np.where(b & 0x8000, b + 1, np.where(b == 0, 0x8001, b - 1))
    return down.astype(np.uint16).view(h.dtype)


def test_stochastic_gives_a_neighbour_and_keeps_specials(rng, half):
    x = _probe_values(rng)
    out = np.empty(x.shape, half)
    _core.round_to_half(x, out, "stochastic", 7, 3)
    y = widened(out)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    inf = np.isinf(x)
    assert np.array_equal(y[inf], x[inf])
    with np.errstate(all="ignore"):
        near = x.astype(half)
    n = widened(near)
    check = np.isfinite(n) & np.isfinite(x)
    lo = np.where(n <= x, n, widened(_next_down(near)))
    hi = np.where(n >= x, n, widened(_next_up(near)))
    assert ((y == lo) | (y == hi))[check].all()
    assert ((y == x) == (n == x))[check].all()  # representable values stay as they are


def test_stochastic_rounding_is_unbiased(half):
    # x sits 1/10 and 7/10 of the way between two neighbours; the mean of many independent
    # roundings (one per column) must be x within a few standard errors.
    one = np.float32(1.0)
    ulp = np.float32(2**-10 if half == np.float16 else 2**-7)
    for frac in (0.1, 0.7):
        x = np.full((1, 200_000), one + np.float32(frac) * ulp, np.float32)
        out = np.empty(x.shape, half)
        _core.round_to_half(x, out, "stochastic", 1, 0)
        up = (widened(out) > one).mean()
        assert set(np.unique(widened(out))) <= {one, one + ulp}
        se = np.sqrt(frac * (1 - frac) / x.size)
        assert abs(up - frac) < 5 * se


def test_stochastic_rounding_depends_on_seed_and_step_only(half):
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    runs = {}
    for seed, step in [(0, 0), (0, 0), (1, 0), (0, 1)]:
        out = np.empty(x.shape, half)
        _core.round_to_half(x, out, "stochastic", seed, step)
        runs.setdefault((seed, step), []).append(bits(out).copy())
    assert np.array_equal(*runs[(0, 0)])
    assert not np.array_equal(runs[(0, 0)][0], runs[(1, 0)][0])
    assert not np.array_equal(runs[(0, 0)][0], runs[(0, 1)][0])


# -- references -------------------------------------------------------------------------------

def _summed(indices, values):
    rows = np.unique(indices)
    sums = np.zeros((len(rows),) + values.shape[1:], np.float32)
    np.add.at(sums, np.searchsorted(rows, indices), values)  # in order of appearance
    return rows, sums


def _stored(x, dtype):
    return x.astype(dtype) if dtype != np.float32 else x


class AdamRef:
    """Lazy Adam/AdamW (SparseAdam's formula) in float32 NumPy on a widened half table."""

    def __init__(self, shape, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 decoupled=False, bias_correction="global", state_dtype=np.float32):
        self.h = dict(lr=lr, b1=betas[0], b2=betas[1], eps=eps, wd=weight_decay)
        self.amsgrad, self.decoupled, self.bias = amsgrad, decoupled, bias_correction
        self.sd = state_dtype
        self.m = np.zeros(shape, state_dtype)
        self.v = np.zeros(shape, state_dtype)
        self.vmax = np.zeros(shape, state_dtype)
        self.row_steps = np.zeros(shape[0], np.int64)

    def step_size(self, t):
        h = self.h
        if self.bias == "none":
            return np.float32(h["lr"])
        return np.float32(h["lr"] * np.sqrt(1 - h["b2"] ** t) / (1 - h["b1"] ** t))

    def step(self, table, indices, values, t):
        h, f = self.h, np.float32
        rows, g = _summed(indices, values)
        for k, r in enumerate(rows):
            if self.bias == "row":
                self.row_steps[r] += 1
            size = self.step_size(self.row_steps[r] if self.bias == "row" else t)
            p = table[r].astype(np.float32)
            m, v, vm = (a[r].astype(np.float32) for a in (self.m, self.v, self.vmax))
            gr = g[k]
            if self.decoupled and h["wd"]:
                p = p * f(1 - h["lr"] * h["wd"])
            elif h["wd"]:
                gr = gr + f(h["wd"]) * p
            m = m + (gr - m) * f(1 - h["b1"])
            v = v + (gr * gr - v) * f(1 - h["b2"])
            vh = v
            if self.amsgrad:
                vm = np.maximum(vm, v)
                vh = vm
            p = p - size * (m / (np.sqrt(vh) + f(h["eps"])))
            table[r] = p.astype(table.dtype)
            self.m[r], self.v[r], self.vmax[r] = (_stored(a, self.sd) for a in (m, v, vm))


class SgdRef:
    """Lazy SGD (torch.optim.SGD's formula, buffer from a row's first touch) in float32."""

    def __init__(self, shape, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 state_dtype=np.float32):
        self.h = dict(lr=lr, mu=momentum, damp=dampening, nesterov=nesterov, wd=weight_decay)
        self.sd = state_dtype
        self.buf = np.zeros(shape, state_dtype)
        self.row_steps = np.zeros(shape[0], np.int64)

    def step(self, table, indices, values, t):
        h, f = self.h, np.float32
        rows, g = _summed(indices, values)
        for k, r in enumerate(rows):
            p = table[r].astype(np.float32)
            gr = g[k] + f(h["wd"]) * p if h["wd"] else g[k]
            if h["mu"]:
                first = self.row_steps[r] == 0
                self.row_steps[r] += 1
                b = gr if first else f(h["mu"]) * self.buf[r].astype(np.float32) + f(1 - h["damp"]) * gr
                self.buf[r] = _stored(b, self.sd)
                d = gr + f(h["mu"]) * b if h["nesterov"] else b
            else:
                d = gr
            table[r] = (p - f(h["lr"]) * d).astype(table.dtype)


ADAM_CASES = [
    ("Adam", {}, {}),
    ("Adam", {"amsgrad": True}, {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}, {"weight_decay": 0.1}),
    ("Adam", {"bias_correction": "row"}, {"bias_correction": "row"}),
    ("Adam", {"bias_correction": "none"}, {"bias_correction": "none"}),
    ("AdamW", {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled": True}),
]
SGD_CASES = [
    ("SGD", {}, {}),
    ("SGD", {"weight_decay": 0.05}, {"weight_decay": 0.05}),
    ("SGD", {"momentum": 0.9}, {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05},
     {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05}),
    ("SGD", {"momentum": 0.8, "nesterov": True}, {"momentum": 0.8, "nesterov": True}),
]
CASES = ADAM_CASES + SGD_CASES


def _make(name, table, lr, kw, **extra):
    return getattr(optim, name)(table, lr=lr, **kw, **extra)


def _ref(name, shape, lr, kw, state_dtype=np.float32):
    cls = SgdRef if name == "SGD" else AdamRef
    return cls(shape, lr, state_dtype=state_dtype, **kw)


def _steps(rng, num_rows, width, n_steps, index_dtype):
    out = []
    for s in range(n_steps):
        n = 0 if s == 3 else int(rng.integers(1, 2 * num_rows))  # repeats; one empty step
        idx = rng.integers(0, num_rows, n).astype(index_dtype)
        out.append((idx, rng.standard_normal((n, width)).astype(np.float32)))
    return out


@pytest.mark.parametrize("state", ["float32", "half"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name,kw,ref_kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_nearest_equals_float32_update_rounded(rng, half, name, kw, ref_kw, index_dtype, state):
    num_rows, width, lr = 12, 300, 3e-2  # width > one 256-element block
    table = rng.standard_normal((num_rows, width)).astype(half)
    ref_table = table.copy()
    state_dtype = half if state == "half" else np.dtype(np.float32)
    opt = _make(name, table, lr, kw, rounding="nearest", state_dtype=state_dtype)
    ref = _ref(name, table.shape, lr, ref_kw, state_dtype)
    for t, (idx, g) in enumerate(_steps(rng, num_rows, width, 12, index_dtype), start=1):
        opt.step(idx, g)
        ref.step(ref_table, idx, g, t)
        assert np.array_equal(bits(table), bits(ref_table)), f"step {t}"
    if name != "SGD" or kw.get("momentum"):
        first = "exp_avg" if name != "SGD" else "momentum_buffer"
        got = opt.state[first]
        want = ref.m if name != "SGD" else ref.buf
        assert got.dtype == state_dtype
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("name,kw,ref_kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_stochastic_tracks_a_float32_run(rng, half, name, kw, ref_kw):
    # Same steps on a float32 table: the half table stays within a few half ulps of it.
    num_rows, width, lr = 20, 64, 1e-2
    start = rng.standard_normal((num_rows, width)).astype(half)
    table, table32 = start.copy(), widened(start)
    opt = _make(name, table, lr, kw, seed=3)
    opt32 = _make(name, table32, lr, kw)
    for idx, g in _steps(rng, num_rows, width, 30, np.int64):
        opt.step(idx, g)
        opt32.step(idx, g)
    eps = 2.0**-10 if half == np.float16 else 2.0**-7
    # Each step rounds once (an error below one ulp, zero on average); 30 steps add up to a few
    # ulps, more with momentum, whose buffer carries a rounding into later steps.
    err = np.abs(widened(table) - table32) / (np.abs(table32) + lr)
    assert err.mean() < 2 * eps
    assert err.max() < 64 * eps


# Every optimizer, both modes. The float32 steps are checked against torch and NumPy in their own
# test files; here a half table must follow them: with nearest rounding, each step equals the
# float32 step from the widened table, rounded to nearest by NumPy's / ml_dtypes' astype.
ALL_CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.02}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.02}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.9, "centered": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ("RowWiseAdagrad", {"lr": 0.1}),
    ("FTRL", {"lr": 0.1, "l1": 0.01, "l2": 0.01}),
]
ALL_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(ALL_CASES)]


def _round_to_half(opt, half, state_half):
    """Rounds a float32 optimizer's table (and, with half state, its state arrays) to `half`
    and back, as a half table's step stores them: rows a step did not write are half values
    already, which rounding leaves alone."""
    opt.param[...] = widened(opt.param.astype(half))
    if state_half:
        for a in opt.state.values():
            if a.dtype == np.float32:
                a[...] = widened(a.astype(half))


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("state", ["float32", "half"])
@pytest.mark.parametrize("name,kw", ALL_CASES, ids=ALL_IDS)
def test_every_optimizer_nearest_is_the_float32_step_rounded(rng, half, name, kw, mode, state):
    num_rows, width = 30, 20
    table = rng.standard_normal((num_rows, width)).astype(half)
    state_dtype = half if state == "half" else np.dtype(np.float32)
    opt = getattr(optim, name)(table, mode=mode, rounding="nearest", state_dtype=state_dtype, **kw)
    ref = getattr(optim, name)(widened(table), mode=mode, **kw)
    for key, a in opt.state.items():  # the same start (FTRL's accumulator starts at 0.1, rounded)
        ref.state[key][...] = a.astype(ref.state[key].dtype)

    def same(where):
        assert np.array_equal(widened(table), ref.param), where
        for key, a in opt.state.items():
            want = ref.state[key]
            got = widened(a) if a.dtype == state_dtype and state == "half" else a
            assert got.dtype == want.dtype and np.array_equal(got, want), (where, key)

    for t, (idx, g) in enumerate(_steps(rng, num_rows, width, 10, np.int64), start=1):
        opt.step(idx, g)
        ref.step(idx, g)
        _round_to_half(ref, half, state == "half")
        same(f"step {t}")
        if t in (5, 10):  # rows caught up by flush are rounded once too
            opt.flush(np.array([0, 3, 3, 29]) if t == 5 else None)
            ref.flush(np.array([0, 3, 3, 29]) if t == 5 else None)
            _round_to_half(ref, half, state == "half")
            same(f"flush after step {t}")


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("name,kw", ALL_CASES, ids=ALL_IDS)
def test_every_optimizer_with_stochastic_rounding_tracks_float32(rng, half, name, kw, mode):
    num_rows, width = 20, 64
    start = rng.standard_normal((num_rows, width)).astype(half)
    table, table32 = start.copy(), widened(start)
    opt = getattr(optim, name)(table, mode=mode, seed=5, **kw)
    opt32 = getattr(optim, name)(table32, mode=mode, **kw)
    for idx, g in _steps(rng, num_rows, width, 30, np.int64):
        opt.step(idx, g)
        opt32.step(idx, g)
    opt.flush()
    opt32.flush()
    eps = 2.0**-10 if half == np.float16 else 2.0**-7
    err = np.abs(widened(table) - table32) / (np.abs(table32) + kw["lr"])
    # Each step rounds once: an error below one ulp, zero on average. A momentum buffer carries
    # a rounding into the next ~1 / (1 - momentum) = 10 steps, so the worst element drifts more.
    assert err.mean() < 2 * eps
    assert err.max() < (256 if kw.get("momentum") else 64) * eps


def test_tiny_updates_move_the_mean_only_with_stochastic_rounding(half):
    # 400 SGD steps of lr * g = ulp/20 on a table of ones: float32 moves by 20 ulps, nearest
    # rounding never leaves 1.0, stochastic rounding follows float32 on average.
    ulp = 2.0**-10 if half == np.float16 else 2.0**-7
    rows, width, steps = 64, 64, 400
    runs = {}
    for rounding in ("stochastic", "nearest", None):
        table = np.ones((rows, width), half if rounding else np.float32)
        opt = optim.SGD(table, lr=ulp / 20, rounding=rounding)
        idx = np.arange(rows)
        g = -np.ones((rows, width), np.float32)
        for _ in range(steps):
            opt.step(idx, g)
        runs[rounding] = widened(table)
    moved32 = runs[None].mean() - 1
    assert abs(moved32 - steps * ulp / 20) < 1e-3 * moved32
    assert np.all(runs["nearest"] == 1.0)
    assert abs(runs["stochastic"].mean() - 1 - moved32) < 0.05 * moved32


@pytest.mark.parametrize("name,kw", [("Adam", {}), ("SGD", {"momentum": 0.9}),
                                     ("Adam", {"mode": "exact"}),
                                     ("SGD", {"momentum": 0.9, "weight_decay": 0.01, "mode": "exact"}),
                                     ("RMSprop", {"mode": "exact", "momentum": 0.5}),
                                     ("Adagrad", {}), ("RowWiseAdagrad", {}), ("FTRL", {})])
def test_same_bits_for_any_thread_count_and_rerun_and_seed_matters(rng, half, name, kw):
    # wide enough that a step is worth threads (kernels stay on one below 32k elements)
    start = rng.standard_normal((300, 128)).astype(half)
    steps = _steps(rng, 300, 128, 6, np.int64)

    def run(threads, seed=0):
        table = start.copy()
        opt = _make(name, table, 1e-2, kw, seed=seed, state_dtype=half, num_threads=threads)
        for idx, g in steps:
            opt.step(idx, g)
        return bits(table).copy()

    one = run(1)
    assert np.array_equal(one, run(2))
    assert np.array_equal(one, run(4))
    assert np.array_equal(one, run(1))
    assert not np.array_equal(one, run(1, seed=1))


@pytest.mark.parametrize("name,kw", [("Adam", {"amsgrad": True, "bias_correction": "row"}),
                                     ("SGD", {"momentum": 0.9}), ("Adam", {"mode": "exact"}),
                                     ("RMSprop", {"mode": "exact", "momentum": 0.9, "centered": True}),
                                     ("RowWiseAdagrad", {}), ("FTRL", {})])
@pytest.mark.parametrize("state", ["float32", "half"])
def test_state_dict_round_trip_continues_with_the_same_bits(rng, half, name, kw, state, tmp_path):
    state_dtype = half if state == "half" else np.float32
    table = rng.standard_normal((40, 8)).astype(half)
    opt = _make(name, table, 1e-2, kw, seed=11, state_dtype=state_dtype)
    steps = _steps(rng, 40, 8, 10, np.int64)
    for idx, g in steps[:5]:
        opt.step(idx, g)
    saved, saved_table = opt.state_dict(), table.copy()
    path = tmp_path / "opt.npz"
    sparseopt.save(path, opt)
    for idx, g in steps[5:]:
        opt.step(idx, g)
    for load in ("state_dict", "file"):
        again = saved_table.copy()
        other = _make(name, again, 1e-2, kw, state_dtype=state_dtype)  # seed comes from the snapshot
        if load == "state_dict":
            other.load_state_dict(saved)
        else:
            sparseopt.load(path, other)
        assert other.seed == 11 and other.rounding == "stochastic"
        for idx, g in steps[5:]:
            other.step(idx, g)
        assert np.array_equal(bits(again), bits(table)), load


# -- options and bad input --------------------------------------------------------------------

def test_float_tables_ignore_rounding_and_seed(rng):
    start = rng.standard_normal((10, 4)).astype(np.float32)
    idx, g = np.array([1, 3, 1]), rng.standard_normal((3, 4)).astype(np.float32)
    a, b = start.copy(), start.copy()
    optim.Adam(a).step(idx, g)
    opt = optim.Adam(b, rounding="nearest", seed=5, state_dtype=np.float32)
    opt.step(idx, g)
    assert np.array_equal(a, b)
    assert opt.rounding is None and opt.half is None
    assert "rounding" not in opt.state_dict()["hyperparams"]
    with pytest.raises(ValueError, match="state_dtype"):
        optim.Adam(start.copy(), state_dtype="float16")
    with pytest.raises(ValueError, match="rounding"):
        optim.Adam(start.copy(), rounding="up")
    with pytest.raises(ValueError, match="rounding applies to float16"):
        opt.rounding = "nearest"


def test_defaults_and_state_dtypes(half):
    table = np.zeros((5, 3), half)
    opt = optim.Adam(table)
    assert (opt.rounding, opt.seed, opt.state_dtype, opt.half) == ("stochastic", 0, "float32", half.name)
    assert opt.state["exp_avg"].dtype == np.float32
    opt = optim.AdamW(table, state_dtype="bfloat16" if half.name == "bfloat16" else np.float16)
    assert opt.state["exp_avg_sq"].dtype == half
    opt.rounding = "nearest"
    opt.seed = 2**64 - 1
    with pytest.raises(AttributeError, match="state_dtype is fixed"):
        opt.state_dtype = "float32"


@pytest.mark.parametrize("name,kw", [("Adam", {"amsgrad": True}), ("SGD", {"momentum": 0.9}),
                                     ("RMSprop", {"momentum": 0.9, "mode": "exact"}),
                                     ("RowWiseAdagrad", {}), ("FTRL", {})])
def test_bad_input_changes_nothing(rng, half, name, kw):
    table = rng.standard_normal((10, 4)).astype(half)
    opt = _make(name, table, 1e-2, kw, state_dtype=half)
    opt.step(np.array([1, 2]), rng.standard_normal((2, 4)).astype(np.float32))
    before = snapshot(opt, table)
    good_idx, good_g = np.array([0, 9, 9]), rng.standard_normal((3, 4)).astype(np.float32)
    # the half table's rule, not the generic "float32 or float64" (which float64 then fails)
    float32_only = f"values must have dtype float32 for a {np.dtype(half).name} table"
    bad = [
        ((good_idx, good_g.astype(half)), TypeError, float32_only),
        ((good_idx, good_g.astype(np.float64)), TypeError, float32_only),
        ((np.array([0, 10, 1]), good_g), IndexError, None),
        ((np.array([0, -1, 1]), good_g), IndexError, None),
        ((good_idx.astype(np.float32), good_g), TypeError, "indices"),
        ((good_idx, good_g[:, :3].copy()), ValueError, "values must have shape"),
        ((good_idx, rng.standard_normal((3, 8)).astype(np.float32)[:, ::2]), TypeError,
         "C-contiguous"),
    ]
    for (idx, g), exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.step(idx, g)
        assert_unchanged(opt, table, before)
    with pytest.raises(TypeError, match="step_bags takes float32"):
        opt.step_bags(np.zeros((1, 4), np.float32), np.array([0, 2]), np.array([1, 2]))
    assert_unchanged(opt, table, before)
    # a snapshot with another state dtype is refused before anything is copied
    sd = opt.state_dict()
    sd["hyperparams"]["state_dtype"] = "float32"
    with pytest.raises(ValueError, match="state_dtype"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    first = next(k for k in sd["state"] if k != "row_steps")
    sd["state"][first] = sd["state"][first].astype(np.float32)
    with pytest.raises(TypeError, match="dtype"):
        opt.load_state_dict(sd)
    assert_unchanged(opt, table, before)


def test_core_refuses_mismatched_arrays(half):
    table = np.zeros((4, 2), half)
    idx, g = np.array([1]), np.ones((1, 2), np.float32)
    o = _core.AdamOptions()
    m32, v16 = np.zeros((4, 2), np.float32), np.zeros((4, 2), half)
    before = bits(table).copy()

    def adam(param, m, v, rounding=("nearest", 0)):
        _core.adam_step(param, idx, g, None, m, v, None, None, None, None, None, None, o, 1, 1, rounding)

    with pytest.raises(TypeError, match="exp_avg_sq must have dtype float32 .the state_dtype"):
        adam(table, m32, v16)
    with pytest.raises(TypeError, match="exp_avg must have dtype float32, float16 or bfloat16"):
        adam(table, m32.astype(np.float64), m32)
    with pytest.raises(ValueError, match="rounding must be"):
        adam(table, m32, m32.copy(), ("up", 0))
    with pytest.raises(ValueError, match="must not share memory"):
        adam(table, m32, m32)
    with pytest.raises(TypeError, match="values must have the dtype of param .float64."):
        adam(np.zeros((4, 2)), m32, m32.copy())
    assert np.array_equal(bits(table), before) and not m32.any() and not v16.astype(np.float32).any()


def test_round_to_helper(half):
    x = np.array([[1.0, 1.0 + 2.0**-12]], np.float32)
    out = _half.round_to(x, np.empty(x.shape, half))
    assert widened(out)[0, 0] == 1.0


# -- gather_sum -------------------------------------------------------------------------------

@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("mode,weighted", [("sum", False), ("sum", True), ("mean", False)])
def test_gather_sum_equals_the_widened_float32_table(rng, half, index_dtype, mode, weighted):
    table = rng.standard_normal((50, 3, 7)).astype(half)  # row shape (3, 7): 21 elements
    lengths = rng.integers(0, 6, 40)
    lengths[[0, 7]] = 0  # empty bags
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    indices = rng.integers(0, 50, indptr[-1]).astype(index_dtype)  # repeats
    weights = rng.standard_normal(len(indices)).astype(np.float32) if weighted else None
    out = sparseopt.gather_sum(table, indptr, indices, weights, mode=mode)
    assert out.dtype == np.float32 and out.shape == (40, 3, 7)
    ref = sparseopt.gather_sum(widened(table), indptr, indices, weights, mode=mode)
    assert np.array_equal(out, ref)
    # and against NumPy, plainly
    plain = np.zeros((40, 3, 7), np.float32)
    for b in range(40):
        for p in range(indptr[b], indptr[b + 1]):
            plain[b] += (weights[p] if weighted else 1) * widened(table[indices[p]])
        if mode == "mean" and lengths[b]:
            plain[b] /= lengths[b]
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-6)
    for threads in (1, 2, 3):
        again = np.full_like(out, np.nan)
        sparseopt.gather_sum(table, indptr, indices, weights, mode=mode, out=again, num_threads=threads)
        assert np.array_equal(again, out)


def test_gather_sum_bad_input(half):
    table = np.ones((5, 4), half)
    indptr, indices = np.array([0, 2, 3]), np.array([0, 4, 1])
    out = np.zeros((2, 4), np.float32)
    with pytest.raises(TypeError, match="weights must have the dtype of float32"):
        sparseopt.gather_sum(table, indptr, indices, np.ones(3, half), out=out)
    with pytest.raises(TypeError, match="out must have dtype float32"):
        sparseopt.gather_sum(table, indptr, indices, out=np.zeros((2, 4), half))
    with pytest.raises(IndexError, match="out of range"):
        sparseopt.gather_sum(table, indptr, np.array([0, 5, 1]), out=out)
    with pytest.raises(ValueError, match="out must have shape"):
        sparseopt.gather_sum(table, indptr, indices, out=np.zeros((3, 4), np.float32))
    assert not out.any()


def test_info_lists_the_table_dtypes():
    _bf16()
    assert sparseopt.info()["table_dtypes"] == ["float32", "float64", "float16", "bfloat16"]


# -- topk -------------------------------------------------------------------------------------

def _rank_order(row, largest, magnitude):
    """Positions of a row from best to worst, written from topk's rules: NaN above every
    number, -0.0 == 0.0, ties by the lower index (np.lexsort: the last key is the primary)."""
    score = widened(row).astype(np.float64)
    score = np.abs(score) if magnitude else score
    nan = np.isnan(score)
    score = np.where(nan, 0.0, score) + 0.0
    idx = np.arange(row.size)
    return np.lexsort((idx, -score, ~nan)) if largest else np.lexsort((idx, score, nan))


@pytest.mark.parametrize("largest,magnitude", [(True, False), (False, False), (True, True), (False, True)])
@pytest.mark.parametrize("rows,n,k", [(1, 7, 3), (40, 300, 20), (3, 70_000, 5), (0, 5, 2)])
def test_topk_on_half_rows(rng, half, largest, magnitude, rows, n, k):
    x = rng.standard_normal((rows, n)) * 4
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])
    mask = rng.random(x.shape) < 0.1
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    x = x.astype(half)  # many ties: half values are coarse
    for threads in (1, 2):
        values, indices = sparseopt.topk(x, k, largest=largest, magnitude=magnitude, num_threads=threads)
        assert values.dtype == half and indices.dtype == np.int64 and values.shape == (rows, k)
        want = np.array([_rank_order(r, largest, magnitude)[:k] for r in x], np.int64).reshape(rows, k)
        assert np.array_equal(indices, want)
        assert np.array_equal(bits(values), bits(np.take_along_axis(x, want, axis=-1)))  # NaN bits kept
    unsorted = sparseopt.topk(x, k, largest=largest, magnitude=magnitude, sorted=False)[1]
    assert np.array_equal(np.sort(unsorted, axis=-1), np.sort(want, axis=-1))
    one = sparseopt.topk(x[0], k)[1] if rows else None
    if rows:
        assert np.array_equal(one, sparseopt.topk(x[:1], k)[1][0])


def test_topk_half_bad_input(half):
    x = np.zeros((4, 6), half)
    with pytest.raises(ValueError, match=r"k must be in \[1, n\]"):
        sparseopt.topk(x, 7)
    with pytest.raises(TypeError, match="C-contiguous"):
        sparseopt.topk(np.zeros((4, 12), half)[:, ::2], 2)
