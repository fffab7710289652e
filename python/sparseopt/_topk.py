"""sparseopt.topk: the k best elements along the last axis (the kernel is cpp/include/sparseopt/topk.hpp)."""

from __future__ import annotations

import operator

import numpy as np

from . import _args, _core, _device

_INT64_MAX = 2**63 - 1


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _k(k: object, x: object) -> int:
    if isinstance(k, (bool, np.bool_)):
        raise TypeError(f"k must be an integer, got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, got {k!r}") from None
    if not -_INT64_MAX <= k <= _INT64_MAX:  # the core names n; it cannot take such a k
        shape = getattr(x, "shape", None)
        n = f" where n = {shape[-1]} is the length of the last axis" if shape else ""
        raise ValueError(f"k must be in [1, n]{n}, got k = {k}")
    return k


def topk(x: np.ndarray, k: int, *, largest: bool = True, magnitude: bool = False,
         sorted: bool = True, num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (or smallest) elements along the last axis, and their positions.

    Like ``torch.topk(x, k, dim=-1)``, with a fixed rule for ties and a selection by
    magnitude. ``x`` is read in place, never copied.

    Parameters
    ----------
    x : ndarray of float32, float64, float16 or bfloat16, shape (n,) or (rows, n)
        C-contiguous (a view that is not is a TypeError: pass ``np.ascontiguousarray(x)``).
        It may be read-only. A 2-D array with 0 rows is fine. A float16/bfloat16 row is
        ranked by its values widened to float32 (exact), one row per thread.
    k : int
        How many elements per row, ``1 <= k <= n`` (ValueError otherwise).
    largest : bool
        The k largest (default) or, with False, the k smallest.
    magnitude : bool
        Rank by ``|x|`` instead of ``x`` (as meProp does); the returned values keep their sign.
    sorted : bool
        True (default): best first, that is descending for ``largest=True`` and ascending
        for ``largest=False``, ties by ascending index. False: the same k elements in the
        array order of the bounded heap that selected them (worst-ranked first). That order
        is deterministic -- the same for the same row, k and options whatever
        ``num_threads`` is -- but otherwise unspecified; rows of 65,536 elements or more are
        returned sorted even then.
    num_threads : int
        Threads for the rows (0 = all available; a long row with few rows is split between
        them). The result is bit for bit the same for every value.

    A device array ``x`` (a CUDA torch tensor, CuPy; sparseopt built with CUDA) is ranked on
    its device, a warp per row, with the same ranking: the result equals the sorted output
    here, bit for bit, and is sorted whatever ``sorted`` says; ``num_threads`` is ignored.

    Returns
    -------
    values : ndarray, dtype of ``x``, shape (k,) or (rows, k)
        The selected elements themselves (a ``-0.0`` stays ``-0.0``, a NaN keeps its bits).
    indices : ndarray of int64, same shape
        Their positions along the last axis: ``values == np.take_along_axis(x, indices, -1)``.

    Notes
    -----
    The ranking is a total order, so the selected set never depends on the algorithm or the
    thread count:

    - **Ties**: of two elements with equal keys the one with the lower index ranks ahead (it
      is selected first and comes first in sorted output). torch.topk leaves ties unordered.
    - **NaN** ranks above every number, as in torch.topk: NaNs are selected first with
      ``largest=True`` and last with ``largest=False`` (only when fewer than k numbers are
      left). With ``magnitude=True``, ``|NaN|`` is NaN. All NaNs tie with each other.
    - **-0.0 and 0.0** are equal (IEEE comparison, as torch), so their index decides.
    - ``inf`` and ``-inf`` are ordinary extreme values.

    Each row costs one pass over its elements with vectorised compares against the current
    k-th best, plus O(log k) for each element that improves the selection: O(n log k) time at
    worst, O(k) memory per row. The C++ core offers the same as ``sparseopt::topk_rows`` and,
    for one row inside a caller's own parallel loop, ``sparseopt::topk_row``
    (``<sparseopt/topk.hpp>``).

    Examples
    --------
    >>> x = np.array([[3.0, -7.0, 1.0, 7.0], [0.5, 2.0, 2.0, -1.0]], dtype=np.float32)
    >>> values, indices = topk(x, 2)
    >>> values.tolist(), indices.tolist()
    ([[7.0, 3.0], [2.0, 2.0]], [[3, 0], [1, 2]])
    >>> topk(x, 2, magnitude=True)[1].tolist()
    [[1, 3], [1, 2]]
    """
    k = _k(k, x)
    largest = _flag("largest", largest)
    magnitude = _flag("magnitude", magnitude)
    sorted = _flag("sorted", sorted)
    threads = _args.threads("num_threads", num_threads)
    if _device.is_device(x):  # the CUDA kernel: always sorted (see sparseopt._device)
        return _device.topk(x, k, largest, magnitude)
    return _core.topk(x, k, largest, magnitude, sorted, threads)
