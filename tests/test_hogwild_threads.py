"""Hogwild! with Python threads: the kernels release the GIL, several threads stepping one table
stay memory-safe, one optimizer object shared by threads takes turns, and
hogwild.run(backend="thread") over disjoint rows equals a sequential run bit for bit.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import sparseopt
from sparseopt import hogwild
from sparseopt.optim import FTRL, SGD, Adagrad, AdamW, Adam, RMSprop, RowWiseAdagrad

import _hogwild_helpers as W
from _hogwild_helpers import assert_state_matches, disjoint_steps, sequential

# Optimizers (lazy mode) whose steps are compared run by run; each has state that a step
# writes, and hyper-parameters under which the step count matters (lr_decay, bias correction).
CONFIGS = {
    "sgd": lambda p: SGD(p, lr=0.05),
    "sgd_momentum": lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda p: Adagrad(p, lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1),
    "adam": lambda p: Adam(p, lr=0.01),
    "adam_row": lambda p: Adam(p, lr=0.01, amsgrad=True, bias_correction="row"),
    "adamw": lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "rowwise_adagrad": lambda p: RowWiseAdagrad(p, lr=0.1),
    "ftrl": lambda p: FTRL(p, lr=0.1, l1=0.01, l2=0.01),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_disjoint_rows_equal_sequential(rng, name, dtype):
    index_dtype = np.int32 if dtype == np.float32 else np.int64
    row_shape = (3, 2) if dtype == np.float32 else (5,)
    R, n = 25, 3
    p0 = rng.standard_normal((R * n, *row_shape)).astype(dtype)
    steps = disjoint_steps(rng, n, R, 12, row_shape, dtype, index_dtype)
    ref, ref_states = sequential(CONFIGS[name], p0, steps)

    table = p0.copy()
    opt = CONFIGS[name](table)
    out = hogwild.run(W.apply_steps, n, args=((opt,),), worker_args=[(
        [(s,) for s in mine],) for mine in steps], progress=False)
    assert out == [[(12, 1)]] * n  # each worker's replica: its own count, one thread
    # the parent's optimizer keeps its settings and counts the steps of all its replicas
    assert opt.step_count == n * 12 and opt.num_threads == 0
    assert np.array_equal(table, ref)
    assert_state_matches(opt.state, ref_states, R)


def test_disjoint_rows_many_threads_per_worker(rng):
    # Large steps, so that each worker's kernel itself runs on OpenMP threads.
    R, n, D = 20_000, 2, 16
    p0 = rng.standard_normal((R * n, D)).astype(np.float32)
    steps = disjoint_steps(rng, n, R, 3, (D,), np.float32, np.int64, nnz=30_000)
    make = CONFIGS["adam"]
    ref, ref_states = sequential(make, p0, steps)
    for threads in (0, 2):
        table = p0.copy()
        opt = make(table)
        hogwild.run(W.apply_steps, n, args=((opt,),), worker_args=[([(s,) for s in mine],)
                                                                   for mine in steps],
                    threads_per_worker=threads, progress=False)
        assert np.array_equal(table, ref), threads
        assert_state_matches(opt.state, ref_states, R)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_overlapping_rows_loss_decreases(rng, name):
    V, D, K, n = 60, 4, 5, 4
    true = rng.standard_normal((V, D))
    # Zipf-like features: a few rows appear in most samples of every worker.
    weights = 1.0 / np.arange(1, V + 1)
    features = rng.choice(V, size=(800, K), p=weights / weights.sum())
    targets = true[features].sum(axis=1)
    table = np.zeros((V, D))
    lr = {"sgd": 0.02, "adagrad": 0.3, "adam": 0.05}[name]
    opt = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}[name](table, lr=lr)
    before = W.bag_loss(table, features, targets)
    shards = [(features[r::n], targets[r::n]) for r in range(n)]
    counts = hogwild.run(W.train_bag, n, args=(opt,), worker_args=shards,
                         kwargs=dict(batch=8, epochs=15), progress=False)
    after = W.bag_loss(table, features, targets)
    assert counts == [15 * 25] * n
    assert np.all(np.isfinite(table))
    assert after < 0.05 * before, (before, after)


def _gil_free_probe(call, attempts=30):
    """How often a spinning Python thread got the GIL while `call()` ran in this thread. With a
    switch interval far longer than the call, it only can if the call releases the GIL; the
    spinner gives the GIL back every 0.1 ms, so this thread always gets it back."""
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1
            time.sleep(1e-4)

    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    spinner = threading.Thread(target=spin, daemon=True)
    try:
        spinner.start()
        best = 0
        for _ in range(attempts):  # a busy machine may not give the spinner a core at once
            before = count[0]
            call()
            best = max(best, count[0] - before)
            if best >= 3:
                break
        return best
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(old)


def test_probe_sees_a_call_that_holds_the_gil():
    assert _gil_free_probe(lambda: sum(range(3_000_000)), attempts=3) == 0


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam", "rmsprop", "rowwise_adagrad", "ftrl",
                                  "coalesce"])
def test_kernels_release_the_gil(rng, name):
    N, D, nnz = 100_000, 16, 300_000
    table = rng.standard_normal((N, D)).astype(np.float32)
    idx = rng.integers(0, N, nnz)
    vals = (1e-3 * rng.standard_normal((nnz, D))).astype(np.float32)
    if name == "coalesce":
        call = lambda: sparseopt.coalesce(idx, vals, num_threads=1)  # noqa: E731
    else:
        opt = CONFIGS[name](table)
        opt.num_threads = 1
        call = lambda: opt.step(idx, vals)  # noqa: E731
    assert _gil_free_probe(call) >= 3


def test_threads_on_one_table_stay_in_bounds(rng):
    """Eight threads step overlapping rows of one table (rows 0 and N-1 included), while some of
    their steps are rejected (an index out of range): nothing outside the table changes, every
    rejected call raises, the table stays finite."""
    N, D, G, n_threads, n_steps = 300, 8, 16, 8, 60
    guarded = np.full((G + N + G, D), 7.25, dtype=np.float32)
    table = guarded[G:G + N]
    assert table.flags.c_contiguous
    table[:] = rng.standard_normal((N, D)).astype(np.float32)
    base = Adam(table, lr=1e-3)
    rejected = [0] * n_threads
    errors = []
    seeds = rng.integers(0, 2**32, n_threads)

    def work(t):
        r = np.random.default_rng(seeds[t])
        opt = base.replica()
        try:
            for s in range(n_steps):
                idx = r.integers(0, N, 500)
                idx[:2] = (0, N - 1)
                vals = r.standard_normal((500, D)).astype(np.float32)
                if s % 7 == 3:
                    idx[250] = N + G // 2 if s % 2 else -1  # would land in a guard
                    try:
                        opt.step(idx, vals)
                    except IndexError:
                        rejected[t] += 1
                    continue
                opt.step(idx, vals)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rejected == [len(range(3, n_steps, 7))] * n_threads
    assert np.all(guarded[:G] == 7.25) and np.all(guarded[G + N:] == 7.25)
    assert np.all(np.isfinite(table))
    assert all(np.all(np.isfinite(a)) for a in base.state.values())


def test_one_optimizer_shared_by_threads_takes_turns(rng):
    """Threads calling step() on the same object: every call counts (no lost increments), and
    with disjoint rows the result is a sequential run's."""
    N, D, n_threads, n_steps = 64, 4, 4, 50
    table = np.zeros((N, D))
    opt = SGD(table, lr=1.0)
    idx = [np.array([t]) for t in range(n_threads)]
    ones = np.ones((1, D))

    def work(t):
        for _ in range(n_steps):
            opt.step(idx[t], ones)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opt.step_count == n_threads * n_steps
    expected = np.zeros((N, D))
    expected[:n_threads] = -n_steps
    assert np.array_equal(table, expected)


