"""mode="exact" bookkeeping, for every optimizer that has it: flush(), state_dict()
(no hidden flush), save/load/continue (bit-identical), rejected calls (change nothing).

- flush() may be called at any time: flushing often or only at the end gives the same
  result to the exact-mode tolerance (float32 rtol 1e-5, float64 rtol 1e-9).
- state_dict() does not flush: param is bit-identical before and after it, and a run that
  calls state_dict() every step is bit-identical to one that never does.
- state_dict() mid-run (no flush), loaded into a fresh optimizer on a copy of the param
  saved at the same moment and continued with the same steps: bit-identical to the
  uninterrupted run (param and every state array, after flush on both).
- A rejected call (out-of-range index, ...) raises and changes nothing: a later flush() is
  bit-identical to that of a twin that never saw the call.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt.optim as so

from _helpers import (
    FLOAT_DTYPES,
    assert_close_exact,
    assert_runs_close,
    assert_unchanged,
    lr_schedule,
    make_exact_steps,
    random_param,
    run_sparse,
    run_torch_dense,
    snapshot,
)

DTYPE_IDS = lambda d: np.dtype(d).name  # noqa: E731

# name: (class, keyword arguments, torch-named state arrays)
CONFIGS = {
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1), ("momentum_buffer",)),
    "sgd_nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), ("momentum_buffer",)),
    "sgd_weight_decay": ("SGD", dict(lr=0.05, weight_decay=0.1), ()),
    "sgd_momentum_weight_decay": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2,
                                              weight_decay=0.1), ("momentum_buffer",)),
    "sgd_nesterov_weight_decay": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True,
                                              weight_decay=1e-2), ("momentum_buffer",)),
    "rmsprop": ("RMSprop", dict(lr=0.01), ("square_avg",)),
    "rmsprop_momentum_centered": ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True),
                                  ("square_avg", "momentum_buffer", "grad_avg")),
    "adam": ("Adam", dict(lr=0.01), ("exp_avg", "exp_avg_sq")),
    "adam_amsgrad": ("Adam", dict(lr=0.01, betas=(0.5, 0.9), amsgrad=True),
                     ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    "adam_no_bias_correction": ("Adam", dict(lr=0.01, bias_correction="none"),
                                ("exp_avg", "exp_avg_sq")),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1), ("exp_avg", "exp_avg_sq")),
    "adamw_amsgrad": ("AdamW", dict(lr=0.01, amsgrad=True),
                      ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
}
TORCH_COMPARABLE = [k for k in sorted(CONFIGS) if k != "adam_no_bias_correction"]
NUM_ROWS, ROW_SHAPE = 12, (3,)


@pytest.fixture(params=sorted(CONFIGS))
def config(request):
    return request.param


def _new(config, param, **extra):
    cls_name, kw, _ = CONFIGS[config]
    return getattr(so, cls_name)(param, mode="exact", **dict(kw, **extra))


def _steps(rng, n, dtype=np.float64, **kw):
    # a mix of gradient sizes (Adam's near-eps path included) and resting rows
    row_scale = np.array([1.0, 1.0, 1e-7, 1.0, 1e-3, 1.0] * 2)
    opts = dict(never=1, cold=4, p_touch=0.3, empty_every=5, row_scale=row_scale)
    opts.update(kw)
    return make_exact_steps(rng, NUM_ROWS, n, ROW_SHAPE, dtype, np.int64, **opts)


def _lr0(config):
    return CONFIGS[config][1]["lr"]


def _assert_same_bits(opt_a, opt_b, what=""):
    assert np.array_equal(opt_a.param, opt_b.param), f"{what}: param differs"
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["step"] == sb["step"], what
    assert set(sa["state"]) == set(sb["state"]), what
    for name in sa["state"]:
        assert np.array_equal(np.asarray(sa["state"][name]), np.asarray(sb["state"][name])), (
            f"{what}: state {name!r} differs")


# --------------------------------------------------------------------------- #
# flush
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_flush_often_equals_flush_at_end(rng, config, dtype):
    n = 400
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, dtype)
    steps = _steps(rng, n, dtype)
    lrs = lr_schedule(rng, n, _lr0(config))
    names = CONFIGS[config][2]
    flush_at = {s for s in range(n) if s % 3 == 0 or rng.random() < 0.2}
    p_often, p_once = p0.copy(), p0.copy()
    often, once = _new(config, p_often), _new(config, p_once)
    for s, (idx, vals) in enumerate(steps):
        often.lr = once.lr = lrs[s]
        often.step(idx, vals)
        once.step(idx, vals)
        if s in flush_at:
            often.flush()
    res = {}
    for key, opt in (("often", often), ("once", once)):
        opt.flush()
        sd = opt.state_dict()
        assert sd["step"] == n
        res[key] = {n: (opt.param.copy(), {k: sd["state"][k] for k in names})}
    assert_runs_close(res["often"], res["once"], dtype, names, "flush often vs once")


def test_flush_twice_changes_nothing(rng, config):
    param = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    opt = _new(config, param)
    for idx, vals in _steps(rng, 60):
        opt.step(idx, vals)
    opt.flush()
    snap = snapshot(opt, param)
    opt.flush()
    assert_unchanged(opt, param, snap)
    assert opt.state_dict()["step"] == 60


def test_flush_before_any_step_changes_nothing(rng, config):
    param = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float32)
    opt = _new(config, param)
    snap = snapshot(opt, param)
    opt.flush()
    assert_unchanged(opt, param, snap)
    assert opt.state_dict()["step"] == 0


def test_flush_does_not_use_the_current_lr(rng, config):
    """flush() catches rows up with the learning rates of the steps they missed, not with
    whatever opt.lr is now."""
    n = 120
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, _lr0(config))
    pa, pb = p0.copy(), p0.copy()
    a, b = _new(config, pa), _new(config, pb)
    for s, (idx, vals) in enumerate(steps):
        a.lr = b.lr = lrs[s]
        a.step(idx, vals)
        b.step(idx, vals)
    b.lr = 37 * lrs[-1]
    a.flush()
    b.flush()
    names = CONFIGS[config][2]
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert_close_exact(pb, pa)
    for name in names:
        assert_close_exact(sb[name], sa[name], err_msg=name)


@pytest.mark.requires_torch
@pytest.mark.parametrize("config", TORCH_COMPARABLE)
def test_flush_at_random_times_matches_dense_torch(torch, rng, config):
    """Against torch at every flush point, lr changed between steps, and opt.lr changed
    just before some flushes."""
    n = 300
    cls_name, kw, names = CONFIGS[config]
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    param = p0.copy()
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, kw["lr"])
    checkpoints = sorted({int(c) for c in rng.choice(np.arange(1, n), size=8, replace=False)})
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=checkpoints, **kw)
    opt = _new(config, param)
    got = {}
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        if s + 1 in checkpoints or s + 1 == n:
            if s % 2:
                opt.lr = 5.0 * kw["lr"]  # the next step sets it back
            opt.flush()
            sd = opt.state_dict()["state"]
            got[s + 1] = (param.copy(), {k: sd[k].copy() for k in names})
    assert_runs_close(got, ref, np.float64, names, config)


# --------------------------------------------------------------------------- #
# state_dict: no hidden flush
# --------------------------------------------------------------------------- #
def test_state_dict_does_not_flush(rng, config):
    param = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    twin_param = param.copy()
    opt, twin = _new(config, param), _new(config, twin_param)
    steps = _steps(rng, 200)
    lrs = lr_schedule(rng, 200, _lr0(config))
    for s, (idx, vals) in enumerate(steps):
        opt.lr = twin.lr = lrs[s]
        opt.step(idx, vals)
        twin.step(idx, vals)
        before = param.copy()
        sd1 = opt.state_dict()
        assert np.array_equal(param, before), f"state_dict() changed param at step {s}"
        sd2 = opt.state_dict()
        for name in sd1["state"]:
            assert np.array_equal(np.asarray(sd1["state"][name]), np.asarray(sd2["state"][name])), (
                f"state_dict() changed state {name!r} at step {s}")
    assert np.array_equal(param, twin_param)
    opt.flush()
    twin.flush()
    _assert_same_bits(opt, twin, "state_dict every step vs never")


def test_state_dict_mid_run_is_not_flushed(rng, config):
    """Mid-run, some resting row must still be behind: state_dict() before and after a
    flush differ (so the checks above are not vacuous)."""
    param = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    opt = _new(config, param)
    for idx, vals in _steps(rng, 50, p_touch=0.1):
        opt.step(idx, vals)
    p_before = param.copy()
    sd_before = opt.state_dict()
    assert np.array_equal(param, p_before)
    opt.flush()
    sd_after = opt.state_dict()
    changed = not np.array_equal(param, p_before) or any(
        not np.array_equal(np.asarray(sd_before["state"][k]), np.asarray(sd_after["state"][k]))
        for k in CONFIGS[config][2]
    )
    assert changed, "flush() changed nothing after 50 steps with resting rows"


# --------------------------------------------------------------------------- #
# save / load / continue
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("save_at", [1, 37, 150])
def test_round_trip_bit_identical(rng, config, dtype, save_at):
    n = 220
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, dtype)
    steps = _steps(rng, n, dtype)
    lrs = lr_schedule(rng, n, _lr0(config))
    param = p0.copy()
    opt = _new(config, param)
    saved = saved_param = None
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        if s + 1 == save_at:
            saved = opt.state_dict()
            saved_param = param.copy()
    opt.flush()

    param2 = saved_param.copy()
    opt2 = _new(config, param2, lr=0.123)  # lr comes back with load_state_dict
    opt2.load_state_dict(saved)
    assert opt2.state_dict()["step"] == save_at
    assert opt2.lr == lrs[save_at - 1]
    for s in range(save_at, n):
        opt2.lr = lrs[s]
        opt2.step(*steps[s])
    opt2.flush()
    _assert_same_bits(opt2, opt, f"round trip at step {save_at}")


def test_round_trip_after_flush_and_double_load(rng, config):
    """Saving after a flush, loading twice (the second load replaces the first), and
    flushing right after the load all keep the bits of the uninterrupted run."""
    n, k = 160, 70
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, _lr0(config))
    param = p0.copy()
    opt = _new(config, param)
    early = None
    for s, (idx, vals) in enumerate(steps):
        opt.lr = lrs[s]
        opt.step(idx, vals)
        if s + 1 == 20:
            early = opt.state_dict()
        if s + 1 == k:
            opt.flush()
            saved, saved_param = opt.state_dict(), param.copy()
    opt.flush()

    param2 = saved_param.copy()
    opt2 = _new(config, param2)
    opt2.load_state_dict(early)
    opt2.load_state_dict(saved)
    opt2.flush()
    assert np.array_equal(param2, saved_param)
    for s in range(k, n):
        opt2.lr = lrs[s]
        opt2.step(*steps[s])
    opt2.flush()
    _assert_same_bits(opt2, opt, "after flush")


def test_load_into_a_used_optimizer(rng, config):
    """load_state_dict replaces everything, also the pending catch-up of an optimizer that
    has taken other steps: state_dict() right after the load is the saved one, and the
    continued run is bit-identical to the uninterrupted one."""
    n, k = 200, 120
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, _lr0(config))
    param = p0.copy()
    opt = _new(config, param)
    for s in range(n):
        opt.lr = lrs[s]
        opt.step(*steps[s])
        if s + 1 == k:
            saved, saved_param = opt.state_dict(), param.copy()
    opt.flush()

    param2 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    opt2 = _new(config, param2)
    for idx, vals in _steps(rng, 300):  # other steps, left unflushed
        opt2.step(idx, vals)
    param2[...] = saved_param
    opt2.load_state_dict(saved)
    sd = opt2.state_dict()
    assert sd["step"] == k
    assert set(sd["state"]) == set(saved["state"])
    for name in saved["state"]:
        assert np.array_equal(np.asarray(sd["state"][name]), np.asarray(saved["state"][name])), name
    for s in range(k, n):
        opt2.lr = lrs[s]
        opt2.step(*steps[s])
    opt2.flush()
    _assert_same_bits(opt2, opt, "load into a used optimizer")


# --------------------------------------------------------------------------- #
# rejected calls change nothing
# --------------------------------------------------------------------------- #
BAD_INDICES = {
    "equal_num_rows": [NUM_ROWS],
    "negative": [-1],
    "mixed_bad_last": [0, 5, 5, 11, NUM_ROWS],
    "mixed_negative_middle": [1, 2, -3, 4],
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=DTYPE_IDS)
@pytest.mark.parametrize("bad", sorted(BAD_INDICES))
def test_out_of_range_index_mid_run_changes_nothing(rng, config, bad, index_dtype):
    n, k = 120, 60
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, _lr0(config))
    param, twin_param = p0.copy(), p0.copy()
    opt, twin = _new(config, param), _new(config, twin_param)
    for s in range(n):
        opt.lr = twin.lr = lrs[s]
        if s == k:
            snap = snapshot(opt, param)
            idx = np.array(BAD_INDICES[bad], dtype=index_dtype)
            vals = np.ones((len(idx), *ROW_SHAPE))
            with pytest.raises(IndexError):
                opt.step(idx, vals)
            assert_unchanged(opt, param, snap)
            opt.flush()
            twin.flush()
            _assert_same_bits(opt, twin, "flush right after the rejected call")
        opt.step(*steps[s])
        twin.step(*steps[s])
    opt.flush()
    twin.flush()
    _assert_same_bits(opt, twin, "end of run")


def test_other_rejected_calls_mid_run_change_nothing(rng, config):
    n, k = 100, 40
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    param, twin_param = p0.copy(), p0.copy()
    opt, twin = _new(config, param), _new(config, twin_param)
    for s in range(n):
        if s == k:
            snap = snapshot(opt, param)
            good_idx = np.array([0, 3, 3], dtype=np.int64)
            with pytest.raises(TypeError):  # wrong values dtype
                opt.step(good_idx, np.ones((3, *ROW_SHAPE), dtype=np.float32))
            with pytest.raises(ValueError):  # values rows != len(indices)
                opt.step(good_idx, np.ones((2, *ROW_SHAPE)))
            with pytest.raises(ValueError):  # wrong row shape
                opt.step(good_idx, np.ones((3, ROW_SHAPE[0] + 1)))
            with pytest.raises(TypeError):  # float indices
                opt.step(good_idx.astype(np.float64), np.ones((3, *ROW_SHAPE)))
            with pytest.raises(ValueError):
                opt.lr = -1.0
            assert_unchanged(opt, param, snap)
        opt.step(*steps[s])
        twin.step(*steps[s])
    opt.flush()
    twin.flush()
    _assert_same_bits(opt, twin, "after rejected calls")


# --------------------------------------------------------------------------- #
# other properties of the exact mode
# --------------------------------------------------------------------------- #
def test_explicit_zero_gradient_equals_untouched(rng, config):
    """Touching a row with a zero gradient (or repeats that sum to zero) is the dense
    optimizer's zero-gradient step, the same as leaving the row untouched."""
    n = 150
    p0 = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    steps = _steps(rng, n)
    lrs = lr_schedule(rng, n, _lr0(config))
    with_zeros = []
    for idx, vals in steps:
        extra = rng.choice(NUM_ROWS, size=2, replace=False)
        v = rng.standard_normal(ROW_SHAPE)
        idx2 = np.concatenate([idx, extra[:1], extra[1:], extra[1:]]).astype(np.int64)
        vals2 = np.concatenate([vals, np.zeros((1, *ROW_SHAPE)), v[None], -v[None]])
        with_zeros.append((idx2, vals2))
    names = CONFIGS[config][2]
    pa, pb = p0.copy(), p0.copy()
    a = run_sparse(_new(config, pa), steps, lrs, state_names=names)
    b = run_sparse(_new(config, pb), with_zeros, lrs, state_names=names)
    assert_runs_close(b, a, np.float64, names, "explicit zeros vs untouched")


