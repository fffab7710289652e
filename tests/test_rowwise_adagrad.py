"""sparseopt.optim.RowWiseAdagrad against a NumPy transcription of its formula (one
accumulator per row, FBGEMM's / TorchRec's row-wise Adagrad):

    per touched, coalesced row r with gradient row g (row_width elements):
        sum[r] += mean(g**2)
        p[r]   -= lr * g / (sqrt(sum[r]) + eps)

The reference works in the table's dtype throughout, as the kernel does; the last tests
also pin the kernel's order of operations, bit for bit. No torch class has this
formula, except on a table with one element per row, where it is plain Adagrad.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt import _core
from sparseopt.optim import RowWiseAdagrad

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
    torch_sparse_grad,
)


class NumpyRowWiseAdagrad:
    def __init__(self, param, lr=1e-2, eps=1e-10):
        self.p = np.array(param, copy=True)
        self.s = np.zeros(len(self.p), dtype=self.p.dtype)
        self.lr, self.eps = lr, eps

    def step(self, idx, vals):
        u, g = coalesce_ref(idx, vals)[:2]
        if u.size == 0:
            return
        dt = self.p.dtype.type
        g = g.reshape(len(u), -1)  # (rows, row_width)
        self.s[u] = self.s[u] + np.mean(g * g, axis=1)
        denom = np.sqrt(self.s[u]) + dt(self.eps)
        flat = self.p.reshape(len(self.p), -1)
        flat[u] = flat[u] - dt(self.lr) * g / denom[:, None]


# --------------------------------------------------------------------------- #
# against the NumPy formula
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_numpy_formula_with_lr_schedule(rng, dtype, index_dtype, row_shape):
    num_rows, n_steps = 60, 60
    param = random_param(rng, num_rows, row_shape, dtype)
    p0 = param.copy()
    steps = make_steps(
        rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=7, hot_rows=3
    )
    lrs = [0.3 * 0.95**s for s in range(n_steps)]
    ref = NumpyRowWiseAdagrad(param, lr=lrs[0], eps=1e-8)
    opt = RowWiseAdagrad(param, lr=lrs[0], eps=1e-8)
    assert opt.param is param
    for s, (idx, vals) in enumerate(steps):
        opt.lr = ref.lr = lrs[s]
        opt.step(idx, vals)
        ref.step(idx, vals)
        assert_close(param, ref.p, dtype, err_msg=f"param, step {s}")
        assert_close(opt.state["sum"], ref.s, dtype, err_msg=f"sum, step {s}")
    assert opt.step_count == n_steps
    assert np.array_equal(param[:3], p0[:3])
    assert np.all(opt.state["sum"][:3] == 0)


@pytest.mark.parametrize("row_width", [1, 7, 8, 9, 64, 100], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_row_widths_around_the_summation_lanes(rng, dtype, row_width):
    """The sum of squares runs in lanes of 8 plus a tail: every width gives the mean."""
    num_rows = 40
    param = random_param(rng, num_rows, (row_width,), dtype)
    ref = NumpyRowWiseAdagrad(param, lr=0.1)
    opt = RowWiseAdagrad(param, lr=0.1)
    for idx, vals in make_steps(rng, num_rows, 50, (row_width,), dtype, np.int64, empty_every=9):
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    assert_close(opt.state["sum"], ref.s, dtype)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 25),
    n_steps=st.integers(1, 12),
    row_shape=st.sampled_from(ROW_SHAPES + ((11,),)),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    lr=st.sampled_from([0.0, 0.01, 0.5]),
    eps=st.sampled_from([1e-10, 1e-3, 1.0]),
)
def test_random_sequences_match_numpy(
    seed, num_rows, n_steps, row_shape, dtype, index_dtype, lr, eps
):
    rng = np.random.default_rng(seed)
    param = random_param(rng, num_rows, row_shape, dtype)
    ref = NumpyRowWiseAdagrad(param, lr=lr, eps=eps)
    opt = RowWiseAdagrad(param, lr=lr, eps=eps)
    for idx, vals in make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, 3):
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert_close(param, ref.p, dtype)
    assert_close(opt.state["sum"], ref.s, dtype)
    assert opt.state_dict()["step"] == n_steps


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_one_element_rows_are_torch_adagrad(torch, rng, dtype):
    """With one element per row, mean(g**2) = g**2: row-wise Adagrad is torch.optim.Adagrad
    (lr_decay = 0, initial_accumulator_value = 0) on a 1-D table."""
    num_rows, n_steps = 50, 50
    param = random_param(rng, num_rows, (), dtype)
    p = torch.nn.Parameter(torch.from_numpy(param.copy()))
    ref = torch.optim.Adagrad([p], lr=0.2, eps=1e-6)
    opt = RowWiseAdagrad(param, lr=0.2, eps=1e-6)
    for idx, vals in make_steps(rng, num_rows, n_steps, (), dtype, np.int64, empty_every=5):
        with torch.sparse.check_sparse_tensor_invariants(True):
            p.grad = torch_sparse_grad(torch, idx, vals, p.shape)
            ref.step()
        opt.step(idx, vals)
        assert_close(param, p.detach().numpy(), dtype)
        assert_close(opt.state["sum"], ref.state[p]["sum"].numpy(), dtype)


# --------------------------------------------------------------------------- #
# focused behaviours
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_step_by_hand(dtype):
    # Row 2 appears twice: g = [1, -1] + [1, 3] = [2, 2]; mean(g**2) = (4 + 4) / 2 = 4, so
    # sum[2] = 4 and p[2] -= lr * g / (sqrt(4) + eps) = 0.5 * [2, 2] / (2 + 2) = [0.25, 0.25].
    # Row 0: g = [3, 4]; mean(g**2) = (9 + 16) / 2 = 12.5; with eps = 2 the multiplier
    # 0.5 / (sqrt(12.5) + 2) is not a round number, so only sum[0] = 12.5 is checked exactly.
    param = np.zeros((4, 2), dtype)
    param[2] = [1.0, -1.0]
    opt = RowWiseAdagrad(param, lr=0.5, eps=2.0)
    opt.step(np.array([2, 0, 2], np.int32), np.array([[1, -1], [3, 4], [1, 3]], dtype))
    assert np.array_equal(param[2], np.array([0.75, -1.25], dtype))
    assert np.array_equal(opt.state["sum"], np.array([12.5, 0.0, 4.0, 0.0], dtype))
    expect0 = -0.5 * np.array([3.0, 4.0]) / (math.sqrt(12.5) + 2.0)
    assert_close(param[0], expect0.astype(dtype), dtype)
    assert np.array_equal(param[[1, 3]], np.zeros((2, 2), dtype))


def test_duplicates_are_coalesced_before_squaring():
    param = np.zeros((3, 2))
    opt = RowWiseAdagrad(param, lr=1.0, eps=1e-300)
    opt.step(np.array([1, 1], np.int64), np.ones((2, 2)))
    # coalesced: g = [2, 2], mean(g**2) = 4 (per entry it would be 1 + 1 = 2)
    assert opt.state["sum"][1] == 4.0
    assert np.array_equal(param[1], [-1.0, -1.0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_gradient_changes_nothing(rng, dtype):
    """A touched row with a zero gradient keeps parameter and accumulator bit for bit, also
    while its accumulator is still 0 (so lazy updates are exact)."""
    param = random_param(rng, 10, (5,), dtype)
    opt = RowWiseAdagrad(param, lr=0.3, eps=1e-10)
    opt.step(np.array([1, 2], np.int64), rng.standard_normal((2, 5)).astype(dtype))
    p1, s1 = param.copy(), opt.state["sum"].copy()
    opt.step(np.array([1, 5, 5], np.int64), np.zeros((3, 5), dtype))
    assert np.array_equal(param, p1)
    assert np.array_equal(opt.state["sum"], s1)
    assert opt.state["sum"][5] == 0


def test_untouched_rows_bit_identical(rng):
    param = random_param(rng, 80, (3,), np.float32)
    p0 = param.copy()
    opt = RowWiseAdagrad(param, lr=0.1)
    rows = np.array([0, 40, 79, 0], dtype=np.int64)
    for _ in range(4):
        opt.step(rows, rng.standard_normal((4, 3)).astype(np.float32))
    mask = np.ones(80, dtype=bool)
    mask[[0, 40, 79]] = False
    assert np.array_equal(param[mask], p0[mask])
    assert np.all(opt.state["sum"][mask] == 0)
    assert not np.array_equal(param[~mask], p0[~mask])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_steps_count_and_change_nothing(rng, dtype):
    param = random_param(rng, 6, (2,), dtype)
    p0 = param.copy()
    opt = RowWiseAdagrad(param)
    for _ in range(3):
        opt.step(*empty_step((2,), dtype, np.int32))
    assert np.array_equal(param, p0)
    assert opt.step_count == 3
    assert np.all(opt.state["sum"] == 0)


def test_zero_width_rows_change_nothing():
    param = np.zeros((5, 0), np.float32)
    opt = RowWiseAdagrad(param, lr=0.1)
    opt.step(np.array([1, 3, 1], np.int64), np.zeros((3, 0), np.float32))
    assert np.array_equal(opt.state["sum"], np.zeros(5, np.float32))


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=lambda s: f"row{s}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_is_one_value_per_row(rng, dtype, row_shape):
    param = random_param(rng, 9, row_shape, dtype)
    opt = RowWiseAdagrad(param)
    s = opt.state["sum"]
    assert s.shape == (9,) and s.dtype == np.dtype(dtype) and s.flags.c_contiguous
    assert set(opt.state) == {"sum"}
    assert opt.state_dict()["hyperparams"] == {"lr": 1e-2, "eps": 1e-10}
    assert opt.lr == 1e-2


# --------------------------------------------------------------------------- #
# state_dict / load_state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_round_trip_bit_identical(rng, dtype):
    num_rows, row_shape = 30, (2, 3)
    hp = dict(lr=0.1, eps=1e-9)
    param = random_param(rng, num_rows, row_shape, dtype)
    steps = make_steps(rng, num_rows, 12, row_shape, dtype, np.int64, empty_every=4)
    k = 5
    opt = RowWiseAdagrad(param, **hp)
    for idx, vals in steps[:k]:
        opt.step(idx, vals)
    opt.lr = 0.07
    saved = opt.state_dict()
    saved_param = param.copy()
    for idx, vals in steps[k:]:
        opt.step(idx, vals)

    param2 = saved_param.copy()
    opt2 = RowWiseAdagrad(param2, **hp)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.07 and opt2.step_count == k
    for idx, vals in steps[k:]:
        opt2.step(idx, vals)
    assert np.array_equal(param2, param)
    assert np.array_equal(opt2.state["sum"], opt.state["sum"])
    assert opt2.step_count == opt.step_count == len(steps)


def test_load_state_dict_rejects_a_param_shaped_sum(rng):
    """Adagrad's per-element sum does not fit: the row-wise sum has shape (num_rows,)."""
    param = random_param(rng, 6, (3,), np.float64)
    opt = RowWiseAdagrad(param, lr=0.1)
    opt.step(np.array([1], np.int64), np.ones((1, 3)))
    sd = opt.state_dict()
    sd["state"]["sum"] = np.ones((6, 3))
    snap = snapshot(opt, param)
    with pytest.raises(ValueError, match="sum"):
        opt.load_state_dict(sd)
    assert_unchanged(opt, param, snap)