def test_replica_shares_arrays_and_keeps_its_own_count(rng):
    table = rng.standard_normal((10, 3))
    opt = Adam(table, lr=0.01, num_threads=2)
    opt.step(np.array([1, 2]), np.ones((2, 3)))
    twin = opt.replica()
    assert type(twin) is Adam and twin.param is table
    assert all(twin.state[k] is v for k, v in opt.state.items())
    assert twin.step_count == 1 and twin.num_threads == 2 and twin.lr == 0.01
    twin.lr = 0.5
    twin.num_threads = 1
    twin.step(np.array([3]), np.ones((1, 3)))
    assert (twin.step_count, opt.step_count) == (2, 1)
    assert (opt.lr, opt.num_threads) == (0.01, 2)
    assert opt.state["exp_avg"][3].any()  # the replica wrote the shared state


@pytest.mark.parametrize("backend", ["thread", "fork"])
def test_each_worker_gets_one_replica_per_optimizer(rng, backend):
    opt = SGD(hogwild.share(rng.standard_normal((4, 2))), lr=0.1).share_memory()
    opt.step(np.array([0]), np.ones((1, 2)))
    out = hogwild.run(W.replica_identity, 2, backend=backend, args=(opt, opt, {"again": opt}),
                      kwargs={"kw": opt},
                      threads_per_worker=3, progress=False)
    assert out == [(True, True, True, 3, 1)] * 2


