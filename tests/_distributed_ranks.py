"""Run on every rank by tests/test_distributed.py (under mpiexec or torchrun); not a test file.

Each rank steps its own batches on a ShardedTable and checks, bit for bit, against a plain
single-process sparseopt optimizer that steps the concatenation of every rank's batch in rank
order (every rank draws all ranks' batches from one seed, so it can build that reference).
Then bad input on one rank must raise on every rank and change nothing, and a checkpoint must
round-trip. Prints "OK rank R" at the end; any failure exits non-zero.

    mpiexec -n 3 python -m mpi4py tests/_distributed_ranks.py mpi
    torchrun --standalone --nproc_per_node 2 tests/_distributed_ranks.py torch
"""

from __future__ import annotations

import sys

import numpy as np

from sparseopt import distributed as sd
from sparseopt import optim

NUM_ROWS = 41  # divisible by neither 2 nor 3: shards of different lengths
STEPS = 20

# (name, class, hyper-parameters, table dtype, index dtype, row_shape)
CASES = [
    ("adam-lazy", optim.Adam, dict(lr=0.05), np.float32, np.int64, (3,)),
    ("adam-lazy-f64", optim.Adam, dict(lr=0.05, amsgrad=True), np.float64, np.int32, ()),
    ("adam-exact", optim.Adam, dict(lr=0.05, mode="exact"), np.float64, np.int32, (2, 2)),
    ("adam-exact-f32", optim.Adam, dict(lr=0.05, mode="exact"), np.float32, np.int64, (3,)),
    ("adamw-exact", optim.AdamW, dict(lr=0.05, weight_decay=0.1, mode="exact"), np.float32,
     np.int32, (3,)),
    ("sgd-momentum-exact", optim.SGD, dict(lr=0.1, momentum=0.9, mode="exact"), np.float32,
     np.int32, (3,)),
    ("sgd-momentum-exact-f64", optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True,
                                               mode="exact"), np.float64, np.int64, (2,)),
    ("adagrad", optim.Adagrad, dict(lr=0.1), np.float32, np.int64, (3,)),
    ("adagrad-f64", optim.Adagrad, dict(lr=0.1, lr_decay=0.01), np.float64, np.int32, ()),
    # Any optimizer: each owner runs the ordinary kernel.
    ("rmsprop-exact", optim.RMSprop, dict(lr=0.01, momentum=0.5, mode="exact"), np.float64,
     np.int64, (3,)),
    ("rowwise-adagrad", optim.RowWiseAdagrad, dict(lr=0.1), np.float32, np.int32, (4,)),
    ("ftrl", optim.FTRL, dict(lr=0.1, l1=0.01), np.float32, np.int64, (3,)),
]


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def init_fn(dtype, row_shape, seed):
    def init(rows):
        # A row's initial value depends on its global id only, as a user's init would.
        out = np.empty((len(rows), *row_shape), dtype=dtype)
        for j, r in enumerate(rows):
            out[j] = np.random.default_rng([seed, int(r)]).standard_normal(row_shape)
        return out
    return init


def batches(rng, t, size, dtype, index_dtype, row_shape):
    """Every rank's batch for step t: Zipf-ish ids with many repeats; step 2 is empty on every
    rank, step 4 on rank 0, others at random."""
    out = []
    for k in range(size):
        n = int(rng.integers(0, 25)) if rng.random() > 0.15 else 0
        n = 0 if t == 2 or (t == 4 and k == 0) else n
        idx = np.minimum(rng.zipf(1.3, n) - 1, NUM_ROWS - 1).astype(index_dtype)
        vals = rng.standard_normal((n, *row_shape)).astype(dtype)
        out.append((idx, vals))
    return out


def check_state(opt, ref, table, name):
    own = opt.optimizer.state_dict()["state"]
    full = ref.state_dict()["state"]
    for key, array in own.items():
        per_step = ("history", "window", "history_start")  # one record per optimizer, not per row
        expected = full[key] if key in per_step else full[key][table.rows]
        assert bits(array) == bits(expected), f"{name}: state {key!r} differs"


