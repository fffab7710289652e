"""Hogwild!: several workers update one parameter table at once, without locks.

Sparse problems are where this works (Niu, Recht, Re and Wright, 2011): two workers rarely touch
the same row, so an update lost to a collision now and then costs less than any lock. This
module runs a training function in ``num_workers`` threads or processes over shared tables::

    from sparseopt import hogwild
    from sparseopt.optim import Adagrad

    table = hogwild.share(initial_table)          # shared memory: every worker updates it
    opt = Adagrad(table, lr=0.1).share_memory()   # and the optimizer state beside it

    def train(worker, opt, shard):                # one call per worker, in its thread/process
        worker.set_total(len(shard))
        for indices, values in batches(shard):
            opt.step(indices, values)             # this worker's own replica of `opt`
            worker.progress(len(indices))

    hogwild.run(train, 2, backend="fork", args=(opt,), worker_args=[(s,) for s in shards])

What is atomic and what is not:

* One kernel call (``opt.step``) updates the rows it touches element by element with plain
  loads and stores; another worker's step on the same row may interleave with it, so an update
  can be lost or a row can mix two workers' updates (elements of ``float32``/``float64`` are
  aligned and never half-written on x86-64 and ARM64). Rows no other worker touches get exactly
  the sequential result: a parallel run over disjoint rows equals a sequential one bit for bit.
* Nothing is written out of bounds: every index is checked against the table before the first
  write, a worker's indices and values are its own arrays, and state arrays never change size
  (lazy-mode state is allocated once; ``mode="exact"``, whose history grows, is refused).
* Per-row counters (SGD momentum's and Adam ``bias_correction="row"``'s ``row_steps``) are
  elements like any other: a collision can lose an increment.
* Each worker steps its own optimizer object (:meth:`~sparseopt.optim.Optimizer.replica`), so step
  counts, learning-rate schedules and ``num_threads`` are per worker; ``run`` makes the replicas.
  Calls on one optimizer object from several threads take turns (they never race).
* Step counts: after a ``backend="thread"`` run (returned or raised), each optimizer passed in
  has its ``step_count`` advanced by the sum of the steps all its replicas took, so the parent
  counts every step the shared table received (this is the count Adagrad's ``lr_decay`` and
  Adam's ``bias_correction="global"`` use on the parent's next step); steps of a worker still
  running after a failure's grace period are not counted. Process backends leave the parent's
  ``step_count`` as it was: their replicas' counts stay in the worker processes.

Threads (``backend="thread"``) share everything in the process; the kernels release the GIL, so
they run in parallel while the Python between steps takes turns. Processes (``"fork"``,
``"spawn"``) share only memory from :func:`empty`, :func:`zeros` and :func:`share` (POSIX shared
memory through :mod:`multiprocessing.shared_memory`, handed to the kernels without a copy); any
other array a process writes is its own copy.

Shared blocks are unlinked (their names removed from ``/dev/shm``) when the process that created
them drops its last array on them, when it exits (normally, through an exception, or on
KeyboardInterrupt / SIGINT), or at :func:`release`. If it is killed outright (SIGKILL), Python's
resource tracker unlinks them once its worker processes are gone, which ``run`` makes happen:
worker processes die with their parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing as mp
import multiprocessing.connection
import multiprocessing.reduction
import multiprocessing.util
import os
import pickle
import secrets
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from multiprocessing import shared_memory
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import _args, _progress
from .optim import Optimizer

__all__ = ["empty", "zeros", "share", "is_shared", "release", "run", "Worker", "WorkerError",
           "Stopped", "RemoteTraceback", "BACKENDS"]

BACKENDS = ("thread", "fork", "spawn")
# Seconds run() waits, after a thread worker raised, for the other threads to stop at their
# next progress() or barrier() before it raises anyway.
THREAD_STOP_GRACE = 2.0
_PREFIX = "sparseopt_"


# --------------------------------------------------------------------------------------------
# shared memory
# --------------------------------------------------------------------------------------------
class _Block:
    """A POSIX shared-memory block: its name, its SharedMemory object and who may unlink it."""

    __slots__ = ("name", "shm", "owner_pid", "unlinked")

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool):
        self.name = shm.name
        self.shm = shm
        self.owner_pid = os.getpid() if owner else None
        self.unlinked = False

    def unlink(self) -> None:
        """Remove the name (creator only, once); mappings stay valid."""
        if self.owner_pid == os.getpid() and not self.unlinked:
            self.unlinked = True
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class _Mapping:
    """A block mapped into this process. Arrays on it reach it through their ``.base``; when the
    last one is gone the block is unlinked (by its creator) and unmapped."""

    def __init__(self, block: _Block):
        self.block = block
        self.size = block.shm.size
        # The address, without keeping a buffer export (SharedMemory.close refuses while one
        # exists, and arrays built from __array_interface__ hold none).
        probe = ctypes.c_char.from_buffer(block.shm.buf)
        self.address = ctypes.addressof(probe)
        del probe


class _Window:
    """``__array_interface__`` of an array on a mapping (and the reference that keeps it)."""

    def __init__(self, mapping: _Mapping, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 strides: tuple[int, ...] | None):
        self.mapping = mapping
        self.__array_interface__ = {
            "version": 3, "shape": shape, "typestr": dtype.str, "descr": dtype.descr,
            "data": (mapping.address + offset, False), "strides": strides,
        }


_registry: dict[str, weakref.ref[_Mapping]] = {}  # name -> live mapping, in this process
_registry_lock = threading.RLock()  # re-entrant: a finalizer can run during an allocation
_exit_hook_pid: int | None = None


def _unmapped(block: _Block, ref: weakref.ref[_Mapping]) -> None:
    # The last array on the block is gone: unlink (creator only) and unmap.
    with _registry_lock:
        if _registry.get(block.name) is ref:
            del _registry[block.name]
    block.unlink()
    block.shm.close()


def _live_mappings() -> list[_Mapping]:
    with _registry_lock:
        mappings = [ref() for ref in _registry.values()]
    return [m for m in mappings if m is not None]


def _unlink_all_owned() -> None:
    # At exit (normal, exception, KeyboardInterrupt), also in multiprocessing's children, which
    # leave through os._exit: names go, mappings stay (a thread may still be in a kernel).
    for mapping in _live_mappings():
        mapping.block.unlink()


def _ensure_exit_hook() -> None:
    # multiprocessing's exit function runs at interpreter exit and at the end of its children;
    # a forked child starts without its parent's hooks (and owns none of its blocks).
    global _exit_hook_pid
    if _exit_hook_pid != os.getpid():
        multiprocessing.util.Finalize(None, _unlink_all_owned, exitpriority=100)
        _exit_hook_pid = os.getpid()


def _track(block: _Block) -> _Mapping:
    mapping = _Mapping(block)
    ref = weakref.ref(mapping)
    weakref.finalize(mapping, _unmapped, block, ref).atexit = False
    _registry[block.name] = ref
    return mapping


def _new_mapping(nbytes: int) -> _Mapping:
    _ensure_exit_hook()
    size = max(int(nbytes), 1)  # POSIX shared memory cannot be empty
    for _ in range(16):
        name = f"{_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        try:
            shm = shared_memory.SharedMemory(name=name, create=True, size=size)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 16 collisions of 32 random bits
        raise FileExistsError("could not find a free shared-memory name")
    with _registry_lock:
        return _track(_Block(shm, owner=True))


def _attach(name: str) -> _Mapping:
    with _registry_lock:
        ref = _registry.get(name)
        mapping = ref() if ref is not None else None
        if mapping is not None:
            return mapping
        if sys.version_info >= (3, 13):  # the creator's resource tracker already knows it
            shm = shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
        else:  # workers share their parent's tracker: registering again changes nothing
            shm = shared_memory.SharedMemory(name=name)
        return _track(_Block(shm, owner=False))


def _array_on(mapping: _Mapping, offset: int, shape: tuple[int, ...], dtype: np.dtype,
              strides: tuple[int, ...] | None = None) -> np.ndarray:
    return np.asarray(_Window(mapping, offset, shape, dtype, strides))


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(_args.count("shape", d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    return dims


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects, which cannot live in shared memory; "
                        f"pass a numeric dtype such as np.float32")
    return dt


def empty(shape: int | Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """A new C-contiguous array in shared memory, contents undefined (see :func:`zeros`)."""
    shape, dt = _shape(shape), _dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    return _array_on(_new_mapping(nbytes), 0, shape, dt)


def zeros(shape: int | Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """A new C-contiguous array of zeros in shared memory.

    It is a plain, writeable ``numpy.ndarray`` that the kernels take without a copy. Worker
    processes started by :func:`run` see the same memory: forked ones inherit it, spawned ones
    attach to it by name when they unpickle their arguments. The block is unlinked when this
    process drops its last array on it or exits (see the module notes).
    """
    shape, dt = _shape(shape), _dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    mapping = _new_mapping(nbytes)  # fresh POSIX shared memory reads as zeros
    return _array_on(mapping, 0, shape, dt)


def share(array: Any) -> np.ndarray:
    """A C-contiguous copy of ``array`` in shared memory (same shape and dtype)."""
    source = np.asarray(array)
    out = empty(source.shape, source.dtype)
    np.copyto(out, source)
    return out


def _extent(a: np.ndarray) -> tuple[int, int]:
    lo = hi = a.__array_interface__["data"][0]
    if a.size == 0:
        return lo, hi
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi + a.itemsize


def _mapping_of(a: np.ndarray) -> _Mapping | None:
    lo, hi = _extent(a)
    for m in _live_mappings():
        if m.address <= lo and hi <= m.address + m.size:
            return m
    return None


def is_shared(obj: Any) -> bool:
    """Whether ``obj`` lives in this module's shared memory: an array (or a view of one) made
    by :func:`empty`, :func:`zeros`, :func:`share` or received by a worker; an optimizer whose
    ``param`` and every state array do."""
    if isinstance(obj, Optimizer):
        return is_shared(obj.param) and all(is_shared(a) for a in obj.state.values())
    if isinstance(obj, np.ndarray):
        return _mapping_of(obj) is not None
    raise TypeError(f"is_shared() takes a numpy array or a sparseopt optimizer, got "
                    f"{type(obj).__name__}")


def release(*arrays: np.ndarray) -> None:
    """Unlink the shared-memory blocks of these arrays now (their names leave ``/dev/shm``).

    The arrays stay valid, in this process and in every worker that already has them; forked
    workers started later inherit them too. Only spawned workers can no longer attach, so
    :func:`run` refuses ``backend="spawn"`` with released arrays. Only the creating process
    unlinks; elsewhere this does nothing. Call it right after allocating to leave nothing
    behind even if the process is killed, when workers are forked.
    """
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"release() takes numpy arrays, got {type(a).__name__}")
        mapping = _mapping_of(a)
        if mapping is None:
            raise ValueError("release() needs an array in shared memory (from hogwild.empty, "
                             "zeros or share)")
        mapping.block.unlink()


def _rebuild(name: str, offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
             dtype: np.dtype) -> np.ndarray:
    return _array_on(_attach(name), offset, shape, dtype, strides)


def _reduce_ndarray(a: np.ndarray) -> Any:
    # Arrays in a shared block travel as (name, offset, layout): the receiver attaches to the
    # same memory. Everything else pickles as usual (a copy).
    mapping = _mapping_of(a)
    if mapping is None:
        return a.__reduce_ex__(4)
    offset = a.__array_interface__["data"][0] - mapping.address
    return _rebuild, (mapping.block.name, offset, a.shape, a.strides, a.dtype)


class _SharedPickler(multiprocessing.reduction.ForkingPickler):
    """multiprocessing's pickler (locks, queues, pipes), plus zero-copy shared arrays; used for
    what spawned workers receive, and nowhere else."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dispatch_table[np.ndarray] = _reduce_ndarray


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------
class Stopped(BaseException):
    """Raised inside a worker by :meth:`Worker.progress` / :meth:`Worker.barrier` when the run
    is being stopped (another worker failed, or the parent was interrupted). A worker that lets
    it propagate ends quietly. It derives from BaseException so that ``except Exception`` in the
    training loop does not swallow it."""


