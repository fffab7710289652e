"""Device arrays: the dispatch from sparseopt's functions and optimizers to the CUDA kernels.

A *device array* is anything with ``__cuda_array_interface__`` (CuPy, Numba) or a CUDA
``torch.Tensor``. Such arrays go to ``sparseopt._cuda`` (built with
``pip install . -C cmake.define.SPARSEOPT_CUDA=ON``) without a copy; the binding checks their
dtype, layout, shape and device. Kernels are queued on the current stream of the array's library
(``torch.cuda.current_stream()``, ``cupy.cuda.get_current_stream()``; the legacy default stream
for others). No array library is imported here: torch and CuPy are asked only about arrays that
are theirs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BUILD_HINT = ("sparseopt was built without its CUDA kernels; rebuild it with them "
              "(pip install sparseopt -C cmake.define.SPARSEOPT_CUDA=ON, nvcc on PATH) "
              "or pass NumPy arrays")


def _library(a: Any) -> str:
    return type(a).__module__.split(".")[0]


def is_device(a: Any) -> bool:
    """Whether `a` lives in CUDA device memory (an array with __cuda_array_interface__ or a
    CUDA torch tensor)."""
    if _library(a) == "torch":
        return bool(getattr(a, "is_cuda", False))
    return hasattr(type(a), "__cuda_array_interface__") or hasattr(a, "__cuda_array_interface__")


def module() -> Any:
    """sparseopt._cuda, or a RuntimeError that says how to build it."""
    try:
        from . import _cuda
    except ImportError as e:
        raise RuntimeError(BUILD_HINT) from e
    return _cuda


def built() -> bool:
    try:
        from . import _cuda  # noqa: F401
    except ImportError:
        return False
    return True


def device_count() -> int:
    """CUDA devices this process sees; 0 without the module, a driver or a device."""
    if not built():
        return 0
    try:
        return int(module().device_count())
    except Exception:  # never an error: info() reports, it does not fail
        return 0


def why_not_runnable() -> str | None:
    """Why device arrays cannot be stepped here (None: they can): no CUDA build, no device, or
    no torch with CUDA (the GPU tests' and benchmark's device arrays are torch tensors)."""
    if not built():
        return "sparseopt was built without SPARSEOPT_CUDA=ON"
    if device_count() == 0:
        return "no CUDA device"
    try:
        import torch
    except ImportError:
        return "needs torch with CUDA for device arrays"
    if not torch.cuda.is_available():
        return "torch was built without CUDA"
    return None


def plain(a: Any) -> Any:
    """The array the binding reads: a torch tensor without autograd (the same memory: torch
    refuses __cuda_array_interface__ on tensors that require grad), anything else as it is."""
    if a is not None and _library(a) == "torch":
        return a.detach()
    return a


def stream(a: Any) -> int:
    """The handle of the stream the kernels for `a` are queued on: torch's and CuPy's current
    stream on the array's device; for other arrays the stream their __cuda_array_interface__
    names (1: the legacy default stream, 2: per-thread), else 0 (the legacy default stream)."""
    lib = _library(a)
    if lib == "torch":
        import torch

        return int(torch.cuda.current_stream(a.device).cuda_stream)
    if lib == "cupy":
        import cupy

        with a.device:  # the current stream of the array's device, not of the current one
            return int(cupy.cuda.get_current_stream().ptr)
    named = a.__cuda_array_interface__.get("stream")
    return 0 if named is None else int(named)


def require_same_place(anchor: str, anchor_on_device: bool, **arrays: Any) -> None:
    """Raises TypeError unless every array in `arrays` is where `anchor` is (host or device)."""
    for name, a in arrays.items():
        if a is None or is_device(a) == anchor_on_device:
            continue
        here, there = ("device", "host") if anchor_on_device else ("host", "device")
        raise TypeError(f"{name} is in {there} memory but {anchor} is in {here} memory; keep "
                        f"{anchor} and {name} on one side (sparseopt never copies between them)")


def full(like: Any, shape: tuple[int, ...], dtype: Any, fill: float) -> Any:
    """A new device array of `shape` filled with `fill`, from `like`'s library and on its device
    (dtype None: like's dtype)."""
    lib = _library(like)
    if lib == "torch":
        import torch

        if dtype is not None and not isinstance(dtype, torch.dtype):
            dtype = getattr(torch, np.dtype(dtype).name)
        return torch.full(shape, fill, dtype=dtype or like.dtype, device=like.device)
    if lib == "cupy":
        import cupy

        with cupy.cuda.Device(like.device.id):
            return cupy.full(shape, fill, dtype=dtype or like.dtype)
    if lib == "numba":
        from numba import cuda

        # On Numba's current device: with another device current than like's, the step's
        # one-device check refuses the pair (a clear error, nothing written).
        return cuda.to_device(np.full(shape, fill, dtype=dtype or like.dtype))
    raise TypeError(f"sparseopt allocates state and outputs for torch, CuPy and Numba device "
                    f"arrays; got a {type(like).__name__}")


class Kernels:
    """The CUDA kernels behind the optimizer classes, called with _core's arguments:
    ``(param, indices, values, bags, *state, [exact mode's 4 arrays,] options, ...)``; the
    step count follows the options where the kernel takes one. num_threads and the half
    tables' rounding have no meaning there.

    Exact mode (Adam, AdamW, SGD, RMSprop): ``<name>_step`` goes to ``<name>_exact_step`` and
    ``<name>_flush`` to ``<name>_exact_flush``, with the state arrays exact mode uses (a
    tuple), exact mode's ``last_step`` (device), its record ``history``, ``window``,
    ``history_start`` (host NumPy, kept by the CPU's bookkeeping) and `record`, the device's
    copy of the record's per-step scalars (:func:`exact_record`)."""

    # name -> (state arrays, exact-mode arrays, whether the step count follows the options)
    _STEPS = {"sgd_step": (2, 4, True), "adam_step": (4, 4, True), "rmsprop_step": (3, 4, True),
              "adagrad_step": (1, 0, True), "rowwise_adagrad_step": (1, 0, False),
              "ftrl_step": (2, 0, False)}
    # optimizer -> the state arrays its exact mode uses (the first ones of the lazy binding's)
    _EXACT = {"adam": 3, "sgd": 1, "rmsprop": 3}

    def __init__(self, param: Any, record: Any = None):
        self._cuda = module()
        self._stream = stream(param)
        self._record = record

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_flush") and name[:-6] in self._EXACT:
            return self._flusher(name[:-6])
        if name not in self._STEPS:
            raise AttributeError(name)
        states, exact, counted = self._STEPS[name]
        kernel = getattr(self._cuda, name)
        optimizer = name[:-5]

        def step(param: Any, indices: Any, values: Any, bags: Any, *rest: Any) -> None:
            at = states + exact  # where the options are
            if optimizer in self._EXACT and rest[at].mode == _exact_mode():
                used = tuple(map(plain, rest[:self._EXACT[optimizer]]))
                getattr(self._cuda, f"{optimizer}_exact_step")(
                    *map(plain, (param, indices, values)), bags, used, *map(plain, rest[states:at]),
                    plain(self._record), *rest[at:at + 2], self._stream)
                return
            kernel(*map(plain, (param, indices, values)), bags, *map(plain, rest[:states]),
                   *rest[at:at + 2 if counted else at + 1], self._stream)

        return step

    def _flusher(self, optimizer: str) -> Any:
        used = self._EXACT[optimizer]

        def flush(param: Any, indices: Any, *rest: Any) -> None:
            # _core's order: the state arrays, exact mode's 4, options, step, (threads, rounding)
            require_same_place("param", True, indices=indices)
            at = used + 4
            getattr(self._cuda, f"{optimizer}_exact_flush")(
                plain(param), plain(indices), tuple(map(plain, rest[:used])), plain(rest[used]),
                *rest[used + 1:at], plain(self._record), rest[at], rest[at + 1], self._stream)

        return flush


def _exact_mode() -> Any:
    from . import _core

    return _core.Mode.exact


def exact_record(param: Any, history: np.ndarray | None = None) -> Any:
    """The device's copy of an exact-mode record's per-step scalars (lr, L, c, q per step of
    the bounded record: ``_cuda.device_record_rows()`` rows of 4 float64) on `param`'s device:
    zeros as a new record's, or the first 4 columns of `history` (the host record's rows so
    far, after a load)."""
    record = full(param, (int(module().device_record_rows()), 4), np.float64, 0.0)
    if history is not None:
        rows = np.zeros(tuple(record.shape), np.float64)
        columns = min(4, history.shape[1])
        rows[:history.shape[0], :columns] = history[:, :columns]
        copy_in(record, rows)
    return record


def host_like(a: Any) -> np.ndarray:
    """A NumPy array with the shape and dtype of device array `a`, for the checks of a
    snapshot (strides of 0: no memory of the table's size)."""
    dtype = str(a.dtype).replace("torch.", "") if _library(a) == "torch" else a.dtype
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.dtype(dtype)), tuple(a.shape),
                                           (0,) * len(a.shape))


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of device array `a`, after the work queued on its stream."""
    lib = _library(a)
    if lib == "torch":
        return a.detach().cpu().numpy().copy()
    if lib == "cupy":
        return a.get()
    if lib == "numba":
        return a.copy_to_host()
    raise TypeError(f"sparseopt copies the state of torch, CuPy and Numba device arrays; got a "
                    f"{type(a).__name__}")


def copy_in(a: Any, values: np.ndarray) -> None:
    """Copies NumPy `values` (a's shape and dtype, checked by the caller) into device array `a`."""
    values = np.ascontiguousarray(values)
    lib = _library(a)
    if lib == "torch":
        import torch

        a.detach().copy_(torch.from_numpy(values))
    elif lib == "cupy":
        a.set(values)
    elif lib == "numba":
        a.copy_to_device(values)
    else:
        raise TypeError(f"sparseopt copies state into torch, CuPy and Numba device arrays; got a "
                        f"{type(a).__name__}")


def ftrl_check_options(param: Any, options: Any) -> None:
    """FTRL's bounds in a device table's dtype (as every step checks them)."""
    module().ftrl_check_options(plain(param), options)


def rowwise_adagrad_check_options(param: Any, options: Any) -> None:
    """Row-wise Adagrad's eps and lr / eps in a device table's dtype (as every step checks them)."""
    module().rowwise_adagrad_check_options(plain(param), options)


def coalesce(indices: Any, values: Any, num_rows: int | None) -> tuple[Any, Any, Any]:
    cuda = module()
    require_same_place("values", True, indices=indices)
    n = int(indices.shape[0])
    capacity = n if num_rows is None else min(n, num_rows)
    unique = full(values, (capacity,), indices.dtype, 0)
    summed = full(values, (capacity, *values.shape[1:]), None, 0.0)
    counts = full(values, (capacity,), np.int64, 0)
    u = cuda.coalesce(plain(indices), plain(values), -1 if num_rows is None else num_rows,
                      plain(unique), plain(summed), plain(counts), stream(values))
    return unique[:u], summed[:u], counts[:u]


def gather_sum(table: Any, indptr: Any, indices: Any, weights: Any, mean: bool, out: Any) -> Any:
    cuda = module()  # before allocating: without the CUDA build, the hint on how to get it
    require_same_place("table", True, indptr=indptr, indices=indices, weights=weights, out=out)
    if out is None:
        out = full(table, (int(indptr.shape[0]) - 1, *table.shape[1:]), None, 0.0)
    cuda.gather_sum(*map(plain, (table, indptr, indices, weights)), mean, plain(out),
                        stream(table))
    return out


def gather_sum_backward(grad_out: Any, indptr: Any, indices: Any, weights: Any, mean: bool,
                        num_rows: int) -> tuple[Any, Any]:
    cuda = module()
    require_same_place("grad_out", True, indptr=indptr, indices=indices, weights=weights)
    capacity = min(int(indices.shape[0]), num_rows)
    rows = full(grad_out, (capacity,), indices.dtype, 0)
    values = full(grad_out, (capacity, *grad_out.shape[1:]), None, 0.0)
    u = cuda.gather_sum_backward(*map(plain, (grad_out, indptr, indices, weights)), mean,
                                     num_rows, plain(rows), plain(values), stream(grad_out))
    return rows[:u], values[:u]


def topk(x: Any, k: int, largest: bool, magnitude: bool) -> tuple[Any, Any]:
    cuda = module()
    if len(x.shape) not in (1, 2) or not 1 <= k <= int(x.shape[-1]):
        raise ValueError(f"x must be 1-D or 2-D with k in [1, n] (n = the length of its last "
                         f"axis), got shape {tuple(x.shape)} and k = {k}")
    shape = (*x.shape[:-1], k)
    values, indices = full(x, shape, None, 0.0), full(x, shape, np.int64, 0)
    cuda.topk(plain(x), k, largest, magnitude, plain(values), plain(indices), stream(x))
    return values, indices
