"""flush(indices): bring just some rows up to date (exact mode), at the cost of those rows.

The training-loop use: flush the batch's rows before the forward pass reads them, so the model
sees exactly what the dense optimizer has; the whole run then follows dense torch.optim even
though the gradients depend on the parameters."""

from __future__ import annotations

import numpy as np
import pytest

from sparseopt.optim import SGD, Adam, AdamW, RMSprop

from _helpers import assert_close

CASES = [
    (Adam, "Adam", dict(lr=0.05)),
    (AdamW, "AdamW", dict(lr=0.05, weight_decay=0.1)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    (RMSprop, "RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
]


IDS = [name + ("_wd" if kw.get("weight_decay") and name == "SGD" else "") for _, name, kw in CASES]


def _torch_optimizer(torch, name, param, kw):
    return getattr(torch.optim, name)([param], **kw)


@pytest.mark.requires_torch
@pytest.mark.parametrize("cls,name,kw", CASES, ids=IDS)
def test_flushing_the_batch_before_forward_follows_dense_torch(torch, rng, cls, name, kw):
    """Least squares on an embedding table: the gradient of a row depends on its value, so a
    stale row would change the trajectory; flushing the batch rows first must not."""
    num_rows, width, steps = 30, 4, 150
    table0 = rng.standard_normal((num_rows, width))
    target = rng.standard_normal((num_rows, width))
    table = table0.copy()
    opt = cls(table, mode="exact", **kw)
    weight = torch.nn.Parameter(torch.from_numpy(table0.copy()))
    reference = _torch_optimizer(torch, name, weight, kw)
    for step in range(steps):
        rows = rng.choice(num_rows, size=int(rng.integers(1, 6)))
        rows = rows[rows >= 5] if step > 20 else rows  # rows 0-4 rest for most of the run
        opt.flush(rows)
        grad_rows = 2.0 * (table[rows] - target[rows])  # d/dE of ||E[rows] - target||^2
        opt.step(rows, grad_rows)
        dense = torch.zeros(num_rows, width, dtype=torch.float64)
        dense.index_add_(0, torch.from_numpy(rows), 2.0 * (weight.detach()[rows] - torch.from_numpy(target[rows])))
        weight.grad = dense
        reference.step()
    opt.flush()
    assert_close(table, weight.detach().numpy(), rtol=1e-9)


@pytest.mark.requires_torch
def test_without_flushing_the_batch_the_model_reads_stale_rows(torch, rng):
    """The same loop without flush(rows) reads rows that are behind: it is not the dense run
    (this is why flush(indices) exists)."""
    num_rows, width = 30, 4
    table0, target = rng.standard_normal((num_rows, width)), rng.standard_normal((num_rows, width))
    results = []
    for flush_rows in (True, False):
        table = table0.copy()
        opt = Adam(table, lr=0.05, mode="exact")
        local = np.random.default_rng(7)
        for _ in range(150):
            rows = local.choice(num_rows, size=3)
            if flush_rows:
                opt.flush(rows)
            opt.step(rows, 2.0 * (table[rows] - target[rows]))
        opt.flush()
        results.append(table)
    assert np.max(np.abs(results[0] - results[1])) > 1e-3


@pytest.mark.parametrize("cls,name,kw", CASES, ids=IDS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_flush_rows_touches_only_those_rows(rng, cls, name, kw, index_dtype):
    """flush(rows) brings exactly those rows to where a full flush() brings them; every other
    row (parameter and state) stays bit for bit as it was."""
    table = rng.standard_normal((12, 3))
    opt = cls(table, mode="exact", **kw)
    for _ in range(40):
        opt.step(rng.integers(0, 12, 4), rng.standard_normal((4, 3)))
    opt.step(np.array([0]), rng.standard_normal((1, 3)))  # every other row is now behind
    twin_table = table.copy()
    twin = cls(twin_table, mode="exact", **kw)
    twin.load_state_dict(opt.state_dict())
    twin.flush()
    before_table, before_state = table.copy(), opt.state_dict()["state"]

    opt.flush(np.array([3, 7, 3], dtype=index_dtype))
    chosen, others = [3, 7], np.setdiff1d(np.arange(12), [3, 7])
    after_state = opt.state_dict()["state"]
    np.testing.assert_array_equal(table[chosen], twin_table[chosen])
    np.testing.assert_array_equal(table[others], before_table[others])
    for key, array in after_state.items():
        if array.shape[:1] == (12,):  # per-row state
            np.testing.assert_array_equal(array[others], before_state[key][others])
    assert after_state["last_step"][chosen].tolist() == [41, 41]
    assert not np.array_equal(table[chosen], before_table[chosen])


@pytest.mark.parametrize("bad", [np.array([12]), np.array([-1]), np.array([[1]]),
                                 np.array([1.0]), [1]])
def test_bad_flush_indices_change_nothing(rng, bad):
    table = rng.standard_normal((12, 3))
    opt = Adam(table, lr=0.1, mode="exact")
    for _ in range(10):
        opt.step(rng.integers(0, 12, 3), rng.standard_normal((3, 3)))
    before_table, before_state = table.copy(), opt.state_dict()
    with pytest.raises((IndexError, TypeError, ValueError), match="indices"):
        opt.flush(bad)
    np.testing.assert_array_equal(table, before_table)
    after = opt.state_dict()
    for key, array in before_state["state"].items():
        np.testing.assert_array_equal(after["state"][key], array)


def test_flush_rows_is_a_no_op_in_lazy_mode(rng):
    table = rng.standard_normal((6, 2))
    opt = Adam(table, lr=0.1)
    opt.step(np.array([1]), np.ones((1, 2)))
    before = table.copy()
    opt.flush(np.array([0, 1, 2]))
    np.testing.assert_array_equal(table, before)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_flush_rows_same_bits_for_any_thread_count(name):
    """Over the parallel threshold (ids x width >= 32k), rows split between threads by
    row % threads: each row is caught up once, the same bits for 1, 2 or 3 threads, and the
    same as when each row is flushed alone."""
    make = {"adam": lambda p: Adam(p, lr=0.01, mode="exact"),
            "sgd": lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01, mode="exact"),
            "rmsprop": lambda p: RMSprop(p, lr=0.01, momentum=0.5, mode="exact")}[name]
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal((3000, 32)).astype(np.float32)
    steps = [(rng.integers(0, 3000, 500), rng.standard_normal((500, 32)).astype(np.float32))
             for _ in range(6)]
    ids = rng.integers(0, 3000, 4000)  # repeats included
    results = []
    for threads in (1, 2, 3, None):
        param = p0.copy()
        opt = make(param)
        for idx, vals in steps:
            opt.step(idx, vals)
        if threads is None:  # one row at a time
            for r in np.unique(ids):
                opt.flush(np.array([r]))
        else:
            opt.num_threads = threads
            opt.flush(ids)
        results.append((param.copy(), {k: v.copy() for k, v in opt.state.items()}))
    for param, state in results[1:]:
        assert np.array_equal(param, results[0][0])
        for k, v in state.items():
            assert np.array_equal(v, results[0][1][k]), k