class WorkerError(RuntimeError):
    """A worker failed without an exception that could be handed to the parent: it was killed
    by a signal, left through ``os._exit``, raised SystemExit/KeyboardInterrupt, or raised an
    exception that cannot be pickled. ``rank``, ``exitcode`` (processes) and ``traceback_text``
    say which and how."""

    def __init__(self, message: str, rank: int, exitcode: int | None = None,
                 traceback_text: str | None = None):
        super().__init__(message)
        self.rank = rank
        self.exitcode = exitcode
        self.traceback_text = traceback_text


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process; set as the ``__cause__`` of the
    exception ``run`` raises in the parent, so it is printed with it."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class Worker:
    """What a worker function gets as its first argument: who it is, and where it reports.

    ``rank`` (0..num_workers-1), ``num_workers``, ``backend`` and ``num_threads`` (the threads
    per kernel call the runner gave this worker's optimizers, None when it left them as they
    were) describe it. ``progress(n)`` adds
    ``n`` to its count (any unit: rows, words, batches) for the display, ``set_total(n)`` says
    how much it expects, ``done`` and ``done_all`` read the counts (``done_all`` over every
    worker: a learning-rate schedule over global progress, as word2vec's, reads it).
    """

    def __init__(self, rank: int, num_workers: int, backend: str, num_threads: int | None,
                 counters: np.ndarray, barrier: Any):
        self.rank = rank
        self.num_workers = num_workers
        self.backend = backend
        self.num_threads = num_threads
        self._counters = counters  # [done x n, totals x n, stop flag], shared with the parent
        self._barrier = barrier

    def progress(self, n: int = 1) -> None:
        """Count ``n`` more units done by this worker. Raises :class:`Stopped` when the run is
        being stopped, which ends the worker's loop (let it propagate)."""
        self._counters[self.rank] += n
        if self._counters[-1]:
            raise Stopped

    def set_total(self, total: int) -> None:
        """The number of units this worker expects to do (for the display's percentage)."""
        self._counters[self.num_workers + self.rank] = _args.count("total", total)

    @property
    def done(self) -> int:
        """Units this worker reported so far."""
        return int(self._counters[self.rank])

    @property
    def done_all(self) -> int:
        """Units every worker reported so far (read without a lock: the workers keep counting)."""
        return int(self._counters[: self.num_workers].sum())

    @property
    def stopping(self) -> bool:
        """Whether the run is being stopped; a worker that does not call progress() can poll it."""
        return bool(self._counters[-1])

    def barrier(self) -> None:
        """Wait until every worker has called barrier() (e.g. between epochs; every worker
        must call it equally often). Raises :class:`Stopped` if the run is stopped meanwhile."""
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            raise Stopped from None

    def __repr__(self) -> str:
        return (f"Worker(rank={self.rank}, num_workers={self.num_workers}, "
                f"backend={self.backend!r}, num_threads={self.num_threads})")


