"""Gradient norms and norm clipping over dense and row-sparse gradients.

A gradient is a dense ndarray or a row-sparse pair ``(indices, values)``. The norm of a
row-sparse gradient is that of its coalesced form: repeated rows are summed first (in the order
they appear, as :func:`sparseopt.coalesce` sums them), so ``(indices=[3, 3], values=[[1], [1]])``
has norm 2, not sqrt(2). The total over a list is the norm of the per-item norms, as in
``torch.nn.utils.clip_grad_norm_``. Sums are taken in float64 in a fixed order, so the result is
the same bits for any ``num_threads``.

Clipping scales every ``values`` array (and dense array) in place by one factor; because the
repeats of a row share that factor, scaling the uncoalesced values is the same as scaling the
coalesced gradient, and rows a gradient does not list stay as they are (zero).
"""

from __future__ import annotations

from typing import Iterable, Union

import numpy as np

from . import _args, _core

__all__ = ["grad_norm", "clip_grad_norm"]

Gradient = Union[np.ndarray, "tuple[np.ndarray, np.ndarray]"]


def _as_list(grads: Gradient | Iterable[Gradient]) -> list:
    """One gradient (an array, or an (indices, values) pair) or an iterable of them, as a list."""
    if isinstance(grads, np.ndarray):
        return [grads]
    if isinstance(grads, tuple) and len(grads) == 2 and all(isinstance(g, np.ndarray) for g in grads) \
            and grads[0].ndim == 1 and grads[0].dtype.kind in "iu":
        return [grads]
    return list(grads)


def _ord(ord: object) -> float:
    value = _args.real("ord", ord)
    if value != 2.0 and value != np.inf:
        raise ValueError(f"ord must be 2 or inf (np.inf), got {ord!r}")
    return value


def grad_norm(grads: Gradient | Iterable[Gradient], ord: float = 2, *, num_threads: int = 0) -> float:
    """Total norm of gradients, row-sparse ones coalesced first.

    Parameters
    ----------
    grads : ndarray, (indices, values), or a list of them
        Dense arrays (float32/float64, C-contiguous) and row-sparse pairs: ``indices`` int32 or
        int64 of shape (n,), each >= 0 (repeats allowed), ``values`` float32/float64 of shape
        (n, *row_shape). An empty list, or empty gradients, give 0.0.
    ord : 2 or inf
        Euclidean norm, or the largest magnitude of the coalesced gradient.
    num_threads : int
        Threads (0 = all available); the result does not depend on it.

    Returns
    -------
    float: ``sqrt(sum of squares)`` (ord 2) or ``max |g|`` (ord inf) over all items, NaN when an
    element is NaN. Equals ``torch.nn.utils.get_total_norm`` of the dense-equivalent gradients
    (torch sums float32 gradients in float32, sparseopt in float64: they agree to float32
    rounding).
    """
    return _core.grad_norm(_as_list(grads), _ord(ord), _args.count("num_threads", num_threads))


def clip_grad_norm(grads: Gradient | Iterable[Gradient], max_norm: float, ord: float = 2, *,
                   error_if_nonfinite: bool = False, num_threads: int = 0) -> float:
    """Scale gradients in place so that their total norm is at most ``max_norm``.

    Follows ``torch.nn.utils.clip_grad_norm_``: with ``total = grad_norm(grads, ord)``, every
    ``values`` array and dense array is multiplied (in its own dtype) by
    ``max_norm / (total + 1e-6)`` when that is below 1 (or NaN, as torch does for a NaN norm);
    otherwise nothing is written. Rows a row-sparse gradient does not list are untouched (they
    stay zero even when a NaN norm turns every listed value, and torch's dense zeros, to NaN).

    Parameters
    ----------
    grads : ndarray, (indices, values), or a list of them
        As for :func:`grad_norm`; the arrays to scale must be writeable. List each array once:
        an array listed twice is scaled twice.
    max_norm : float
        >= 0.
    ord : 2 or inf
    error_if_nonfinite : bool
        Raise ValueError (scaling nothing) when the total norm is NaN or infinite.
    num_threads : int
        Threads (0 = all available); results do not depend on it.

    Returns
    -------
    float: the total norm before clipping.

    Every argument and every gradient (dtype, layout, shape, indices >= 0) is checked before
    anything is scaled; a rejected call changes nothing.
    """
    max_norm = _args.real("max_norm", max_norm)
    return _core.clip_grad_norm(_as_list(grads), max_norm, _ord(ord), bool(error_if_nonfinite),
                                _args.count("num_threads", num_threads))
