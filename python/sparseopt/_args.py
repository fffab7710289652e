"""Conversion of Python scalars (hyper-parameters, counts) before they reach the core.

The core checks ranges (lr >= 0, betas in [0, 1), ...) in C++ so that C++ users get the same
rules; this module only turns Python objects into numbers and says clearly when it cannot.
"""

from __future__ import annotations

import operator

import numpy as np


def real(name: str, value: object) -> float:
    """`value` as a float; ValueError naming `name` when it is not one real number."""
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if arr.size != 1:
        raise ValueError(f"{name} must be a single real number, got an array of shape {arr.shape}")
    return float(arr.reshape(()))


INT64_MAX = 2**63 - 1


UINT64_MAX = 2**64 - 1


def count(name: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum] (TypeError for non-integers, ValueError for the
    range; pass INT64_MAX or UINT64_MAX where the core takes a 64-bit integer)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {n}")
    return n


# The most threads one call may ask for (the core's sparseopt::max_num_threads): OpenMP cannot
# report a team it fails to start, so larger counts are refused before they reach it.
MAX_NUM_THREADS = 1024


def threads(name: str, value: object) -> int:
    """`value` as a thread count in [0, MAX_NUM_THREADS] (0 = all available)."""
    n = count(name, value, maximum=INT64_MAX)
    if n > MAX_NUM_THREADS:
        raise ValueError(f"{name} must be in [0, {MAX_NUM_THREADS}] (0 means all available "
                         f"threads), got {n}")
    return n


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else ValueError listing them."""
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value