def _map_optimizers(obj: Any, fn: Callable[[Optimizer, str], Any], where: str) -> Any:
    """obj with every optimizer in it (top level, or inside tuples, lists and dicts) replaced by
    fn(optimizer, where)."""
    if isinstance(obj, Optimizer):
        return fn(obj, where)
    if type(obj) in (tuple, list):
        return type(obj)(_map_optimizers(x, fn, f"{where}[{i}]") for i, x in enumerate(obj))
    if type(obj) is dict:
        return {k: _map_optimizers(v, fn, f"{where}[{k!r}]") for k, v in obj.items()}
    return obj


def _worker_copy(num_threads: int | None,
                 made: list[tuple[Optimizer, Optimizer]] | None = None
                 ) -> Callable[[Optimizer, str], Optimizer]:
    """One worker's replicas: an optimizer found twice among its arguments is one replica.
    Each new (optimizer, replica) pair is appended to ``made`` when it is given."""
    replicas: dict[int, Optimizer] = {}

    def copy(opt: Optimizer, where: str) -> Optimizer:
        if id(opt) not in replicas:
            twin = opt.replica()
            if num_threads is not None:
                twin.num_threads = num_threads
            replicas[id(opt)] = twin
            if made is not None:
                made.append((opt, twin))
        return replicas[id(opt)]
    return copy