# --------------------------------------------------------------------------- #
# hyper-parameters
# --------------------------------------------------------------------------- #
BAD_HYPER = {
    "lr_negative": (dict(lr=-0.1), "lr"),
    "lr_nan": (dict(lr=math.nan), "lr"),
    "lr_inf": (dict(lr=math.inf), "lr"),
    "lr_string": (dict(lr="0.1"), "lr"),
    "eps_zero": (dict(eps=0.0), "eps"),
    "eps_negative": (dict(eps=-1e-10), "eps"),
    "eps_nan": (dict(eps=math.nan), "eps"),
    "lr_over_eps_overflows": (dict(lr=1e10, eps=1e-310), "lr / eps"),
    "num_threads_negative": (dict(num_threads=-1), "num_threads"),
}


@pytest.mark.parametrize("case", sorted(BAD_HYPER))
def test_construct_bad_hyperparameter(rng, case):
    kw, name = BAD_HYPER[case]
    param = rng.standard_normal((8, 2))
    p0 = param.copy()
    with pytest.raises(ValueError, match=name):
        RowWiseAdagrad(param, **kw)
    assert np.array_equal(param, p0)


def test_edge_values_accepted(rng):
    param = rng.standard_normal((8, 2))
    opt = RowWiseAdagrad(param, lr=0.0, eps=5e-324)
    p0 = param.copy()
    opt.step(np.array([1, 2], np.int64), np.ones((2, 2)))
    assert np.array_equal(param, p0)  # lr = 0 moves nothing
    assert np.array_equal(opt.state["sum"][1:3], [1.0, 1.0])


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, 1e300], ids=["neg", "nan", "inf", "big"])
def test_set_bad_lr_changes_nothing(rng, bad):
    param = rng.standard_normal((8, 2))
    opt = RowWiseAdagrad(param, lr=0.1, eps=1e-300)
    opt.step(np.array([1], np.int64), np.ones((1, 2)))
    snap = snapshot(opt, param)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = bad
    assert_unchanged(opt, param, snap)
    assert opt.lr == 0.1


