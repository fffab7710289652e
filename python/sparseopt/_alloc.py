"""Tables allocated where row kernels read them fastest."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

# Large tables start on a 2 MiB boundary (where Linux backs memory with huge pages: fewer TLB
# misses for scattered rows), smaller ones on a 64-byte cache line.
_HUGE_PAGE = 2 << 20
_CACHE_LINE = 64


def zeros(shape: Any, dtype: Any = np.float32) -> np.ndarray:
    """A zero-filled, C-contiguous array whose data start on a cache-line boundary (a 2 MiB
    boundary from 2 MiB up): ``np.zeros(shape, dtype)`` for tables that sparseopt's kernels
    read and write row by row.

    A large ``np.zeros`` array starts 16 bytes past a page boundary (the allocator's header),
    so each 256-byte row of a float32 table of width 64 spans five cache lines instead of four:
    every scattered row access moves 25% more memory. On a 1,000,000 x 64 float32 table that
    made ``gather_sum`` and the optimizer steps about 20-30% slower on the development machine
    (``bench/README.md``). The returned array is an ordinary NumPy array (a view of a slightly
    larger buffer, which it keeps alive): pass it to the optimizers, pickle it, slice it.
    torch tensors are already 64-byte aligned.
    """
    dtype = np.dtype(dtype)
    if isinstance(shape, (tuple, list)):
        dims = tuple(shape)
    else:
        dims = (shape,)
    try:
        dims = tuple(operator.index(d) for d in dims)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not have negative dimensions, got {dims}")
    nbytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    align = _HUGE_PAGE if nbytes >= _HUGE_PAGE else _CACHE_LINE
    buffer = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-buffer.ctypes.data) % align
    return buffer[start:start + nbytes].view(dtype).reshape(dims)