def _count_replica_steps(made: list[tuple[Optimizer, Optimizer]]) -> None:
    """Advance each parent optimizer's step count by the steps its replicas took (the sum over
    workers), so that a later step of the parent (Adagrad's lr_decay, Adam's global bias
    correction) counts the steps the shared table received."""
    start = {id(opt): opt.step_count for opt, _ in made}
    for opt, twin in made:
        with opt._lock:
            opt._step += twin.step_count - start[id(opt)]


def _check_optimizer(backend: str) -> Callable[[Optimizer, str], Optimizer]:
    def check(opt: Optimizer, where: str) -> Optimizer:
        if opt.exact:
            raise ValueError(f"{where} is an optimizer in mode='exact', which cannot be shared "
                             f"between Hogwild! workers (its history grows with one optimizer's "
                             f"steps); use mode='lazy'")
        if backend != "thread":
            arrays = {"param": opt.param, **opt.state}
            for name, a in arrays.items():
                mapping = _mapping_of(a)
                if mapping is None:
                    fix = ("create the table with sparseopt.hogwild.share(table) (or zeros/empty)"
                           if name == "param" else "call opt.share_memory() before run()")
                    raise ValueError(f"{where}: its {name} is not in shared memory, so worker "
                                     f"processes (backend={backend!r}) would update copies; {fix}")
                if backend == "spawn" and mapping.block.unlinked:
                    raise ValueError(f"{where}: its {name} was released (hogwild.release), so "
                                     f"spawned workers cannot attach to it; use backend='fork'")
        return opt
    return check