# --------------------------------------------------------------------------- #
# the binding's checks of the per-row state array (TypeError / ValueError naming it)
# --------------------------------------------------------------------------- #
def _bad_sums():
    ro = np.zeros(8)
    ro.flags.writeable = False
    return {
        "none": (None, TypeError),
        "list": ([0.0] * 8, TypeError),
        "float32": (np.zeros(8, np.float32), TypeError),
        "int64": (np.zeros(8, np.int64), TypeError),
        "strided": (np.zeros(16)[::2], TypeError),
        "read_only": (ro, TypeError),
        "too_short": (np.zeros(7), ValueError),
        "param_shaped": (np.zeros((8, 2)), ValueError),
        "column": (np.zeros((8, 1)), ValueError),
        "0d": (np.array(0.0), ValueError),
    }


@pytest.mark.parametrize("case", sorted(_bad_sums()))
def test_core_rejects_bad_sum(rng, case):
    bad, exc = _bad_sums()[case]
    param = rng.standard_normal((8, 2))
    p0 = param.copy()
    options = _core.RowWiseAdagradOptions()
    with pytest.raises(exc, match="sum"):
        _core.rowwise_adagrad_step(param, np.array([1, 2], np.int64), np.ones((2, 2)), None, bad,
                                   options, 0)
    assert np.array_equal(param, p0)


