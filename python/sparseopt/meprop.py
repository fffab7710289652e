"""meProp: sparsified backpropagation through linear layers (Sun et al., ICML 2017).

For ``y = x @ weight.T + bias`` with ``weight`` of shape ``(out, in)`` (PyTorch's layout), meProp
keeps, for every example, only the ``k`` entries of the output gradient with the largest
magnitude, and back-propagates those alone. The weight gradient is then row-sparse over output
units, ``(rows, values)``, ready for a sparse optimizer step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _args, _core

__all__ = ["LinearGrads", "linear_backward"]


class LinearGrads(NamedTuple):
    """What :func:`linear_backward` returns.

    ``grad_x``: ``(batch, in)``, or None when not asked for; ``weight``: the row-sparse weight
    gradient ``(rows, values)``, rows ascending unique (int64), values ``(len(rows), in)``;
    ``bias``: ``(out,)``.
    """

    grad_x: np.ndarray | None
    weight: tuple[np.ndarray, np.ndarray]
    bias: np.ndarray


def linear_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, k: int, *,
                    unified: bool = False, need_grad_x: bool = True,
                    num_threads: int = 0) -> LinearGrads:
    """Backward of ``y = x @ weight.T + bias`` with meProp's top-k sparsified output gradient.

    Parameters
    ----------
    x : ndarray, shape (batch, in)
        The layer's input from the forward pass.
    weight : ndarray, shape (out, in)
        The layer's weight (PyTorch's layout: one row per output unit).
    grad_out : ndarray, shape (batch, out)
        Gradient of the loss with respect to ``y``. Read only.
    k : int
        Units kept per example, ``1 <= k <= out``.
    unified : bool
        False (default): each example keeps its own top-k ``|grad_out[b]|`` units.
        True: one shared set of ``k`` units for the whole batch, the top-k of
        ``sum_b |grad_out[b]|`` (the reference code's "unified" batch mode).
    need_grad_x : bool
        False skips ``grad_x`` (a network's first layer); it is then None.
    num_threads : int
        Threads (0 = all available). Results do not depend on it.

    All arrays must be C-contiguous and share one dtype, float32 or float64.

    Returns
    -------
    LinearGrads(grad_x, (rows, values), bias)
        With ``mask`` the top-k selection of ``grad_out`` (ties: the lower unit first; NaN
        counts as the largest magnitude, so it is always kept and seen) and
        ``g = grad_out * mask``: ``grad_x = g @ weight``; the weight gradient ``g.T @ x``
        restricted to its rows that can be non-zero, the units selected for at least one
        example (``rows``); ``bias = grad_out.sum(0)``, the *unmasked* column sums, as in the
        reference implementation, where the bias sits outside the sparsified product.
        Sums run in a fixed order, so the bits do not depend on ``num_threads``.
    """
    k = _args.count("k", k, minimum=1, maximum=_args.INT64_MAX)
    gx, rows, values, gb = _core.meprop_linear_backward(
        x, weight, grad_out, k, bool(unified), bool(need_grad_x),
        _args.threads("num_threads", num_threads))
    return LinearGrads(gx, (rows, values), gb)