def _exception_note(exc: BaseException, rank: int, num_workers: int, backend: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised by hogwild worker {rank} of {num_workers}, backend={backend!r})")


def _as_error(exc: BaseException, rank: int, backend: str,
              tb_text: str | None = None) -> BaseException:
    # SystemExit / KeyboardInterrupt from a worker must not end the parent.
    if isinstance(exc, Exception):
        return exc
    err = WorkerError(f"hogwild worker {rank} raised {exc!r}", rank, traceback_text=tb_text)
    err.__cause__ = exc
    return err


def run(worker_fn: Callable[..., Any], num_workers: int, *, backend: str = "thread",
        args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
        worker_args: Sequence[Sequence[Any]] | None = None, threads_per_worker: int | None = 1,
        progress: bool | None = None, desc: str | None = None, unit: str = "it") -> list[Any]:
    """Run ``worker_fn(worker, *args, *worker_args[rank], **kwargs)`` in ``num_workers`` workers
    at once and return their results, in rank order.

    Parameters
    ----------
    worker_fn : callable
        The training loop of one worker. Its first argument is a :class:`Worker` (``rank``,
        ``progress(n)``, ``set_total(n)``, ...). With ``backend="spawn"`` it must be importable
        (a module-level function) and its arguments picklable.
    num_workers : int
        Number of workers, >= 1.
    backend : {"thread", "fork", "spawn"}
        ``"thread"``: Python threads of this process (everything is shared; kernels release the
        GIL). ``"fork"`` / ``"spawn"``: worker processes (``multiprocessing`` start methods,
        daemonic: they cannot start processes of their own); they share only arrays in this
        module's shared memory, and every optimizer among the arguments must live there
        (``param`` from :func:`share`, then ``opt.share_memory()``). Return values come back
        pickled (copies).
    args, kwargs : arguments every worker gets.
    worker_args : sequence of ``num_workers`` tuples, optional
        Arguments of each worker (its data shard), after ``args``.
    threads_per_worker : int or None
        Every optimizer in the arguments (also inside tuples, lists and dicts) reaches its
        worker as its own :meth:`~sparseopt.optim.Optimizer.replica` (same arrays, own step
        count and ``lr``) with ``num_threads`` set to this (default 1: the workers are the
        parallelism; 0 = all cores per call). None keeps each optimizer's own setting. A process
        forked after this one ran a multi-threaded kernel runs its kernels on one thread
        whatever it asks for (GNU OpenMP cannot start threads there); results do not change.
    progress : bool or None
        Show per-worker progress (what workers report through ``progress(n)``) and the total:
        live bars on a terminal, a line every 30 s elsewhere. None: on unless the environment
        sets ``SPARSEOPT_PROGRESS=0``.
    desc, unit : the label of the total line and the unit of the counts.

    Returns
    -------
    list: what each worker returned (from processes: pickled back).

    Raises
    ------
    The first worker's exception, as soon as it happens (from a process: the exception itself,
    unpickled, with the worker's traceback text as its ``__cause__``); :class:`WorkerError` for a
    worker that died without one. The other workers are stopped first: processes are terminated;
    threads, which cannot be killed, stop at their next ``progress()`` or ``barrier()``.
    KeyboardInterrupt in the parent stops the workers the same way and is re-raised. Every
    worker has ended when ``run`` returns or raises, with one exception: a thread worker that
    reaches neither ``progress()`` nor ``barrier()`` within ``THREAD_STOP_GRACE`` seconds
    (2 s) of another worker's error cannot be stopped; ``run`` then raises the error anyway
    (its notes name the workers still running), and they finish in the background.
    """
    num_workers = _args.count("num_workers", num_workers, minimum=1)
    backend = _args.choice("backend", backend, BACKENDS)
    if not callable(worker_fn):
        raise TypeError(f"worker_fn must be callable, got {type(worker_fn).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of arguments, got {type(args).__name__}; "
                        f"pass args=(x,) for one argument")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
    args = tuple(args)
    kwargs = dict(kwargs or {})
    if worker_args is None:
        per_worker: list[tuple[Any, ...]] = [()] * num_workers
    else:
        per_worker = list(worker_args)
        if not all(isinstance(a, (tuple, list)) for a in per_worker):
            raise TypeError("worker_args must be a sequence of tuples, one per worker; pass "
                            "[(shard,) for shard in shards] for one argument each")
        if len(per_worker) != num_workers:
            raise ValueError(f"worker_args must hold num_workers ({num_workers}) tuples, got "
                             f"{len(per_worker)}")
        per_worker = [tuple(a) for a in per_worker]
    if threads_per_worker is not None:
        threads_per_worker = _args.threads("threads_per_worker", threads_per_worker)
    check = _check_optimizer(backend)
    _map_optimizers(args, check, "args")
    _map_optimizers(kwargs, check, "kwargs")
    for rank, extra in enumerate(per_worker):
        _map_optimizers(extra, check, f"worker_args[{rank}]")

    bar = _progress.Progress([f"worker {r}" for r in range(num_workers)], desc=desc, unit=unit,
                             enabled=progress)
    try:
        if backend == "thread":
            return _run_threads(worker_fn, num_workers, args, kwargs, per_worker,
                                threads_per_worker, bar)
        return _run_processes(worker_fn, num_workers, backend, args, kwargs, per_worker,
                              threads_per_worker, bar)
    finally:
        bar.close()


