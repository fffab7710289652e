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


def count(name: str, value: object, minimum: int = 0) -> int:
    """`value` as an int >= minimum (TypeError for non-integers, ValueError for the range)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else ValueError listing them."""
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value
