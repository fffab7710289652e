"""sparseopt: fast, correct training with sparse gradients.

Row-sparse gradients ``(indices, values)`` are applied to parameter tables (NumPy arrays,
updated in place) by optimizers that follow ``torch.optim``'s formulas; the kernels are a
header-only C++17/OpenMP core, usable from C++ too (see :func:`get_cmake_dir`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _args, _core, _device, distributed, hogwild, meprop, nn, optim, sampled
from ._alloc import zeros
from .checkpoint import load, save
from ._topk import topk
from .clip import clip_grad_norm, grad_norm
from .gather import csr_matmul, csr_matmul_backward, gather_sum, gather_sum_backward

__version__: str = _core.__version__

__all__ = ["__version__", "info", "coalesce", "grad_norm", "clip_grad_norm", "topk", "gather_sum", "gather_sum_backward",
           "csr_matmul", "csr_matmul_backward", "meprop", "nn", "optim", "hogwild", "sampled",
           "distributed", "save", "load", "zeros", "get_include", "get_cmake_dir"]


def info() -> dict:
    """Build facts: ``version``, ``openmp`` (bool), ``max_threads`` (int), ``compiler``,
    ``cuda``: whether the CUDA kernels were built (``pip install . -C
    cmake.define.SPARSEOPT_CUDA=ON``), ``cuda_devices``: how many CUDA devices this process sees
    now (0 without the kernels, a driver or a device; never an error),
    ``simd``: the compiled copy of the hot loops in use, ``"avx2"`` (chosen at run time on CPUs
    that have it; the build itself needs no -march flag) or ``"generic"``;
    ``table_dtypes``: the parameter dtypes of ``sparseopt.optim``'s SGD, Adam and AdamW (the
    other optimizers take float32 and float64), ``"bfloat16"`` listed only when ml_dtypes,
    which provides it, is installed (``pip install "sparseopt[bf16]"``)."""
    import importlib.util

    info = dict(_core.build_info())
    info["cuda"] = _device.built()
    info["cuda_devices"] = _device.device_count()
    bf16 = importlib.util.find_spec("ml_dtypes") is not None
    info["table_dtypes"] = ["float32", "float64", "float16"] + (["bfloat16"] if bf16 else [])
    return info


def coalesce(indices: np.ndarray, values: np.ndarray, num_rows: int | None = None, *,
             num_threads: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the values of repeated indices of a row-sparse gradient.

    Parameters
    ----------
    indices : ndarray of int32 or int64, shape (n,)
    values : ndarray of float32 or float64, shape (n, *row_shape)
    num_rows : int, optional
        When given, every index must be in ``[0, num_rows)`` (IndexError otherwise).
    num_threads : int
        Threads for summing rows (0 = all available). Results do not depend on it.

    Returns
    -------
    (unique_indices, summed_values, counts):
        ``unique_indices`` ascending, with the dtype of ``indices``; ``summed_values`` of shape
        ``(len(unique_indices), *row_shape)``, repeats added in the order they appear;
        ``counts`` (int64) how often each index appeared.

    Device arrays (a CUDA build, see :func:`info`) are coalesced on their device, with the
    same order of additions (so the same bits); the results are arrays of the same library.
    """
    if num_rows is not None:
        num_rows = _args.count("num_rows", num_rows, maximum=_args.INT64_MAX)
    threads = _args.threads("num_threads", num_threads)
    if _device.is_device(values):  # the CUDA kernel (see sparseopt._device)
        return _device.coalesce(indices, values, num_rows)
    _device.require_same_place("values", False, indices=indices)
    return _core.coalesce(indices, values, num_rows, threads)


def get_include() -> str:
    """Directory holding the C++ headers (``#include <sparseopt/sparseopt.hpp>``)."""
    return str(Path(__file__).resolve().parent / "include")


def get_cmake_dir() -> str:
    """Directory holding ``sparseoptConfig.cmake``: pass it as ``-Dsparseopt_DIR=...``."""
    return str(Path(__file__).resolve().parent / "share" / "cmake" / "sparseopt")