def _new_counters(num_workers: int, buffer: Any = None) -> np.ndarray:
    counters = (np.zeros(2 * num_workers + 1, np.int64) if buffer is None
                else np.frombuffer(buffer, np.int64))
    counters[num_workers: 2 * num_workers] = -1  # totals unknown
    return counters


def _show(bar: _progress.Progress, counters: np.ndarray, n: int) -> None:
    bar.update(counters[:n].tolist(), counters[n: 2 * n].tolist())


# -- threads ----------------------------------------------------------------------------------
def _run_threads(worker_fn: Callable[..., Any], n: int, args: tuple[Any, ...],
                 kwargs: dict[str, Any], per_worker: list[tuple[Any, ...]],
                 threads: int | None, bar: _progress.Progress) -> list[Any]:
    counters = _new_counters(n)
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[tuple[int, BaseException]] = []
    errors_lock = threading.Lock()
    calls = []
    made: list[tuple[Optimizer, Optimizer]] = []
    for r in range(n):
        copy = _worker_copy(threads, made)
        calls.append((_map_optimizers(args + per_worker[r], copy, "args"),
                      _map_optimizers(kwargs, copy, "kwargs")))
    contexts = [Worker(r, n, "thread", threads, counters, barrier) for r in range(n)]

    def stop() -> None:
        counters[-1] = 1
        barrier.abort()

    def target(rank: int) -> None:
        call_args, call_kwargs = calls[rank]
        try:
            results[rank] = worker_fn(contexts[rank], *call_args, **call_kwargs)
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the parent thread
            with errors_lock:
                errors.append((rank, exc))
            stop()

    workers = [threading.Thread(target=target, args=(r,), name=f"hogwild-worker-{r}",
                                daemon=True) for r in range(n)]
    failed_at = None  # when the first error was seen
    try:
        for t in workers:
            t.start()
        while any(t.is_alive() for t in workers):
            for t in workers:
                t.join(timeout=0.05)
            _show(bar, counters, n)
            if errors and failed_at is None:
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > THREAD_STOP_GRACE:
                break  # a worker that never reaches progress() or barrier() cannot be stopped
    except BaseException:  # KeyboardInterrupt: stop the workers, wait for them, re-raise
        stop()
        for t in workers:
            while t.is_alive():
                t.join(timeout=0.05)
        raise
    finally:  # the steps taken are the table's, also on error (see the module docstring)
        _count_replica_steps(made)
    _show(bar, counters, n)
    if errors:
        rank, exc = errors[0]
        _exception_note(exc, rank, n, "thread")
        running = [r for r, t in enumerate(workers) if t.is_alive()]
        if running and hasattr(exc, "add_note"):
            exc.add_note(f"(hogwild workers {running} were still running {THREAD_STOP_GRACE} s "
                         f"later: threads stop only at progress() or barrier(), so they go on "
                         f"in the background until their function returns)")
        raise _as_error(exc, rank, "thread")
    return results