def test_core_rejects_values_sharing_memory_with_sum(rng):
    param = rng.standard_normal(8)
    p0 = param.copy()
    buf = np.zeros(10)
    sum_, values = buf[:8], buf[6:8]
    with pytest.raises(ValueError, match="share memory"):
        _core.rowwise_adagrad_step(param, np.array([1, 2], np.int64), values, None, sum_,
                                   _core.RowWiseAdagradOptions(), 0)
    assert np.array_equal(param, p0) and np.array_equal(buf, np.zeros(10))


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


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_thread_count_invariant(rng, dtype):
    index_dtype = np.int32 if dtype == np.float32 else np.int64
    p0 = random_param(rng, NUM_ROWS, (WIDTH,), dtype)
    steps = _big_steps(rng, dtype, index_dtype)
    results = {}
    for nt in (1, 2, 0):
        param = p0.copy()
        opt = RowWiseAdagrad(param, lr=0.05, num_threads=nt)
        for idx, vals in steps:
            opt.step(idx, vals)
        results[nt] = (param, opt.state_dict())
    p1, sd1 = results[1]
    assert not np.array_equal(p1, p0)
    for nt in (2, 0):
        assert np.array_equal(results[nt][0], p1), f"num_threads=1 vs {nt}: param differs"
        assert np.array_equal(results[nt][1]["state"]["sum"], sd1["state"]["sum"]), nt
    ref = NumpyRowWiseAdagrad(p0, lr=0.05)
    for idx, vals in steps:
        ref.step(idx, vals)
    assert_close(results[2][0], ref.p, dtype)
    assert_close(results[2][1]["state"]["sum"], ref.s, dtype)


# --------------------------------------------------------------------------- #
# bit for bit: the arithmetic in the table's precision, in the documented order
# --------------------------------------------------------------------------- #
def _rowwise_bits_ref(p, s, idx, vals, lr, eps):
    """One step written out scalar by scalar in the table's dtype (every NumPy scalar
    operation rounds to it, as the kernel's do): eight partial sums of squares, part l
    taking elements l, l + 8, ... in order, combined pairwise; then the row's sum, its
    multiplier and the update."""
    dt = p.dtype.type
    u, g = coalesce_ref(idx, vals)[:2]
    if u.size == 0:
        return
    flat = p.reshape(len(p), -1)
    g = g.reshape(len(u), -1)
    w = flat.shape[1]
    for k, r in enumerate(u.tolist()):
        part = [dt(0)] * 8
        for j in range(w):
            part[j % 8] = dt(part[j % 8] + dt(g[k, j] * g[k, j]))
        sq = dt(dt(dt(part[0] + part[1]) + dt(part[2] + part[3]))
                + dt(dt(part[4] + part[5]) + dt(part[6] + part[7])))
        s[r] = dt(s[r] + dt(sq / dt(w)))
        m = dt(dt(lr) / dt(np.sqrt(s[r]) + dt(eps)))
        for j in range(w):
            flat[r, j] = dt(flat[r, j] - dt(m * g[k, j]))


