"""Regression tests for the hardening audit (issue 13): corrupt checkpoints, thread counts,
state arrays aliased by the gradient, oversized sampler arguments, a rejected exact step's
history, hogwild thread workers that never stop, and seeds that follow the test, not the
folder pytest runs from. Each test failed (or crashed the process) before its fix."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import sparseopt
from sparseopt import _args, _core, hogwild, sampled
from sparseopt.optim import FTRL, SGD, Adagrad, Adam, AdamW, RMSprop, RowWiseAdagrad

from _helpers import assert_unchanged, make_steps, seed_for_test, snapshot

NUM_ROWS = 16

EXACT = {
    "sgd_momentum": lambda p: SGD(p, lr=0.1, momentum=0.9, mode="exact"),
    "sgd_momentum_wd": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, mode="exact"),
    "sgd_wd": lambda p: SGD(p, lr=0.1, weight_decay=0.01, mode="exact"),
    "rmsprop_momentum": lambda p: RMSprop(p, lr=0.01, momentum=0.9, centered=True, mode="exact"),
    "adam": lambda p: Adam(p, lr=0.01, mode="exact"),
    "adamw_amsgrad": lambda p: AdamW(p, lr=0.01, amsgrad=True, mode="exact"),
}

ALL = {
    **EXACT,
    "sgd": lambda p: SGD(p, lr=0.1),
    "sgd_momentum_lazy": lambda p: SGD(p, lr=0.1, momentum=0.9),
    "adagrad": lambda p: Adagrad(p, lr=0.1),
    "rmsprop_lazy": lambda p: RMSprop(p, lr=0.01, momentum=0.9, centered=True),
    "adam_lazy_row": lambda p: Adam(p, lr=0.01, amsgrad=True, bias_correction="row"),
    "rowwise_adagrad": lambda p: RowWiseAdagrad(p, lr=0.1),
    "ftrl": lambda p: FTRL(p, lr=0.1, l1=0.01),
}


def _trained(rng, make, steps=3, dtype=np.float64):
    param = rng.standard_normal((NUM_ROWS, 4)).astype(dtype)
    opt = make(param)
    batches = make_steps(rng, NUM_ROWS, steps, (4,), dtype, np.int64)
    for idx, vals in batches:
        opt.step(idx, vals)
    return opt, param


# -- 1. corrupt checkpoints --------------------------------------------------------------------
def _corruptions(sd):
    """(description, corrupt state dict) pairs for a snapshot of an exact-mode optimizer."""
    step = sd["step"]

    def with_state(name, fn):
        state = {k: v.copy() for k, v in sd["state"].items()}
        state[name] = fn(state[name])
        return {"step": step, "hyperparams": dict(sd["hyperparams"]), "state": state}

    def set_first(value):
        def fn(a):
            a.flat[0] = value
            return a
        return fn

    cases = []
    for value in (-10**11, -5, -1, step + 1, 10**11):
        cases.append((f"last_step={value}", with_state("last_step", set_first(value))))
    for value in (np.nan, np.inf, -np.inf):
        cases.append((f"history={value}", with_state("history", set_first(value))))
    cases.append(("history lr < 0", with_state("history", set_first(-1.0))))
    cases.append(("history truncated", with_state("history", lambda a: a[:-1].copy())))
    cases.append(("history float32", with_state("history", lambda a: a.astype(np.float32))))
    if sd["state"]["window"].size:
        cases.append(("window nan", with_state("window", set_first(np.nan))))
    cases.append(("window reshaped", with_state("window", lambda a: np.zeros((a.shape[0] + 1, a.shape[1])))))
    for bad_step in (-1, step + 5, 2**62 + 1, 2**63 - 1, 2**64, 1.5, "3", None):
        cases.append((f"step={bad_step!r}", {"step": bad_step, "hyperparams": dict(sd["hyperparams"]),
                                            "state": {k: v.copy() for k, v in sd["state"].items()}}))
    return cases


@pytest.mark.parametrize("name", sorted(EXACT))
def test_corrupt_exact_checkpoint_is_refused_and_changes_nothing(rng, name):
    opt, param = _trained(rng, EXACT[name])
    sd = opt.state_dict()
    for what, corrupt in _corruptions(sd):
        before = snapshot(opt, param)
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(corrupt)
        assert_unchanged(opt, param, before)
    # The optimizer still steps, with the bits of one that never saw the corrupt snapshots.
    ref, ref_param = _trained(np.random.default_rng(0), EXACT[name])
    twin, twin_param = _trained(np.random.default_rng(0), EXACT[name])
    for what, corrupt in _corruptions(twin.state_dict()):
        with pytest.raises((ValueError, TypeError)):
            twin.load_state_dict(corrupt)
    for idx, vals in make_steps(rng, NUM_ROWS, 4, (4,), np.float64, np.int64):
        ref.step(idx, vals)
        twin.step(idx, vals)
    ref.flush()
    twin.flush()
    assert np.array_equal(ref_param, twin_param)


def test_the_audits_checkpoint_no_longer_crashes(rng):
    """SGD(momentum=0.9, mode='exact'), 3 steps, last_step[0] = -10**11: a segfault before."""
    opt, param = _trained(rng, lambda p: SGD(p, lr=0.1, momentum=0.9, mode="exact"))
    sd = opt.state_dict()
    sd["state"]["last_step"][0] = -10**11
    with pytest.raises(ValueError, match=r"last_step.*\[0, step\]"):
        opt.load_state_dict(sd)
    opt.step(np.array([0]), np.ones((1, 4)))  # still usable
    assert np.isfinite(param).all()


@pytest.mark.parametrize("name", ["sgd_momentum_lazy", "adam_lazy_row"])
def test_corrupt_row_steps_are_refused(rng, name):
    opt, param = _trained(rng, ALL[name])
    sd = opt.state_dict()
    for value in (-1, sd["step"] + 1):
        bad = {"step": sd["step"], "hyperparams": dict(sd["hyperparams"]),
               "state": {k: v.copy() for k, v in sd["state"].items()}}
        bad["state"]["row_steps"][3] = value
        before = snapshot(opt, param)
        with pytest.raises(ValueError, match="row_steps"):
            opt.load_state_dict(bad)
        assert_unchanged(opt, param, before)


def test_a_step_at_the_largest_count_is_refused(rng):
    opt = Adagrad(np.zeros((4, 2)), lr=0.1)
    sd = opt.state_dict()
    sd["step"] = 2**62
    opt.load_state_dict(sd)
    before = snapshot(opt, opt.param)
    with pytest.raises(ValueError, match="steps"):
        opt.step(np.array([1]), np.ones((1, 2)))
    assert_unchanged(opt, opt.param, before)


def test_npz_round_trip_error_names_the_fix(tmp_path, rng):
    """np.savez of state_dict(), loaded back: a clear error (it crashed in its own f-string)."""
    opt, param = _trained(rng, ALL["adam"])
    path = tmp_path / "opt.npz"
    np.savez(path, **opt.state_dict())
    loaded = dict(np.load(path, allow_pickle=True))
    before = snapshot(opt, param)
    with pytest.raises(ValueError, match="sparseopt.save"):
        opt.load_state_dict(loaded)
    assert_unchanged(opt, param, before)


# -- 2. thread counts --------------------------------------------------------------------------
def test_thread_ceiling_is_one_number():
    assert _args.MAX_NUM_THREADS == _core.max_num_threads == 1024


@pytest.mark.parametrize("threads", [1025, 50_000, 70_000, 2**31, 2**63])
def test_num_threads_above_the_ceiling_is_refused_everywhere(threads):
    table = np.zeros((8, 2))
    idx, vals = np.array([1, 1]), np.ones((2, 2))
    with pytest.raises(ValueError, match="num_threads"):
        SGD(table, lr=0.1, num_threads=threads)
    opt = SGD(table, lr=0.1)
    with pytest.raises(ValueError, match="num_threads"):
        opt.num_threads = threads
    assert opt.num_threads == 0
    calls = [
        lambda: sparseopt.coalesce(idx, vals, num_threads=threads),
        lambda: sparseopt.topk(vals, 1, num_threads=threads),
        lambda: sparseopt.gather_sum(table, np.array([0, 2]), idx, num_threads=threads),
        lambda: hogwild.run(lambda w: None, 1, threads_per_worker=threads),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="num_threads|threads_per_worker"):
            call()


def test_the_ceiling_itself_is_accepted(rng):
    table = rng.standard_normal((8, 2))
    ref = table.copy()
    SGD(ref, lr=0.1, num_threads=1).step(np.array([1, 1]), np.ones((2, 2)))
    opt = SGD(table, lr=0.1, num_threads=_core.max_num_threads)
    opt.step(np.array([1, 1]), np.ones((2, 2)))
    assert np.array_equal(table, ref)


# -- 3. gradient arrays that alias a state array -----------------------------------------------
@pytest.mark.parametrize("name", sorted(ALL))
def test_values_or_indices_sharing_a_state_array_are_refused(rng, name):
    opt, param = _trained(rng, ALL[name])
    for state_name, array in opt.state.items():
        before = snapshot(opt, param)
        if array.dtype == np.int64:  # last_step, row_steps: as indices
            n = min(3, array.shape[0])
            array[:n] = np.arange(n)  # valid row numbers, so only the aliasing can be refused
            before = snapshot(opt, param)
            with pytest.raises(ValueError, match=f"{state_name}.*must not share memory|must not share memory.*{state_name}"):
                opt.step(array[:n], np.ones((n, 4)))
            assert_unchanged(opt, param, before)
            continue
        if array.dtype != param.dtype or array.size < 4:
            continue
        # The audit's case: a gradient whose values are a view of the state.
        flat = array.reshape(-1)
        n = flat.size // 4
        values = flat[: n * 4].reshape(n, 4)
        indices = np.arange(n) % NUM_ROWS
        with pytest.raises(ValueError, match="must not share memory"):
            opt.step(indices, values)
        assert_unchanged(opt, param, before)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_flush_indices_sharing_a_state_array_are_refused(rng, name):
    opt, param = _trained(rng, EXACT[name])
    before = snapshot(opt, param)
    with pytest.raises(ValueError, match="last_step"):
        opt.flush(opt.state["last_step"][:2])
    assert_unchanged(opt, param, before)


# -- 5, 6. sampler arguments -------------------------------------------------------------------
def test_context_pairs_allocates_only_what_exists():
    """window=2000 on 10-token sentences reserved len(kept) * 2 * window: MemoryError before."""
    tokens = np.arange(200_000, dtype=np.int64) % 1000
    offsets = np.arange(0, 200_001, 10, dtype=np.int64)
    centers, contexts = sampled.context_pairs(tokens, 10**9, offsets=offsets, seed=1,
                                              shrink_window=False)
    assert len(centers) == len(contexts) == 20_000 * 10 * 9
    for window in (2**61, 2**63 - 1):
        c, x = sampled.context_pairs(tokens[:100], window, offsets=offsets[:11], seed=1,
                                     shrink_window=False)
        c10, x10 = sampled.context_pairs(tokens[:100], 9, offsets=offsets[:11], seed=1,
                                         shrink_window=False)
        assert np.array_equal(c, c10) and np.array_equal(x, x10)
    c, x = sampled.context_pairs(tokens[:100], 2**63 - 1, offsets=offsets[:11], seed=1)
    assert 0 < len(c) <= 900
    with pytest.raises(ValueError, match="window"):
        sampled.context_pairs(tokens[:10], 2**63, seed=1)


@pytest.mark.parametrize("num_negatives", [2**62, 2**63 - 1, 2**64])
def test_draw_with_too_many_negatives_names_the_argument(num_negatives):
    sampler = sampled.NegativeSampler(np.ones(10))
    with pytest.raises(ValueError, match="num_negatives"):
        sampler.draw(np.arange(3), num_negatives, seed=0)
    with pytest.raises(ValueError, match="num_negatives"):
        sampler.draw(np.arange(0), num_negatives, seed=0)


def test_zero_width_table_with_repeated_indices():
    rows, summed, counts = sparseopt.coalesce(np.array([2, 2, 0]), np.zeros((3, 0)))
    assert rows.tolist() == [0, 2] and summed.shape == (2, 0) and counts.tolist() == [1, 2]
    opt = Adam(np.zeros((4, 0)), lr=0.1)
    opt.step(np.array([1, 1]), np.zeros((2, 0)))
    assert opt.step_count == 1


# -- 8. a rejected exact step leaves history as it was -----------------------------------------
@pytest.mark.parametrize("name", sorted(EXACT))
def test_rejected_exact_step_keeps_the_same_history_array(rng, name):
    param = rng.standard_normal((NUM_ROWS, 4))
    opt = EXACT[name](param)
    for t in range(40):
        history = opt.state["history"]
        if history.shape[0] <= opt.step_count + 1:  # this step would grow it
            with pytest.raises(IndexError):
                opt.step(np.array([NUM_ROWS]), np.ones((1, 4)))
            assert opt.state["history"] is history
        opt.step(np.array([t % NUM_ROWS]), np.ones((1, 4)))


# -- 9. hogwild threads ------------------------------------------------------------------------
def test_thread_worker_error_is_raised_while_another_never_stops():
    release = threading.Event()

    def worker(w):
        if w.rank == 1:
            raise RuntimeError("worker 1 failed")
        release.wait(120)  # never calls progress() or barrier()

    outcome = []

    def call():
        try:
            hogwild.run(worker, 2, backend="thread", progress=False)
        except RuntimeError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(60)  # hung forever before the fix
    stuck = caller.is_alive()
    release.set()
    assert not stuck, "hogwild.run did not return after a worker raised"
    assert outcome and "worker 1 failed" in str(outcome[0])
    notes = getattr(outcome[0], "__notes__", [])
    assert any("still running" in n for n in notes) or not notes


# -- 10. seeds ---------------------------------------------------------------------------------
def test_rng_seed_does_not_depend_on_where_pytest_runs():
    path = __file__
    assert (seed_for_test(path, "tests/test_hardening.py::test_x[a]")
            == seed_for_test(path, "test_hardening.py::test_x[a]")
            == seed_for_test(path, "../main/tests/test_hardening.py::test_x[a]"))
    assert seed_for_test(path, "x::test_x[a]") != seed_for_test(path, "x::test_x[b]")