def test_worker_context_threads():
    out = hogwild.run(W.info, 3, progress=False)
    assert out == [(r, 3, "thread", 1) for r in range(3)]
    out = hogwild.run(W.info, 2, threads_per_worker=None, progress=False)
    assert out == [(r, 2, "thread", None) for r in range(2)]
    out = hogwild.run(W.count_and_wait, 3, worker_args=[(5,), (6,), (7,)], progress=False)
    assert out == [(5, 18), (6, 18), (7, 18)]


def test_thread_worker_exception_stops_the_others():
    with pytest.raises(ValueError, match="shard 1 is bad") as info:
        hogwild.run(W.raise_in, 3, args=(1, "shard 1 is bad"), progress=False)
    assert "raise_in" in "".join(__import__("traceback").format_tb(info.value.__traceback__))
    assert threading.active_count() == 1 or all(
        not t.name.startswith("hogwild-worker") for t in threading.enumerate())


def test_thread_worker_system_exit_is_a_worker_error():
    with pytest.raises(hogwild.WorkerError, match="SystemExit") as info:
        hogwild.run(W.exit_in, 2, args=(0, "system_exit"), progress=False)
    assert info.value.rank == 0
    assert isinstance(info.value.__cause__, SystemExit)


def test_parent_step_count_is_the_sum_of_the_workers_steps(rng):
    """After a thread run the parent counts every step its replicas took, so its next step
    uses the global count (here Adagrad's lr_decay) the shared table has been through."""
    R, n, n_steps, lr, decay = 5, 3, 7, 0.1, 0.5
    table = rng.standard_normal((R * n + 1, 2))
    opt = Adagrad(table, lr=lr, lr_decay=decay)
    opt.step(np.array([0]), np.ones((1, 2)))  # the replicas start from the parent's count
    steps = disjoint_steps(rng, n, R, n_steps, (2,), np.float64, np.int64)
    out = hogwild.run(W.apply_steps, n, args=((opt,),), worker_args=[(
        [(s,) for s in mine],) for mine in steps], progress=False)
    assert out == [[(1 + n_steps, 1)]] * n
    assert opt.step_count == 1 + n * n_steps
    # the last row was never touched: its next update shows which step the parent is at
    before = table[-1].copy()
    g = np.array([[0.5, -2.0]])
    opt.step(np.array([R * n]), g)
    t = 1 + n * n_steps + 1
    expected = before - lr / (1 + (t - 1) * decay) * g[0] / (np.sqrt(g[0] ** 2) + 1e-10)
    np.testing.assert_allclose(table[-1], expected, rtol=1e-14)


def test_parent_counts_the_steps_taken_before_a_worker_failed():
    table = np.zeros((4, 2))
    opt = SGD(table, lr=0.1)

    def train(worker, opt):
        opt.step(np.array([worker.rank]), np.ones((1, 2)))
        if worker.rank == 1:
            raise RuntimeError("worker 1 gives up")
        opt.step(np.array([worker.rank]), np.ones((1, 2)))

    with pytest.raises(RuntimeError, match="worker 1 gives up"):
        hogwild.run(train, 2, args=(opt,), progress=False)
    assert opt.step_count == 3  # worker 0: two steps, worker 1: one