# -- processes --------------------------------------------------------------------------------
class _Task:
    """A worker's function and arguments, pickled with :class:`_SharedPickler` while the spawned
    process is being started (so multiprocessing locks and pipes among them work too) and
    unpickled inside the worker's wrapper (so a failure there is reported like any other)."""

    def __init__(self, content: Any = None, data: bytes | None = None):
        self.content = content
        self.data = data

    def __reduce__(self) -> Any:
        return _Task, (None, bytes(_SharedPickler.dumps(self.content)))

    def load(self) -> Any:
        return self.content if self.data is None else pickle.loads(self.data)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT back while a worker starts (main thread, POSIX): a KeyboardInterrupt inside
    Process.start() would leave a child that the parent does not know about."""
    defer = (hasattr(signal, "pthread_sigmask")
             and threading.current_thread() is threading.main_thread())
    if not defer:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending SIGINT is raised now


def _die_with_parent(parent_pid: int) -> None:
    """Linux: end this worker when its parent dies (even by SIGKILL), so that no orphan keeps
    computing and the resource tracker can remove the parent's shared memory."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def _process_main(task: _Task, rank: int, n: int, backend: str, threads: int | None,
                  counters_buffer: Any, barrier: Any, writer: Any, parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # inherited from _sigint_deferred
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent(parent_pid)
    message: tuple[Any, ...]
    try:
        worker_fn, call_args, call_kwargs = task.load()
        copy = _worker_copy(threads)
        call_args = _map_optimizers(call_args, copy, "args")
        call_kwargs = _map_optimizers(call_kwargs, copy, "kwargs")
        counters = np.frombuffer(counters_buffer, np.int64)
        context = Worker(rank, n, backend, threads, counters, barrier)
        message = ("ok", worker_fn(context, *call_args, **call_kwargs))
    except Stopped:
        message = ("stopped",)
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        message = ("error", _pickled(exc), traceback.format_exc(), repr(exc))
    try:
        writer.send(message)
    except Exception as exc:  # the result (or exception) cannot be pickled
        writer.send(("error", None, traceback.format_exc(),
                     f"worker {rank}'s return value could not be sent to the parent: {exc!r}"))
    writer.close()


