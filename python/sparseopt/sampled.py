"""Sampled logistic losses over embedding tables, and the samplers that feed them.

Skip-gram with negative sampling (word2vec), item2vec, DeepWalk and contrastive training with
sampled negatives share one shape: a batch of ``n`` items, item ``b`` pairing the anchor row
``anchors[b]`` of ``anchor_table`` (A) with ``k`` candidate rows ``candidates[b, j]`` of
``candidate_table`` (B), each with a label ``y`` in [0, 1]::

    f = A[anchors[b]] . B[candidates[b, j]]
    loss = sum over (b, j) of  softplus(f) - y * f      # -y log s(f) - (1 - y) log(1 - s(f))

Without ``labels``, column 0 of ``candidates`` is the positive (``y = 1``) and the other columns
negatives (``y = 0``), the layout :meth:`NegativeSampler.draw` produces. A and B may be the same
array (tied embeddings).

Two ways to train:

* :func:`logistic_grad` returns the loss and both tables' gradients as coalesced row-sparse
  gradients ``(rows, values)``, ready for any optimizer's ``opt.step(rows, values)``
  (:mod:`sparseopt.optim`); deterministic for any ``num_threads``.
* :func:`logistic_sgd` is a fused, in-place SGD pass in word2vec's update order, for speed. It
  runs on the calling thread with the GIL released, so several Python threads can train the
  same tables at once, Hogwild-style (see its docstring for what that trades away).

Every function checks all its arguments before it writes anything; arrays are taken without
copies (wrong dtype or layout: ``TypeError`` saying what to pass), rows out of range are an
``IndexError``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _args, _core

__all__ = ["SampledGrad", "logistic_loss", "logistic_grad", "logistic_sgd", "NegativeSampler",
           "context_pairs"]

_SEED_LIMIT = 2**64


def _seed(seed: object) -> int:
    s = _args.count("seed", seed)
    if s >= _SEED_LIMIT:
        raise ValueError(f"seed must be < 2**64, got {s}")
    return s


class SampledGrad(NamedTuple):
    """The result of :func:`logistic_grad`."""

    loss: float
    anchor_rows: np.ndarray       #: unique rows of anchor_table, ascending (anchors' dtype)
    anchor_grad: np.ndarray       #: their summed gradients, (len(anchor_rows), *row_shape)
    candidate_rows: np.ndarray    #: unique rows of candidate_table, ascending
    candidate_grad: np.ndarray    #: their summed gradients


def logistic_loss(anchor_table: np.ndarray, candidate_table: np.ndarray, anchors: np.ndarray,
                  candidates: np.ndarray, labels: np.ndarray | None = None, *,
                  num_threads: int = 0) -> float:
    """The batch's loss (summed over all ``n * k`` terms) at the current parameters.

    Parameters
    ----------
    anchor_table, candidate_table : ndarray, float32 or float64, C-contiguous
        Shapes ``(rows_A, *row_shape)`` and ``(rows_B, *row_shape)``, the same dtype; read only.
    anchors : ndarray of int32 or int64, shape (n,)
        Rows of ``anchor_table``.
    candidates : ndarray, shape (n, k), the dtype of ``anchors``
        Rows of ``candidate_table``.
    labels : ndarray, shape (n, k), the tables' dtype, values in [0, 1]; optional
        Default: column 0 is 1, the other columns 0.
    num_threads : int
        Threads (0 = all); the result does not depend on it.
    """
    return _core.sampled_logistic_loss(anchor_table, candidate_table, anchors, candidates, labels,
                                       _args.threads("num_threads", num_threads))


def logistic_grad(anchor_table: np.ndarray, candidate_table: np.ndarray, anchors: np.ndarray,
                  candidates: np.ndarray, labels: np.ndarray | None = None, *,
                  num_threads: int = 0) -> SampledGrad:
    """The loss and both tables' gradients at the current parameters, coalesced.

    Arguments as :func:`logistic_loss`. With ``c = s(f) - y`` for each term::

        anchor_grad[r]    = sum over items b with anchors[b] == r, over j, of
                            c[b, j] * candidate_table[candidates[b, j]]
        candidate_grad[r] = sum over terms with candidates[b, j] == r of
                            c[b, j] * anchor_table[anchors[b]]

    summed in input order (so the bits do not depend on ``num_threads``). Feed them to an
    optimizer: ``opt_a.step(g.anchor_rows, g.anchor_grad)``. When both tables are one array,
    step it with both gradients (``np.concatenate`` the rows and values).
    """
    loss, a_rows, a_grad, c_rows, c_grad = _core.sampled_logistic_grad(
        anchor_table, candidate_table, anchors, candidates, labels,
        _args.threads("num_threads", num_threads))
    return SampledGrad(loss, a_rows, a_grad, c_rows, c_grad)


def logistic_sgd(anchor_table: np.ndarray, candidate_table: np.ndarray, anchors: np.ndarray,
                 candidates: np.ndarray, labels: np.ndarray | None = None, *, lr: float,
                 compute_loss: bool = True) -> float:
    """One fused SGD pass over the batch, updating both tables in place (word2vec's order).

    Items in order; for item ``b`` with ``x = anchor_table[anchors[b]]`` and a zeroed buffer
    ``e``::

        for j in range(k):
            c = candidate_table[candidates[b, j]]
            g = lr * (y[b, j] - sigmoid(x . c))
            e += g * c
            c += g * x          # at once: later terms of the batch see it
        x += e                  # once per item

    Arguments as :func:`logistic_loss` (the tables must be writeable); ``lr`` >= 0 for this call
    (schedules: pass a new one each call). Returns the summed loss of the terms, each at the
    values it was computed with (0.0 with ``compute_loss=False``, which skips a log per term).

    The pass runs on the calling thread with the GIL released, and the same inputs give the same
    bits. **Hogwild**: several threads may call it at once on the same tables with different
    batches; there are no locks, so when two threads update the same row at the same moment one
    update can be lost or a dot product can read a half-updated row. word2vec and gensim train
    this way; the results then vary from run to run.
    """
    return _core.sampled_logistic_sgd(anchor_table, candidate_table, anchors, candidates, labels,
                                      _args.real("lr", lr), bool(compute_loss))


class NegativeSampler:
    """Draws rows with probability proportional to ``weights`` (O(1) per draw, alias method).

    ``weights``: 1-D float64, finite, >= 0, positive sum; one per row of the candidate table.
    For word2vec's negatives: ``counts ** 0.75``. The table is built once; the sampler can be
    pickled (it is rebuilt from the weights) and shared by threads.
    """

    def __init__(self, weights: np.ndarray):
        self._table = _core.AliasTable(weights)

    @property
    def size(self) -> int:
        """Number of rows it draws from."""
        return self._table.size

    @property
    def weights(self) -> np.ndarray:
        """A copy of the weights it was built from."""
        return self._table.weights

    @property
    def probabilities(self) -> np.ndarray:
        """The alias table: column ``i`` draws ``i`` with this probability, else ``aliases[i]``."""
        return self._table.probabilities

    @property
    def aliases(self) -> np.ndarray:
        """The alias table's other row of each column (int64)."""
        return self._table.aliases

    def draw(self, positives: np.ndarray, num_negatives: int, *, seed: int,
             exclude_positive: bool = True, num_threads: int = 0) -> np.ndarray:
        """Candidates for :func:`logistic_sgd` / :func:`logistic_grad`: shape
        ``(len(positives), 1 + num_negatives)``, the dtype of ``positives``; column 0 holds
        the positives, the other columns rows drawn from the weights. With
        ``exclude_positive`` a draw equal to the item's positive is drawn again (up to 64
        times; word2vec skips such a draw instead).

        ``seed`` (0 <= seed < 2**64) and the item's position alone decide an item's draws: the
        same bits for any ``num_threads``. Use a different seed for every batch.
        """
        return self._table.draw(positives, _args.count("num_negatives", num_negatives, maximum=_args.INT64_MAX),
                                _seed(seed), bool(exclude_positive),
                                _args.threads("num_threads", num_threads))

    def __reduce__(self):
        return (NegativeSampler, (self._table.weights,))

    def __repr__(self) -> str:
        return f"NegativeSampler(size={self.size})"


def context_pairs(tokens: np.ndarray, window: int, *, offsets: np.ndarray | None = None,
                  keep_probability: np.ndarray | None = None, seed: int = 0,
                  shrink_window: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(centers, contexts): the skip-gram pairs of token sequences, as word2vec samples them.

    1. Token ``t`` is kept with probability ``keep_probability[t]`` (None: every token; values
       >= 1 always, <= 0 never) -- word2vec's and gensim's frequent-word subsampling. Dropped
       tokens are removed before the windows are taken, so windows reach further.
    2. Each kept token of a sentence is a center. With ``shrink_window`` it draws ``b``
       uniformly from ``0 .. window - 1`` and pairs with the kept tokens of its sentence at
       distance ``1 .. window - b``, in order (without: distance up to ``window``).

    Parameters
    ----------
    tokens : ndarray of int32 or int64, shape (n,)
        Token ids, >= 0 (and < len(keep_probability) when given).
    window : int >= 0
    offsets : ndarray of int64, shape (num_sentences + 1,), optional
        Sentence ``s`` is ``tokens[offsets[s]:offsets[s + 1]]`` (0 first, n last,
        non-decreasing); pairs never cross sentences. Default: one sentence.
    keep_probability : ndarray of float64, shape (vocab_size,), optional
    seed : int, 0 <= seed < 2**64
        The draws are one stream from the seed: same inputs and seed, same pairs.

    Returns
    -------
    centers, contexts : ndarrays of the tokens' dtype, the same length. For word2vec's
    skip-gram, train with ``anchors=contexts`` (rows of the input vectors) and the centers as
    positives of the output table, as gensim does.
    """
    window = _args.count("window", window, maximum=_args.INT64_MAX)
    return _core.context_pairs(tokens, offsets, window, keep_probability, _seed(seed),
                               bool(shrink_window))