def contract(comm, name, cls, hyper, dtype, index_dtype, row_shape):
    init = init_fn(dtype, row_shape, seed=7)
    table = sd.ShardedTable(comm, NUM_ROWS, row_shape, dtype=dtype, init=init)
    opt = sd.ShardedOptimizer(table, cls, **hyper)
    ref_param = init(np.arange(NUM_ROWS))
    ref = cls(ref_param, **hyper)
    rng = np.random.default_rng(123)
    for t in range(STEPS):
        lr = hyper["lr"] * (1.0 + 0.5 * np.sin(t))  # a schedule: exact mode must follow it
        opt.lr, ref.lr = lr, lr
        step = batches(rng, t, comm.size, dtype, index_dtype, row_shape)
        idx, vals = step[comm.rank]
        if t % 3 == 1:  # a forward pass reads the batch's rows: caught up in exact mode
            rows = table.lookup(idx)
            ref.flush(idx)
            assert bits(rows) == bits(ref_param[idx]), f"{name}: lookup differs at step {t}"
        opt.step(idx, vals)
        ref.step(np.concatenate([i for i, _ in step]), np.concatenate([v for _, v in step]))
    full = table.gather_all()
    ref.flush()
    assert bits(full) == bits(ref_param), f"{name}: table differs from the single process"
    check_state(opt, ref, table, name)
    return table, opt


def snapshot(table, opt):
    return bits(table.shard), {k: bits(v) for k, v in opt.optimizer.state_dict()["state"].items()}


def expect_everywhere(exc, fn, what):
    try:
        fn()
    except exc:
        return
    raise AssertionError(f"{what}: expected {exc.__name__} on this rank")


def bad_input(comm):
    table, opt = contract(comm, "adam-exact", optim.Adam, dict(lr=0.05, mode="exact"),
                          np.float32, np.int64, (3,))
    last = comm.size - 1
    ok_idx = np.array([0, 1, 2], np.int64)
    ok_vals = np.ones((3, 3), np.float32)
    before = snapshot(table, opt)
    # An id out of range on the last rank only.
    bad_idx = np.array([0, NUM_ROWS], np.int64) if comm.rank == last else ok_idx
    bad_vals = np.ones((len(bad_idx), 3), np.float32)
    expect_everywhere(IndexError, lambda: opt.step(bad_idx, bad_vals), "out-of-range step")
    expect_everywhere(IndexError, lambda: table.lookup(bad_idx), "out-of-range lookup")
    # Values of the wrong dtype on rank 0 only: refused, never converted.
    wrong = ok_vals.astype(np.float64) if comm.rank == 0 else ok_vals
    expect_everywhere(TypeError, lambda: opt.step(ok_idx, wrong), "wrong dtype")
    # A learning rate that differs between ranks.
    opt.lr = 0.01 if comm.rank == 0 else 0.02
    expect_everywhere(ValueError, lambda: opt.step(ok_idx, ok_vals), "mismatched lr")
    assert snapshot(table, opt) == before, "a rejected call changed a shard or its state"
    assert opt.step_count == STEPS, "a rejected call counted as a step"
    opt.lr = 0.01
    opt.step(ok_idx, ok_vals)  # the ranks are still in step: no deadlock, no stale message

    # Checkpoint round trip, per rank.
    saved = opt.state_dict()
    opt.step(ok_idx, ok_vals)
    opt.load_state_dict(saved)
    restored = opt.state_dict()
    assert bits(restored["param"]) == bits(saved["param"])
    assert all(bits(restored["optimizer"]["state"][k]) == bits(v)
               for k, v in saved["optimizer"]["state"].items())
    other = dict(saved, world_size=comm.size + 1)
    try:
        opt.load_state_dict(other)
    except ValueError as e:
        assert "same world size" in str(e), str(e)
    else:
        raise AssertionError("a checkpoint from another world size was accepted")
    expect_everywhere(ValueError, lambda: opt.load_state_dict(dict(saved, rank=comm.rank + 1)),
                      "another rank's checkpoint")

    # Ranks that disagree on the table or the optimizer's options: refused on every rank.
    rows = NUM_ROWS + (comm.rank == last)
    expect_everywhere(ValueError, lambda: sd.ShardedTable(comm, rows, (3,)), "num_rows differs")
    table2 = sd.ShardedTable(comm, NUM_ROWS, (3,))
    betas = (0.9, 0.99) if comm.rank == last else (0.9, 0.999)
    expect_everywhere(ValueError, lambda: sd.ShardedOptimizer(table2, optim.Adam, betas=betas),
                      "hyper-parameters differ")
    expect_everywhere(ValueError, lambda: sd.ShardedOptimizer(table2, optim.Adam, lr=-1.0),
                      "invalid lr on every rank")
    sd.ShardedOptimizer(table2, optim.Adam)  # the table is still free for a valid optimizer


def main() -> None:
    backend = sys.argv[1]
    if backend == "torch":
        import torch.distributed as dist

        dist.init_process_group("gloo")
        comm = sd.torch_comm()
    else:
        comm = sd.mpi_comm()
    for case in CASES:
        contract(comm, *case)
    bad_input(comm)
    print(f"OK rank {comm.rank} of {comm.size} ({backend}, {len(CASES)} optimizer cases)",
          flush=True)
    if backend == "torch":
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