def _pickled(exc: BaseException) -> bytes | None:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return None


def _exit_text(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode} without returning from worker_fn"


def _remote_error(message: tuple[Any, ...], rank: int, n: int, backend: str) -> BaseException:
    _, data, tb_text, description = message
    exc: BaseException | None = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:
            exc = None
    if exc is None:
        err = WorkerError(f"hogwild worker {rank} failed: {description}", rank,
                          traceback_text=tb_text)
        err.__cause__ = RemoteTraceback(f'\n"""\n{tb_text}"""')
        return err
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb_text}"""')
    _exception_note(exc, rank, n, backend)
    return _as_error(exc, rank, backend, tb_text)


def _run_processes(worker_fn: Callable[..., Any], n: int, backend: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], per_worker: list[tuple[Any, ...]],
                   threads: int | None, bar: _progress.Progress) -> list[Any]:
    context = mp.get_context(backend)
    counters_buffer = context.RawArray(ctypes.c_int64, 2 * n + 1)  # no name: nothing to leak
    counters = _new_counters(n, counters_buffer)
    barrier = context.Barrier(n)
    processes: list[Any] = []
    readers: list[Any] = []
    results: list[Any] = [None] * n
    finished = [False] * n
    try:
        for rank in range(n):
            reader, writer = context.Pipe(duplex=False)
            readers.append(reader)
            content = (worker_fn, args + per_worker[rank], kwargs)
            task = _Task(content)  # pickled only by spawn
            process = context.Process(
                target=_process_main, name=f"hogwild-worker-{rank}", daemon=True,
                args=(task, rank, n, backend, threads, counters_buffer, barrier, writer,
                      os.getpid()))
            processes.append(process)  # before start: `finally` must see it once it runs
            try:
                with _sigint_deferred(), warnings.catch_warnings():
                    # Python >= 3.12 warns about fork in a process with threads (OpenMP's
                    # idle team counts); the kernels guard against it (see run()).
                    warnings.filterwarnings("ignore", category=DeprecationWarning,
                                            message=r".*fork\(\).*")
                    process.start()
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                if backend != "spawn":
                    raise
                raise TypeError(f"backend='spawn' pickles worker_fn and its arguments for every "
                                f"worker: worker_fn must be a module-level function and the "
                                f"arguments picklable ({exc}); or use backend='fork' or "
                                f"'thread'") from exc
            finally:
                writer.close()

        while not all(finished):
            waiting = {}
            for rank in range(n):
                if not finished[rank]:
                    waiting[readers[rank]] = rank
                    waiting[processes[rank].sentinel] = rank
            ready = multiprocessing.connection.wait(list(waiting), timeout=0.1)
            for rank in sorted({waiting[obj] for obj in ready}):
                if finished[rank]:
                    continue
                message: tuple[Any, ...] | None = None
                if readers[rank].poll():
                    try:
                        message = readers[rank].recv()
                    except (EOFError, OSError):
                        message = None
                if message is None:
                    processes[rank].join(timeout=5)
                    if processes[rank].is_alive():
                        continue  # pipe closed but still running: look again
                    raise WorkerError(f"hogwild worker {rank} (pid {processes[rank].pid}) "
                                      f"{_exit_text(processes[rank].exitcode)}", rank,
                                      processes[rank].exitcode)
                finished[rank] = True
                if message[0] == "error":
                    raise _remote_error(message, rank, n, backend)
                if message[0] == "ok":
                    results[rank] = message[1]
                # "stopped": the worker saw the stop flag, which only the parent sets on error
            _show(bar, counters, n)
        for process in processes:
            process.join(timeout=30)
        _show(bar, counters, n)
        return results
    finally:
        counters[-1] = 1  # workers still running stop at their next progress()
        barrier.abort()
        started = [process for process in processes if process.pid is not None]
        for process in started:
            if process.is_alive():
                process.terminate()
        for process in started:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for reader in readers:
            reader.close()
