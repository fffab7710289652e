"""Sparse x dense: sums of table rows picked by bags (EmbeddingBag), CSR @ dense, and their
row-sparse gradients.

A *bag* is a run of indices in CSR form: bag ``b`` is ``indices[indptr[b]:indptr[b + 1]]``
(``indptr`` holds ``num_bags + 1`` offsets, ``indptr[0] == 0``, non-decreasing,
``indptr[-1] == len(indices)``), optionally with one weight per index. ``indptr`` and
``indices`` share one dtype, int32 or int64, as torch's offsets and SciPy's ``indptr`` do.

* :func:`gather_sum` -- ``out[b]`` = the (weighted) sum, or the mean, of the table rows of bag
  ``b``: ``torch.nn.functional.embedding_bag(indices, table, indptr, mode=...,
  per_sample_weights=weights, include_last_offset=True)``.
* :func:`gather_sum_backward` -- the gradient of the table for that sum as a coalesced
  row-sparse gradient ``(rows, values)``, ready for ``opt.step(rows, values)``.
* :func:`csr_matmul` / :func:`csr_matmul_backward` -- the same for ``x @ table`` with a SciPy
  CSR matrix or ``csr_array`` ``x`` (its ``data`` are the weights), used without copies.

Every output row is summed by one thread in the order its terms appear, so results are the
same bits for any ``num_threads``. Arguments are checked before anything is written; arrays
are taken as they are (never converted or copied), so a wrong dtype or a non-contiguous array
is a TypeError saying what to pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _args, _core, _device

__all__ = ["gather_sum", "gather_sum_backward", "csr_matmul", "csr_matmul_backward"]

_MODES = ("sum", "mean")


def gather_sum(table: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
               weights: np.ndarray | None = None, *, mode: str = "sum", num_threads: int = 0,
               out: np.ndarray | None = None) -> np.ndarray:
    """Sum (or average) the table rows of every bag: EmbeddingBag, or CSR @ dense.

    Note for PyTorch users: the default here is ``mode="sum"``, while
    ``torch.nn.functional.embedding_bag`` and ``torch.nn.EmbeddingBag`` default to
    ``mode="mean"``. Pass ``mode="mean"`` for torch's default.

    Parameters
    ----------
    table : ndarray of float32, float64, float16 or bfloat16, shape (num_rows, *row_shape)
        A float16 or bfloat16 table (see :class:`sparseopt.optim.Adam`) is read in place and
        summed in float32: ``weights`` and ``out`` are then float32, and the result is bit for
        bit that of the table widened to float32 (no copy of it is made). Its gradient is
        float32 too: :func:`gather_sum_backward` of a float32 ``grad_out`` gives the rows'
        gradients a half table's optimizer takes.
    indptr : ndarray of int32 or int64, shape (num_bags + 1,)
        Bag ``b`` is ``indices[indptr[b]:indptr[b + 1]]``; ``indptr[0] == 0``, non-decreasing,
        ``indptr[-1] == len(indices)``. Same dtype as ``indices``.
    indices : ndarray of int32 or int64, shape (n,)
        Rows of ``table``, each in ``[0, num_rows)`` (IndexError naming the first bad one).
        Repeats, within a bag or across bags, are fine.
    weights : ndarray of table.dtype, shape (n,), optional
        One weight per index (torch's ``per_sample_weights``); only with ``mode="sum"``.
    mode : "sum" (default) or "mean"
        ``"sum"`` is the default (torch's ``embedding_bag`` defaults to ``"mean"``).
        ``"mean"`` divides each bag's sum by its length (as torch does; empty bags give
        zeros). Weights with ``"mean"`` are refused (ValueError), as torch refuses them:
        pass ``weights / bag_length`` with ``mode="sum"`` for a weighted mean.
    num_threads : int
        Threads (0 = all available); the result does not depend on it.
    out : ndarray, optional
        Where to write: shape ``(num_bags, *row_shape)``, ``table.dtype``, C-contiguous,
        not overlapping the inputs. Left unchanged when the call is rejected.

    A device ``table`` (a CUDA torch tensor, CuPy or Numba array; sparseopt built with
    ``SPARSEOPT_CUDA=ON``) is summed on its device, a warp per bag, with the same order of
    additions (so the same bits); every other array must then be on that device too.

    Returns
    -------
    ndarray of shape (num_bags, *row_shape): ``out`` when given. Bag ``b``'s row is the first
    term, then each next term added in order (``weights[p] * table[indices[p]]``).
    """
    mode = _args.choice("mode", mode, _MODES)
    threads = _args.threads("num_threads", num_threads)
    if _device.is_device(table):  # the CUDA kernel (see sparseopt._device)
        return _device.gather_sum(table, indptr, indices, weights, mode == "mean", out)
    _device.require_same_place("table", False, indptr=indptr, indices=indices, weights=weights,
                               out=out)
    return _core.gather_sum(table, indptr, indices, weights, mode == "mean", out, threads)


def gather_sum_backward(grad_out: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                        weights: np.ndarray | None = None, *, mode: str = "sum", num_rows: int,
                        num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of the table for :func:`gather_sum`, coalesced: ``(rows, values)``.

    ``values[u] = sum over positions p with indices[p] == rows[u] of
    weights[p] * grad_out[bag of p]`` (``mode="mean"``: ``grad_out[bag of p] / len(bag)``),
    the terms added in the order they appear in ``indices`` -- the same bits as
    ``sparseopt.coalesce`` of the per-index terms, computed without forming them.

    Parameters
    ----------
    grad_out : ndarray of float32 or float64, shape (num_bags, *row_shape)
    indptr, indices, weights, mode :
        As for :func:`gather_sum`; ``weights`` has ``grad_out``'s dtype.
    num_rows : int
        Rows of the table; every index must be in ``[0, num_rows)``.
    num_threads : int
        Threads (0 = all available); the result does not depend on it.

    A device ``grad_out`` runs on its device as :func:`gather_sum` does, and gives arrays
    of its library.

    Returns
    -------
    (rows, values):
        ``rows`` the touched rows, ascending and unique, with the dtype of ``indices``;
        ``values`` of shape ``(len(rows), *row_shape)``. Pass them to ``opt.step(rows, values)``.
    """
    mode = _args.choice("mode", mode, _MODES)
    num_rows = _args.count("num_rows", num_rows, maximum=_args.INT64_MAX)
    threads = _args.threads("num_threads", num_threads)
    if _device.is_device(grad_out):  # the CUDA kernel (see sparseopt._device)
        return _device.gather_sum_backward(grad_out, indptr, indices, weights, mode == "mean",
                                           num_rows)
    _device.require_same_place("grad_out", False, indptr=indptr, indices=indices, weights=weights)
    return _core.gather_sum_backward(grad_out, indptr, indices, weights, mode == "mean",
                                     num_rows, threads)


def _csr_parts(x: Any) -> tuple[list[int], Any, Any, Any]:
    """(shape, indptr, indices, data) of a SciPy CSR matrix/array, read from its attributes
    (SciPy is never imported); TypeError for anything else."""
    fmt = getattr(x, "format", None)
    if fmt != "csr" or not all(hasattr(x, a) for a in ("indptr", "indices", "data", "shape")):
        what = f"a {fmt!r} sparse matrix" if isinstance(fmt, str) else type(x).__name__
        raise TypeError(f"x must be a SciPy CSR matrix or csr_array, got {what}; "
                        f"pass scipy.sparse.csr_array(x) (or x.tocsr())")
    shape = [int(d) for d in x.shape]
    if len(shape) != 2:
        raise ValueError(f"x must be 2-D (num_bags, num_rows), got shape {tuple(shape)}")
    return shape, x.indptr, x.indices, x.data


def csr_matmul(x: Any, table: np.ndarray, *, num_threads: int = 0,
               out: np.ndarray | None = None) -> np.ndarray:
    """``x @ table`` for a SciPy CSR matrix or ``csr_array`` ``x`` of shape (num_bags, num_rows).

    ``x.data``, ``x.indptr`` and ``x.indices`` are used in place (no copies): ``x.data`` must
    have ``table``'s dtype (else TypeError: pass ``x.astype(table.dtype)``), the index arrays
    one dtype, int32 or int64. Repeated or unsorted column indices within a row are summed, as
    SciPy does. ``table`` has shape ``(num_rows, *row_shape)``; the result
    ``(num_bags, *row_shape)`` (``out`` when given, see :func:`gather_sum`).
    """
    shape, indptr, indices, data = _csr_parts(x)
    return _core.csr_matmul(table, shape[0], shape[1], indptr, indices, data, out,
                            _args.threads("num_threads", num_threads))


def csr_matmul_backward(x: Any, grad_out: np.ndarray, *,
                        num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of ``table`` for ``out = x @ table``, coalesced: ``(rows, values)``.

    ``rows`` are the columns of ``x`` that hold entries (ascending, unique, the dtype of
    ``x.indices``) and ``values`` the matching rows of ``x.T @ grad_out``, shape
    ``(len(rows), *row_shape)`` -- the row-sparse gradient for ``opt.step(rows, values)``.
    ``grad_out`` has shape ``(x.shape[0], *row_shape)`` and the dtype of ``x.data``.
    """
    shape, indptr, indices, data = _csr_parts(x)
    return _core.csr_matmul_backward(grad_out, shape[0], shape[1], indptr, indices, data,
                                     _args.threads("num_threads", num_threads))
