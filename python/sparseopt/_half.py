"""Half-precision tables: which dtypes count, and the options of an optimizer over one.

``np.float16`` needs nothing; bfloat16 is ``ml_dtypes.bfloat16`` (extra ``sparseopt[bf16]``),
imported only when a bfloat16 dtype is asked for by name. A table's dtype is recognised without
importing ml_dtypes: an array that already has a bfloat16 dtype came from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _args

ROUNDINGS = ("stochastic", "nearest")
STATE_DTYPES = ("float32", "float16", "bfloat16")
# Hyper-parameters an optimizer over a half table has on top of its own.
KEYS = ("rounding", "seed", "state_dtype")


def kind(array: object) -> str | None:
    """``"float16"`` or ``"bfloat16"`` for an ndarray of that dtype, else None."""
    if not isinstance(array, np.ndarray) or array.dtype.itemsize != 2:
        return None
    if array.dtype == np.float16:
        return "float16"
    return "bfloat16" if array.dtype.name == "bfloat16" else None


def dtype(name: str) -> np.dtype:
    """The NumPy dtype called `name` (one of STATE_DTYPES)."""
    if name != "bfloat16":
        return np.dtype(name)
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("bfloat16 needs the ml_dtypes package: pip install 'sparseopt[bf16]' "
                          "(or pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def check_table(param: np.ndarray) -> None:
    """Raises unless `param` (a half ndarray) can be updated in place."""
    if not param.flags.c_contiguous or not param.flags.aligned:
        raise TypeError("param must be C-contiguous and aligned: sparseopt updates it in place "
                        "and never copies silently; allocate it so (np.ascontiguousarray once, "
                        "then keep using the array it returns)")
    if not param.flags.writeable:
        raise TypeError("param is read-only; the optimizer updates it in place, pass a "
                        "writeable array")
    if param.ndim < 1:
        raise ValueError("param must have at least one dimension (num_rows, *row_shape), got "
                         "a 0-d array")


def _state_dtype_name(value: object) -> str:
    if isinstance(value, str):
        name = value
    else:
        try:
            name = np.dtype(value).name  # type: ignore[arg-type]
        except TypeError:
            name = repr(value)
    if name not in STATE_DTYPES:
        options = ", ".join(repr(s) for s in STATE_DTYPES)
        raise ValueError(f"state_dtype must be one of {options} (or the dtype), got {value!r}")
    return name


def hyperparams(rounding: object, seed: object, state_dtype: object) -> dict[str, Any]:
    """The half-table hyper-parameters, defaults filled in (checked by `check`)."""
    return {"rounding": "stochastic" if rounding is None else rounding, "seed": seed,
            "state_dtype": "float32" if state_dtype is None else state_dtype}


def check(h: dict[str, Any]) -> None:
    """Checks and normalises the half-table hyper-parameters in `h` in place."""
    h["rounding"] = _args.choice("rounding", h["rounding"], ROUNDINGS)
    h["seed"] = _args.count("seed", h["seed"], maximum=_args.UINT64_MAX)
    h["state_dtype"] = _state_dtype_name(h["state_dtype"])
    dtype(h["state_dtype"])  # bfloat16 state needs ml_dtypes


def check_ignored(table_dtype: np.dtype, rounding: object, seed: object, state_dtype: object) -> None:
    """A float32/float64 table ignores rounding and seed (its steps do not round to half), but
    a misspelt value is still an error; its state always has the table's dtype."""
    if rounding is not None:
        _args.choice("rounding", rounding, ROUNDINGS)
    _args.count("seed", seed, maximum=_args.UINT64_MAX)
    if state_dtype is not None and _state_dtype_name(state_dtype) != table_dtype.name:
        raise ValueError(f"state_dtype={state_dtype!r} needs a float16 or bfloat16 table; a "
                         f"{table_dtype} table keeps its state in {table_dtype}")


def round_to(values: np.ndarray, out: np.ndarray, rounding: str = "nearest", seed: int = 0) -> np.ndarray:
    """``out`` (a float16/bfloat16 array of values' shape) = ``values`` (float32) rounded;
    stochastic rounding draws element ``(r, c)``'s bits from ``(seed, r, c)``. Returns ``out``."""
    from . import _core

    _core.round_to_half(values, out, _args.choice("rounding", rounding, ROUNDINGS),
                        _args.count("seed", seed, maximum=_args.UINT64_MAX), 0)
    return out
