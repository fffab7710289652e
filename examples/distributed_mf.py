"""Matrix factorisation with sharded user and item tables (sparseopt.distributed).

The model of ``python -m sparseopt demo`` -- a user table and an item table whose dot products
predict ratings, trained with sparse Adam on a synthetic rating log with Zipf item popularity
(planted rank-8 factors, noise floor RMSE 0.1; no data files needed) -- with both tables spread
over the ranks. Each global batch is split into one contiguous piece per rank; every rank looks
up its rows, computes its gradients and steps, and the sharded optimizer moves the gradient
rows to their owners. The loss curve and the final tables are the same bits for any number of
ranks (the last line prints a checksum of both tables to compare):

    mpiexec -n 4 python -m mpi4py examples/distributed_mf.py
    torchrun --standalone --nproc_per_node 4 examples/distributed_mf.py
    python examples/distributed_mf.py            # one rank (mpi4py, else a 1-rank gloo group)

``--quick`` runs a small problem (the test suite's), ``--mode exact`` uses exact-mode Adam
(lookups then return caught-up rows). Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np

from sparseopt import distributed as sd
from sparseopt.demo import _ratings, _rmse
from sparseopt.optim import Adam


def make_comm(backend: str) -> sd.Comm:
    if backend == "auto":
        backend = "torch" if "TORCHELASTIC_RUN_ID" in os.environ else "mpi"
    if backend == "mpi":
        try:
            return sd.mpi_comm()
        except ImportError:
            print("mpi4py is not installed (pip install 'sparseopt[mpi]'); "
                  "trying torch.distributed")
    import torch.distributed as dist

    if "RANK" in os.environ:  # under torchrun
        dist.init_process_group("gloo")
    else:  # a plain `python` run: a group of one, needing no port
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    return sd.torch_comm()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small problem (seconds)")
    parser.add_argument("--backend", choices=("auto", "mpi", "torch"), default="auto",
                        help="auto: torch under torchrun, else MPI")
    parser.add_argument("--mode", choices=("lazy", "exact"), default="lazy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    comm = make_comm(args.backend)

    num_users, num_items, dim = (2_000, 500, 8) if args.quick else (20_000, 2_000, 16)
    num_ratings = 40_000 if args.quick else 400_000
    epochs, batch = (2, 1024) if args.quick else (3, 4096)
    rng = np.random.default_rng(args.seed)  # every rank draws the same log and the same order
    users, items, ratings = _ratings(rng, num_users, num_items, num_ratings, rank=8, noise=0.1)
    held_out = rng.random(num_ratings) < 0.05
    train, test = np.flatnonzero(~held_out), np.flatnonzero(held_out)

    def init(seed: int):  # a row's initial value depends on its global id only
        return lambda rows: np.stack([0.1 * np.random.default_rng([seed, int(r)]).standard_normal(
            dim, dtype=np.float32) for r in rows]) if len(rows) else np.zeros((0, dim), np.float32)

    user_table = sd.ShardedTable(comm, num_users, (dim,), np.float32, init(1))
    item_table = sd.ShardedTable(comm, num_items, (dim,), np.float32, init(2))
    user_opt = sd.ShardedOptimizer(user_table, Adam, lr=0.02, mode=args.mode)
    item_opt = sd.ShardedOptimizer(item_table, Adam, lr=0.02, mode=args.mode)

    def report(epoch: int, seconds: float) -> None:
        u, i = user_table.gather_all(), item_table.gather_all()  # collective: every rank
        if comm.rank == 0:
            train_rmse = _rmse(u, i, users[train], items[train], ratings[train])
            test_rmse = _rmse(u, i, users[test], items[test], ratings[test])
            print(f"{epoch:>5}  {train_rmse:>20.17f}  {test_rmse:>20.17f}  {seconds:>8.2f} s",
                  flush=True)
        return u, i

    if comm.rank == 0:
        print(f"{num_users:,} users x {num_items:,} items, {dim}-dim, {len(train):,} training "
              f"ratings, batch {batch} split over {comm.size} rank(s) ({type(comm).__name__}), "
              f"Adam mode={args.mode}")
        print(f"{'epoch':>5}  {'train RMSE':>20}  {'held-out RMSE':>20}  {'time':>10}")
    report(0, 0.0)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(train)
        start_time = time.perf_counter()
        for start in range(0, len(order), batch):
            b = order[start:start + batch]
            mine = np.array_split(b, comm.size)[comm.rank]  # rank order = the batch's order
            u, i = users[mine], items[mine]
            eu, ei = user_table.lookup(u), item_table.lookup(i)
            err = (np.einsum("ij,ij->i", eu, ei) - ratings[mine]) * (2.0 / len(b))
            user_opt.step(u, np.ascontiguousarray(err[:, None] * ei, dtype=np.float32))
            item_opt.step(i, np.ascontiguousarray(err[:, None] * eu, dtype=np.float32))
        tables = report(epoch, time.perf_counter() - start_time)
    if comm.rank == 0:
        digest = hashlib.sha256(b"".join(t.tobytes() for t in tables)).hexdigest()[:16]
        print(f"checksum of both tables: {digest}")
    if type(comm).__name__ == "_TorchComm":
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