def test_thread_count_does_not_change_bits(rng, config):
    num_rows, n = 4000, 12
    p0 = rng.standard_normal((num_rows, 8))
    steps = []
    for s in range(n):
        idx = rng.integers(0, num_rows // (1 + s % 3), size=3000).astype(np.int64)
        steps.append((idx, rng.standard_normal((3000, 8))))
    runs = []
    for nt in (1, 2):
        param = p0.copy()
        opt = _new(config, param, num_threads=nt)
        for idx, vals in steps:
            opt.step(idx, vals)
        opt.flush()
        runs.append(opt)
    _assert_same_bits(runs[0], runs[1], "num_threads 1 vs 2")


@pytest.mark.requires_torch
@pytest.mark.parametrize("config", TORCH_COMPARABLE)
def test_threaded_big_table_matches_dense_torch(torch, rng, config):
    """The parallel kernels and catch-up (num_threads=2, a table big enough to split)
    against the dense optimizer, so that "identical for any thread count" is not
    "identically wrong"."""
    cls_name, kw, names = CONFIGS[config]
    num_rows, n, nnz = 4000, 16, 2500
    p0 = rng.standard_normal((num_rows, 4))
    steps = []
    for s in range(n):
        idx = rng.integers(0, num_rows // (1 + s % 4), size=nnz).astype(np.int64)
        steps.append((idx, rng.standard_normal((nnz, 4))))
    lrs = lr_schedule(rng, n, kw["lr"])
    ref = run_torch_dense(torch, cls_name, p0, steps, lrs, checkpoints=(7,), **kw)
    param = p0.copy()
    got = run_sparse(_new(config, param, num_threads=2), steps, lrs, checkpoints=(7,))
    assert_runs_close(got, ref, np.float64, names, config)


def test_step_count_and_empty_steps(rng, config):
    param = random_param(rng, NUM_ROWS, ROW_SHAPE, np.float64)
    opt = _new(config, param)
    empty = (np.zeros(0, dtype=np.int64), np.zeros((0, *ROW_SHAPE)))
    for _ in range(3):
        opt.step(*empty)
    opt.flush()
    assert opt.state_dict()["step"] == 3
    opt.step(np.array([4, 4], dtype=np.int64), np.ones((2, *ROW_SHAPE)))
    opt.flush()
    opt.flush()
    assert opt.state_dict()["step"] == 4
