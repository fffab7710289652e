"""Thin layer helpers that hold parameters and their sparse optimizers.

They keep examples short; they are not a framework. Forward passes are plain NumPy products;
the backward passes and the updates are sparseopt kernels.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import _args
from .meprop import linear_backward

__all__ = ["MePropLinear"]


class MePropLinear:
    """A linear layer ``y = x @ weight.T + bias`` trained with meProp.

    ``weight`` has shape ``(out_features, in_features)``; ``backward`` keeps the top-``k``
    output-gradient entries per example (see :func:`sparseopt.meprop.linear_backward`), so the
    weight gradient touches only the selected units' rows, and ``step`` applies the optimizer to
    those rows alone (``optimizer(weight).step(rows, values)``). The bias gets the full
    (unmasked) gradient, as in the meProp reference code, and is stepped on every unit.

    With an exact-mode optimizer (``mode="exact"``, e.g. ``Adam(w, mode="exact")``) the weight
    follows the dense optimizer fed the masked gradient -- what the reference code does with
    ``torch.optim.Adam`` -- at the cost of the touched rows per step: ``forward`` reads every
    row, so it first brings the rows that the last steps skipped up to date (``flush()``).

    Parameters
    ----------
    in_features, out_features, k : int
    optimizer : callable
        ``optimizer(array) -> sparseopt optimizer`` for the weight and for the bias, e.g.
        ``lambda p: sparseopt.optim.Adam(p, lr=1e-3)``.
    unified : bool
        One shared set of k units per batch (see ``linear_backward``).
    dtype : float32 or float64
    seed : int or numpy Generator
        Initialisation as ``torch.nn.Linear``: uniform in ``+-1/sqrt(in_features)``.
    num_threads : int
        Threads for the backward kernel (0 = all).

    Use :meth:`from_arrays` to wrap existing weight and bias arrays (used in place).
    """

    def __init__(self, in_features: int, out_features: int, k: int, *,
                 optimizer: Callable, unified: bool = False, dtype=np.float32, seed=None,
                 num_threads: int = 0):
        in_features = _args.count("in_features", in_features, minimum=1)
        out_features = _args.count("out_features", out_features, minimum=1)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        weight = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        bias = rng.uniform(-bound, bound, out_features).astype(dtype)
        self._init(weight, bias, k, optimizer, unified, num_threads)

    @classmethod
    def from_arrays(cls, weight: np.ndarray, bias: np.ndarray, k: int, *, optimizer: Callable,
                    unified: bool = False, num_threads: int = 0) -> "MePropLinear":
        """A layer over existing ``weight (out, in)`` and ``bias (out,)`` arrays (not copied)."""
        self = cls.__new__(cls)
        self._init(weight, bias, k, optimizer, unified, num_threads)
        return self

    def _init(self, weight, bias, k, optimizer, unified, num_threads):
        if not isinstance(weight, np.ndarray) or weight.ndim != 2:
            raise ValueError("weight must be a 2-D ndarray of shape (out_features, in_features)")
        if not isinstance(bias, np.ndarray) or bias.shape != weight.shape[:1] \
                or bias.dtype != weight.dtype:
            raise ValueError(f"bias must be an ndarray of shape {weight.shape[:1]} and dtype "
                             f"{weight.dtype}")
        self.k = _args.count("k", k, minimum=1)
        if self.k > weight.shape[0]:
            raise ValueError(f"k must be <= out_features = {weight.shape[0]}, got {self.k}")
        self.weight, self.bias = weight, bias
        self.unified = bool(unified)
        self.num_threads = _args.threads("num_threads", num_threads)
        self.opt_weight, self.opt_bias = optimizer(weight), optimizer(bias)
        self._all_units = np.arange(weight.shape[0], dtype=np.int64)
        self._x = self._grads = None

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ weight.T + bias`` (NumPy); remembers ``x`` for ``backward``. An exact-mode
        weight optimizer is flushed first, so the product sees the dense optimizer's weight."""
        if self.opt_weight.exact:
            self.opt_weight.flush()
        self._x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad_out: np.ndarray, need_grad_x: bool = True) -> np.ndarray | None:
        """meProp backward of the last ``forward``; returns ``grad_x`` (None if not needed) and
        keeps the weight and bias gradients for :meth:`step`."""
        if self._x is None:
            raise RuntimeError("backward() needs a forward() first")
        self._grads = linear_backward(self._x, self.weight, grad_out, self.k,
                                      unified=self.unified, need_grad_x=need_grad_x,
                                      num_threads=self.num_threads)
        return self._grads.grad_x

    @property
    def grads(self):
        """The last backward's :class:`sparseopt.meprop.LinearGrads` (None before one)."""
        return self._grads

    def step(self) -> None:
        """Apply the optimizers: the weight on the selected rows, the bias on every unit."""
        if self._grads is None:
            raise RuntimeError("step() needs a backward() first")
        rows, values = self._grads.weight
        self.opt_weight.step(rows, values)
        self.opt_bias.step(self._all_units, self._grads.bias)
        self._grads = None
