"""Row-sharded tables across processes, over MPI (mpi4py) or torch.distributed (gloo).

A :class:`ShardedTable` spreads the rows of one table over the ranks of a communicator: row
``r`` lives on rank ``r % size`` at local position ``r // size``. Round-robin placement puts
neighbouring ids on different ranks, so the hot rows of a Zipf-distributed vocabulary (ids
sorted by frequency, as tokenizers and most recommender logs number them) spread evenly
instead of landing on rank 0. A :class:`ShardedOptimizer` wraps any :mod:`sparseopt.optim`
class: each rank's optimizer steps the rank's shard with the ordinary kernel, and gradients
travel to the rows' owners by all-to-all. Nothing here computes: it moves ids and rows.

The contract (tested bit for bit): N ranks that each step their own batch leave the table and
the optimizer state exactly as one process leaves them when it steps the concatenation of the N
batches in rank order. The owner receives the gradient rows grouped by source rank, each group
in its sender's order, so its kernel's coalescing (repeats summed in order of appearance) adds
them in the order the single process would.

Every call here is collective except :meth:`ShardedOptimizer.flush`,
:meth:`~ShardedOptimizer.state_dict` and :meth:`~ShardedOptimizer.load_state_dict`, which act
on the calling rank's shard: every rank must make the same collective calls in the same order,
an empty batch included. Before any data moves, the ranks agree on the validity of the call
with one small all-gather: bad input on any rank (an index out of range, a mismatched ``lr``)
raises the same exception on every rank and changes nothing anywhere.

mpi4py and torch are imported only by :func:`mpi_comm` and :func:`torch_comm`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from . import _args

__all__ = ["mpi_comm", "torch_comm", "Comm", "ShardedTable", "ShardedOptimizer"]

_ERRORS = {"IndexError": IndexError, "TypeError": TypeError, "ValueError": ValueError}


class Comm:
    """The two collectives a sharded table needs, on top of an existing engine.

    ``rank`` and ``size`` identify this process; :meth:`alltoallv` moves rows,
    :meth:`allgather_object` agrees on small Python values. Build one with :func:`mpi_comm` or
    :func:`torch_comm`.
    """

    rank: int
    size: int

    def allgather_object(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order (pickled; for a few small values)."""
        raise NotImplementedError

    def _alltoall_counts(self, counts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _alltoallv_bytes(self, send: np.ndarray, send_counts: np.ndarray, recv: np.ndarray,
                         recv_counts: np.ndarray) -> None:
        raise NotImplementedError

    def alltoallv(self, send: np.ndarray, send_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send ``send_counts[k]`` consecutive rows of ``send`` to rank ``k``; returns the rows
        received (grouped by source rank, in rank order, each group in its sender's order) and
        how many came from each rank. ``send`` must be C-contiguous; rows travel as bytes, so
        any dtype works and nothing is converted."""
        send_counts = np.ascontiguousarray(send_counts, dtype=np.int64)
        recv_counts = self._alltoall_counts(send_counts)
        recv = np.empty((int(recv_counts.sum()), *send.shape[1:]), dtype=send.dtype)
        row_bytes = send.dtype.itemsize * int(np.prod(send.shape[1:], dtype=np.int64))
        self._alltoallv_bytes(send.view(np.uint8).reshape(len(send), row_bytes), send_counts,
                              recv.view(np.uint8).reshape(len(recv), row_bytes), recv_counts)
        return recv, recv_counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class _MpiComm(Comm):
    def __init__(self, comm: Any):
        from mpi4py import MPI

        self._mpi, self._comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allgather_object(self, obj: Any) -> list:
        return self._comm.allgather(obj)

    def _alltoall_counts(self, counts: np.ndarray) -> np.ndarray:
        out = np.empty_like(counts)
        self._comm.Alltoall(counts, out)
        return out

    def _alltoallv_bytes(self, send, send_counts, recv, recv_counts) -> None:
        width = send.shape[1]
        sc, rc = send_counts * width, recv_counts * width
        sd, rd = np.cumsum(sc) - sc, np.cumsum(rc) - rc
        byte = self._mpi.BYTE
        self._comm.Alltoallv([send, (sc, sd), byte], [recv, (rc, rd), byte])


class _TorchComm(Comm):
    def __init__(self, group: Any):
        import torch
        import torch.distributed as dist

        self._torch, self._dist, self._group = torch, dist, group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)

    def allgather_object(self, obj: Any) -> list:
        out: list = [None] * self.size
        self._dist.all_gather_object(out, obj, group=self._group)
        return out

    def _alltoall_counts(self, counts: np.ndarray) -> np.ndarray:
        out = np.empty_like(counts)
        self._dist.all_to_all_single(self._torch.from_numpy(out), self._torch.from_numpy(counts),
                                     group=self._group)
        return out

    def _alltoallv_bytes(self, send, send_counts, recv, recv_counts) -> None:
        # from_numpy shares the buffers: the engine reads and writes the NumPy arrays.
        self._dist.all_to_all_single(self._torch.from_numpy(recv), self._torch.from_numpy(send),
                                     recv_counts.tolist(), send_counts.tolist(), group=self._group)


def mpi_comm(comm: Any = None) -> Comm:
    """MPI through mpi4py (``pip install sparseopt[mpi]``); ``comm`` defaults to
    ``MPI.COMM_WORLD``. Run under ``mpiexec -n N python -m mpi4py script.py`` (``-m mpi4py``
    makes an exception on one rank abort them all instead of leaving the others waiting)."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("sparseopt.distributed.mpi_comm needs mpi4py and an MPI: "
                          "pip install 'sparseopt[mpi]' (mpi4py and the mpich wheel)") from e
    return _MpiComm(MPI.COMM_WORLD if comm is None else comm)


def torch_comm(group: Any = None) -> Comm:
    """An initialised ``torch.distributed`` process group (default: the world group) with a
    CPU backend (gloo): rows move through ``all_to_all_single`` on tensors that share the NumPy
    buffers. Call ``torch.distributed.init_process_group("gloo")`` first (torchrun sets the
    environment it reads)."""
    try:
        import torch.distributed as dist
    except ImportError as e:
        raise ImportError("sparseopt.distributed.torch_comm needs PyTorch: "
                          "pip install torch") from e
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch_comm: torch.distributed is not initialised; call "
                           "torch.distributed.init_process_group('gloo') first")
    backend = str(dist.get_backend(group))
    if "gloo" not in backend:
        raise ValueError(f"torch_comm: the process group's backend is {backend!r}; sharded "
                         f"tables live in host memory, so use a CPU backend: "
                         f"init_process_group('gloo')")
    return _TorchComm(group)


def _agree(comm: Comm, error: Exception | None, value: Any = None) -> list:
    """One all-gather: raise on every rank if any rank has an error; else every rank's value."""
    mine = None if error is None else (type(error).__name__, str(error))
    gathered = comm.allgather_object((mine, value))
    for rank, (err, _) in enumerate(gathered):
        if err is not None:
            name, message = err
            raise _ERRORS.get(name, ValueError)(
                f"rank {rank} of {comm.size}: {message} (nothing was changed on any rank)")
    return [value for _, value in gathered]


def _check_indices(indices: Any, num_rows: int) -> None:
    if not isinstance(indices, np.ndarray) or indices.dtype not in (np.int32, np.int64):
        got = indices.dtype if isinstance(indices, np.ndarray) else type(indices).__name__
        raise TypeError(f"indices must be a numpy array of int32 or int64, got {got}")
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
    bad = np.flatnonzero((indices < 0) | (indices >= num_rows))
    if len(bad):
        k = int(bad[0])
        raise IndexError(f"indices[{k}] = {int(indices[k])} is out of range for a table of "
                         f"{num_rows} rows; indices must be in [0, {num_rows})")


def _attempt(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return fn(), None
    except (IndexError, TypeError, ValueError) as e:
        return None, e


class ShardedTable:
    """A ``(num_rows, *row_shape)`` table whose rows are spread over the ranks of ``comm``.

    Row ``r`` lives on rank ``r % comm.size``; :attr:`rows` lists the global ids of this rank's
    rows and :attr:`shard` holds their values (``shard[j]`` is row ``rows[j]``). The whole
    table never exists on one rank: ``init(rows)`` is called on each rank with the global ids
    of its rows (int64) and returns their initial values, shape ``(len(rows), *row_shape)``
    (cast to ``dtype`` where NumPy casts safely within a kind); without ``init`` the rows are 0.

    Collective (every rank, same order): construction, :meth:`lookup`, :meth:`gather_all`.
    """

    def __init__(self, comm: Comm, num_rows: int, row_shape: tuple[int, ...] = (),
                 dtype: Any = np.float32, init: Callable[[np.ndarray], Any] | None = None):
        if not isinstance(comm, Comm):
            raise TypeError(f"comm must come from sparseopt.distributed.mpi_comm() or "
                            f"torch_comm(), got {type(comm).__name__}")
        self._comm = comm

        def build() -> np.ndarray:
            rows_count = _args.count("num_rows", num_rows)
            dims = (row_shape,) if isinstance(row_shape, (int, np.integer)) else row_shape
            shape = tuple(_args.count("row_shape", d) for d in dims)
            kind = np.dtype(dtype)
            if kind not in (np.float32, np.float64):
                raise TypeError(f"dtype must be float32 or float64, got {kind}")
            self._num_rows, self._row_shape, self._dtype = rows_count, shape, kind
            self._rows = np.arange(comm.rank, rows_count, comm.size, dtype=np.int64)
            shard = np.zeros((len(self._rows), *shape), dtype=kind)
            if init is not None:
                values = np.asarray(init(self._rows.copy()))
                if values.shape != shard.shape:
                    raise ValueError(f"init(rows) must return an array of shape {shard.shape} "
                                     f"(len(rows), *row_shape), got {values.shape}")
                np.copyto(shard, values, casting="same_kind")
            return shard

        shard, error = _attempt(build)
        layouts = _agree(comm, error, None if error else (self._num_rows, self._row_shape,
                                                          str(self._dtype)))
        if len(set(layouts)) != 1:
            raise ValueError(f"every rank must build the table with the same num_rows, "
                             f"row_shape and dtype; got {layouts} in rank order")
        self._shard = shard
        self._optimizer: ShardedOptimizer | None = None

    @property
    def comm(self) -> Comm:
        return self._comm

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self._row_shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def rows(self) -> np.ndarray:
        """Global ids of this rank's rows, ascending (a read-only view)."""
        view = self._rows.view()
        view.flags.writeable = False
        return view

    @property
    def shard(self) -> np.ndarray:
        """This rank's rows (the live array its optimizer updates in place)."""
        return self._shard

    def _route(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions grouped by owner (stable: each group in input order), the local ids in that
        order, and how many go to each rank."""
        owner = indices % self._comm.size
        order = np.argsort(owner, kind="stable")
        local = (indices[order] // self._comm.size).astype(np.int64)
        return order, local, np.bincount(owner, minlength=self._comm.size)

    def lookup(self, indices: np.ndarray) -> np.ndarray:
        """The rows ``indices`` (int32/int64, 1-D, repeats fine), shape
        ``(len(indices), *row_shape)``; collective: each rank passes its own indices (an
        empty array too). With an exact-mode optimizer the owners first catch the requested
        rows up (``flush``), so the rows are the dense optimizer's values."""
        _, error = _attempt(lambda: _check_indices(indices, self._num_rows))
        _agree(self._comm, error)
        # Each distinct id travels once: a Zipf batch repeats its hot ids many times, and
        # without this the owner of the hottest row would serve a multiple of the average.
        distinct, inverse = np.unique(indices, return_inverse=True)
        order, local, counts = self._route(distinct)
        wanted, wanted_counts = self._comm.alltoallv(local, counts)
        if self._optimizer is not None:
            self._optimizer._flush_local(wanted)
        replies, _ = self._comm.alltoallv(self._shard[wanted], wanted_counts)
        rows = np.empty_like(replies)
        rows[order] = replies
        return rows[inverse.reshape(-1)]

    def gather_all(self) -> np.ndarray:
        """The whole table on every rank (for tests and export: O(table) memory and traffic;
        collective). Rows of an exact-mode optimizer are caught up first."""
        if self._optimizer is not None:
            self._optimizer._flush_local(None)
        size = self._comm.size
        send = np.concatenate([self._shard] * size) if size > 1 else self._shard
        received, counts = self._comm.alltoallv(np.ascontiguousarray(send),
                                                np.full(size, len(self._shard)))
        full = np.empty((self._num_rows, *self._row_shape), dtype=self._dtype)
        starts = np.cumsum(counts) - counts
        for rank in range(size):
            full[rank::size] = received[starts[rank]:starts[rank] + counts[rank]]
        return full

    def __repr__(self) -> str:
        return (f"ShardedTable({self._num_rows} x {list(self._row_shape)} {self._dtype}, "
                f"rank {self._comm.rank} of {self._comm.size} holds {len(self._rows)} rows)")


class ShardedOptimizer:
    """Any :mod:`sparseopt.optim` optimizer, applied to a :class:`ShardedTable`.

    ``ShardedOptimizer(table, sparseopt.optim.Adam, lr=1e-3, mode="exact")`` builds
    ``optimizer_class(table.shard, **hyperparams)`` on every rank. :meth:`step` is collective:
    each rank passes its own batch (possibly empty); gradient rows travel to their owners,
    grouped by source rank in order, and each owner takes one ordinary step on its shard, so the
    table ends as one process stepping the concatenated batches in rank order would leave it.
    ``lr`` must be set to the same value on every rank (checked at the next step).
    """

    def __init__(self, table: ShardedTable, optimizer_class: type, **hyperparams: Any):
        if not isinstance(table, ShardedTable):
            raise TypeError(f"table must be a ShardedTable, got {type(table).__name__}")
        if table._optimizer is not None:
            raise ValueError("this ShardedTable already has an optimizer; a table is stepped "
                             "by one optimizer (build a second table for a second one)")
        from . import optim

        def build() -> Any:
            if not (isinstance(optimizer_class, type)
                    and issubclass(optimizer_class, optim.Optimizer)):
                raise TypeError(f"optimizer_class must be a sparseopt.optim class such as "
                                f"sparseopt.optim.Adam, got {optimizer_class!r}")
            return optimizer_class(table.shard, **hyperparams)

        inner, error = _attempt(build)
        described = None if error else f"{type(inner).__name__}({inner._hyperparams})"
        options = _agree(table.comm, error, described)
        if len(set(options)) != 1:
            raise ValueError(f"every rank must build the optimizer with the same class and "
                             f"hyper-parameters; got {options} in rank order")
        self._table, self._inner = table, inner
        table._optimizer = self

    @property
    def table(self) -> ShardedTable:
        return self._table

    @property
    def optimizer(self) -> Any:
        """This rank's optimizer over its shard (a :mod:`sparseopt.optim` object)."""
        return self._inner

    @property
    def lr(self) -> float:
        return self._inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._inner.lr = value

    @property
    def step_count(self) -> int:
        return self._inner.step_count

    def step(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Apply the row-sparse gradient ``values[k]`` of global row ``indices[k]``; collective.

        ``indices``: int32 or int64, 1-D, in ``[0, num_rows)``; ``values``: the table's dtype,
        shape ``(len(indices), *row_shape)``. Checked on every rank before anything moves; a
        rejected call raises on every rank and leaves every shard and state unchanged.
        """
        table = self._table

        def check() -> None:
            _check_indices(indices, table.num_rows)
            if not isinstance(values, np.ndarray) or values.dtype != table.dtype:
                got = values.dtype if isinstance(values, np.ndarray) else type(values).__name__
                raise TypeError(f"values must be a numpy array of the table's dtype "
                                f"{table.dtype}, got {got}")
            expected = (len(indices), *table.row_shape)
            if values.shape != expected:
                raise ValueError(f"values must have shape {expected} (len(indices), "
                                 f"*row_shape), got {values.shape}")

        _, error = _attempt(check)
        lrs = _agree(table.comm, error, self.lr)
        if len(set(lrs)) != 1:
            raise ValueError(f"lr must be the same on every rank, got {lrs} in rank order "
                             f"(nothing was changed on any rank)")
        order, local, counts = table._route(indices)
        ids, _ = table.comm.alltoallv(local, counts)
        grads, _ = table.comm.alltoallv(np.ascontiguousarray(values[order]), counts)
        self._inner.step(ids, grads)

    def _flush_local(self, local_ids: np.ndarray | None) -> None:
        self._inner.flush(local_ids)

    def flush(self) -> None:
        """Catch this rank's shard up to the current step (exact mode; per rank, not collective)."""
        self._inner.flush()

    def state_dict(self) -> dict[str, Any]:
        """This rank's checkpoint: its shard's rows and optimizer state (per rank). Nothing is
        flushed, as in :meth:`sparseopt.optim.Optimizer.state_dict`."""
        comm = self._table.comm
        return {"world_size": comm.size, "rank": comm.rank, "num_rows": self._table.num_rows,
                "param": self._table.shard.copy(), "optimizer": self._inner.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore this rank's :meth:`state_dict` (per rank). It must come from the same rank of
        a run with the same world size and table; everything is checked before anything is
        written."""
        comm, table = self._table.comm, self._table
        keys = {"world_size", "rank", "num_rows", "param", "optimizer"}
        if not isinstance(state_dict, Mapping) or set(state_dict) != keys:
            raise ValueError(f"state_dict must be a mapping with the keys {sorted(keys)}, as "
                             f"returned by ShardedOptimizer.state_dict()")
        if state_dict["world_size"] != comm.size or state_dict["num_rows"] != table.num_rows:
            raise ValueError(f"state_dict was saved by {state_dict['world_size']} ranks for a "
                             f"table of {state_dict['num_rows']} rows; loading needs the same "
                             f"world size and table ({comm.size} ranks, {table.num_rows} rows): "
                             f"rows are placed by r % world_size")
        if state_dict["rank"] != comm.rank:
            raise ValueError(f"state_dict holds rank {state_dict['rank']}'s shard; rank "
                             f"{comm.rank} must load its own")
        param = state_dict["param"]
        if (not isinstance(param, np.ndarray) or param.dtype != table.dtype
                or param.shape != table.shard.shape):
            raise ValueError(f"state_dict['param'] must be a {table.dtype} array of shape "
                             f"{table.shard.shape}")
        self._inner.load_state_dict(state_dict["optimizer"])  # checks everything first
        np.copyto(table.shard, param)

    def __repr__(self) -> str:
        return f"ShardedOptimizer({self._inner!r}, {self._table!r})"
