"""Helpers for the hogwild tests: worker functions (in a module of their own, numpy only,
because spawned workers import them by name) and the sequential references."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np


def apply_steps(worker, optimizers, steps, **unused):
    """Step each optimizer through this worker's steps: steps[k] is one (indices, values) per
    optimizer. Returns the step counts and num_threads the workers' replicas ended with."""
    worker.set_total(len(steps))
    for batch in steps:
        for opt, (indices, values) in zip(optimizers, batch):
            opt.step(indices, values)
        worker.progress(1)
    return [(opt.step_count, opt.num_threads) for opt in optimizers]


def bag_loss(table, features, targets):
    """Mean over samples of 0.5 * ||sum of the sample's rows - target||^2."""
    pred = table[features].sum(axis=1)
    return float(0.5 * np.mean(np.sum((pred - targets) ** 2, axis=1)))


def bag_gradient(table, features, targets):
    """The row-sparse gradient of bag_loss's sum over a batch: every feature of a sample gets the
    sample's residual (repeated features: once per occurrence)."""
    residual = table[features].sum(axis=1) - targets  # (batch, D)
    k = features.shape[1]
    indices = np.ascontiguousarray(features.reshape(-1))
    values = np.ascontiguousarray(np.repeat(residual, k, axis=0).astype(table.dtype))
    return indices, values


def train_bag(worker, opt, features, targets, batch, epochs):
    """SGD-style training of a bag-of-rows regression on this worker's samples."""
    n = len(features)
    worker.set_total(epochs * ((n + batch - 1) // batch))
    for _ in range(epochs):
        for start in range(0, n, batch):
            f, t = features[start:start + batch], targets[start:start + batch]
            opt.step(*bag_gradient(opt.param, f, t))
            worker.progress(1)
    return opt.step_count


def raise_in(worker, rank, message):
    if worker.rank == rank:
        raise ValueError(message)
    while True:  # the others keep going until the runner stops them
        worker.progress(1)
        time.sleep(0.01)


def exit_in(worker, rank, how):
    if worker.rank == rank:
        if how == "exit":
            os._exit(3)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "exit0":
            os._exit(0)
        if how == "system_exit":
            sys.exit(4)
    while True:
        worker.progress(1)
        time.sleep(0.01)


def run_forever(worker, table):
    """Announce this worker (READY <pid>) on stdout, then touch its row until stopped."""
    os.write(1, f"READY {os.getpid()} {worker.rank}\n".encode())  # one write: lines never mix
    while True:
        table[worker.rank] += 1.0
        worker.progress(1)
        time.sleep(0.01)


def unpicklable_result(worker):
    return lambda: None


def replica_identity(worker, a, b, nested, kw):
    """Whether one optimizer passed several times reached this worker as one replica."""
    return (a is b, nested["again"] is a, kw is a, a.num_threads, a.step_count)


def info(worker):
    return (worker.rank, worker.num_workers, worker.backend, worker.num_threads)


def count_and_wait(worker, n):
    """Report n units, wait for everyone, then return what all workers reported."""
    worker.set_total(n)
    for _ in range(n):
        worker.progress(1)
    worker.barrier()
    return worker.done, worker.done_all



def skipgram_gradients(w_in, w_out, centers, contexts, negatives):
    """Skip-gram with negative sampling on a batch: the mean loss and the row-sparse gradients
    of its sum for w_in (the centers' rows) and w_out (context and negative rows)."""
    targets = np.concatenate([contexts[:, None], negatives], axis=1)  # (B, 1 + K)
    v, u = w_in[centers], w_out[targets]  # (B, D), (B, 1 + K, D)
    scores = np.einsum("bd,bkd->bk", v, u)
    labels = np.zeros_like(scores)
    labels[:, 0] = 1.0
    prob = 0.5 * (1.0 + np.tanh(0.5 * scores))  # the sigmoid, without overflow
    loss = -np.log(np.where(labels == 1.0, prob, 1.0 - prob) + 1e-12).sum(axis=1).mean()
    g = (prob - labels).astype(w_in.dtype)  # d loss / d score
    grad_in = np.einsum("bk,bkd->bd", g, u)
    grad_out = (g[:, :, None] * v[:, None, :]).reshape(-1, w_in.shape[1])
    return float(loss), (centers, np.ascontiguousarray(grad_in)), (
        np.ascontiguousarray(targets.reshape(-1)), np.ascontiguousarray(grad_out))


def train_skipgram(worker, opt_in, opt_out, shard, lr0, epochs, batch, total_pairs):
    """word2vec's loop: this worker's (center, context, negatives) pairs, the learning rate
    decaying linearly with the pairs all workers have done."""
    centers, contexts, negatives = shard
    worker.set_total(epochs * len(centers))
    for _ in range(epochs):
        for start in range(0, len(centers), batch):
            sl = slice(start, start + batch)
            lr = lr0 * max(1e-4, 1.0 - worker.done_all / (epochs * total_pairs))
            opt_in.lr = opt_out.lr = lr
            _, g_in, g_out = skipgram_gradients(opt_in.param, opt_out.param, centers[sl],
                                                contexts[sl], negatives[sl])
            opt_in.step(*g_in)
            opt_out.step(*g_out)
            worker.progress(len(centers[sl]))
    return opt_in.step_count, opt_in.lr

# -- references ------------------------------------------------------------------------------
def disjoint_steps(rng, num_workers, rows_per_worker, n_steps, row_shape, dtype, index_dtype,
                   nnz=40):
    """steps[r]: n_steps gradients touching only rows [r * R, (r + 1) * R), with repeats."""
    steps = []
    for r in range(num_workers):
        lo = r * rows_per_worker
        mine = []
        for _ in range(n_steps):
            idx = rng.integers(lo, lo + rows_per_worker, nnz).astype(index_dtype)
            idx[-1] = idx[0]
            vals = rng.standard_normal((nnz, *row_shape)).astype(dtype)
            mine.append((idx, vals))
        steps.append(mine)
    return steps


def sequential(make, p0, steps):
    """The reference: worker after worker, each with its own fresh optimizer (step count 1, 2,
    ...) on one table. Returns the table and each worker's state."""
    table = p0.copy()
    states = []
    for mine in steps:
        opt = make(table)
        for idx, vals in mine:
            opt.step(idx, vals)
        states.append(opt.state)
    return table, states


def assert_state_matches(shared_state, ref_states, rows_per_worker):
    for name, shared in shared_state.items():
        for r, ref in enumerate(ref_states):
            rows = slice(r * rows_per_worker, (r + 1) * rows_per_worker)
            assert np.array_equal(shared[rows], ref[name][rows]), (name, r)