@pytest.mark.parametrize("row_width", [1, 7, 8, 9, 16, 64, 100], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_bits_are_the_formula_in_the_tables_precision(rng, dtype, row_width):
    """float32 tables compute in float32 (FBGEMM's precision), float64 tables in float64:
    the same bits as a scalar transcription in that dtype, over steps with repeats."""
    num_rows = 30
    param = random_param(rng, num_rows, (row_width,), dtype)
    p_ref = param.copy()
    s_ref = np.zeros(num_rows, dtype)
    opt = RowWiseAdagrad(param, lr=0.07, eps=1e-6)
    for idx, vals in make_steps(rng, num_rows, 12, (row_width,), dtype, np.int64, empty_every=5,
                                hot_rows=2):
        opt.step(idx, vals)
        _rowwise_bits_ref(p_ref, s_ref, idx, vals, 0.07, 1e-6)
        np.testing.assert_array_equal(param, p_ref)
        np.testing.assert_array_equal(opt.state["sum"], s_ref)


BAD_IN_FLOAT32 = [(1.0, 1e-50), (1e-3, 1e-44), (1e39, 1.0)]  # eps 0, lr / eps or lr overflow


@pytest.mark.parametrize("lr, eps", BAD_IN_FLOAT32)
def test_hyperparameters_out_of_float32_refused_before_any_step(rng, lr, eps):
    """A float32 table computes in float32: an eps that is 0 there, or an lr / eps that
    overflows it, is refused at construction and when set (the optimizer keeps its value),
    while a float64 table takes them and steps to finite values."""
    param = random_param(rng, 10, (8,), np.float32)
    with pytest.raises(ValueError, match="no finite lr / eps in float32"):
        RowWiseAdagrad(param, lr=lr, eps=eps)
    opt = RowWiseAdagrad(param, lr=1e-2, eps=1e-6)
    before = snapshot(opt, param)
    name, value = ("lr", lr) if eps == 1.0 else ("eps", eps)
    with pytest.raises(ValueError, match="no finite lr / eps in float32"):
        setattr(opt, name, value)
    assert (opt.lr, opt.eps) == (1e-2, 1e-6)
    assert_unchanged(opt, param, before)
    idx = np.array([1, 3, 1])
    vals = rng.standard_normal((3, 8))
    wide = random_param(rng, 10, (8,), np.float64)
    RowWiseAdagrad(wide, lr=lr, eps=eps).step(idx, vals)
    assert np.isfinite(wide).all()


@pytest.mark.parametrize("lr, eps", BAD_IN_FLOAT32)
@pytest.mark.parametrize("table", ["float32", "bfloat16"])
def test_the_step_itself_refuses_them_and_writes_nothing(rng, lr, eps, table):
    """The core step checks too (a C++ caller has no optimizer object): nothing written. A
    half table computes in float32, so the same bounds apply."""
    dtype = np.float32 if table == "float32" else np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    param = rng.standard_normal((10, 8)).astype(dtype)
    state = np.zeros(10, np.float32)
    p0, s0 = param.copy(), state.copy()
    options = _core.RowWiseAdagradOptions()
    options.lr, options.eps = lr, eps
    options.validate()  # fine in float64
    with pytest.raises(ValueError, match="no finite lr / eps in float32"):
        _core.rowwise_adagrad_check_options(param, options)
    with pytest.raises(ValueError, match="no finite lr / eps in float32"):
        _core.rowwise_adagrad_step(param, np.array([1, 3, 1]), np.ones((3, 8), np.float32), None, state,
                                   options, 0)
    assert np.array_equal(param.view(np.uint8), p0.view(np.uint8))
    assert np.array_equal(state, s0)
    _core.rowwise_adagrad_check_options(np.zeros((10, 8)), options)


def test_the_largest_float32_bounds_are_taken(rng):
    """Just inside: eps = 1e-38 (a float32 normal) with lr = 1 gives lr / eps = 1e38 < 3.4e38."""
    param = random_param(rng, 10, (8,), np.float32)
    p0 = param.copy()
    opt = RowWiseAdagrad(param, lr=1.0, eps=1e-38)
    opt.step(np.array([2]), np.zeros((1, 8), np.float32))  # a zero gradient moves nothing
    np.testing.assert_array_equal(param, p0)
    opt.step(np.array([2]), np.ones((1, 8), np.float32))
    assert np.isfinite(param).all() and not np.array_equal(param, p0)
