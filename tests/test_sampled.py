"""sparseopt.sampled: the sampled logistic loss, its coalesced gradients and the fused SGD pass,
against plain NumPy references written from the formulas:

    f = A[anchors[b]] . B[candidates[b, j]],  loss = sum softplus(f) - y f,
    d loss / d f = sigmoid(f) - y.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt import sampled
from sparseopt.optim import SGD, Adagrad

from _helpers import FLOAT_DTYPES, INDEX_DTYPES, assert_close

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
# float32 dot products round differently from the float64 reference
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}


def tol(dtype):
    return TOL[np.dtype(dtype)]


# --------------------------------------------------------------------------------------------
# references (float64, from the formulas)
# --------------------------------------------------------------------------------------------
def default_labels(n, k):
    y = np.zeros((n, k))
    if k:
        y[:, 0] = 1.0
    return y


def ref_terms(A, B, anchors, candidates, labels):
    A64, B64 = A.astype(np.float64).reshape(len(A), -1), B.astype(np.float64).reshape(len(B), -1)
    n, k = candidates.shape
    y = default_labels(n, k) if labels is None else labels.astype(np.float64)
    f = np.einsum("bd,bkd->bk", A64[anchors], B64[candidates]) if n and k else np.zeros((n, k))
    loss = np.logaddexp(0.0, f) - y * f
    coef = 1.0 / (1.0 + np.exp(-f)) - y
    return loss, coef, A64, B64


def ref_loss(A, B, anchors, candidates, labels=None):
    return float(ref_terms(A, B, anchors, candidates, labels)[0].sum())


def ref_grad(A, B, anchors, candidates, labels=None):
    _, coef, A64, B64 = ref_terms(A, B, anchors, candidates, labels)
    gA, gB = np.zeros_like(A64), np.zeros_like(B64)
    n, k = candidates.shape
    for b in range(n):
        for j in range(k):
            gA[anchors[b]] += coef[b, j] * B64[candidates[b, j]]
            gB[candidates[b, j]] += coef[b, j] * A64[anchors[b]]
    a_rows, c_rows = np.unique(anchors), np.unique(candidates)
    return (a_rows, gA[a_rows].reshape((-1, *A.shape[1:])),
            c_rows, gB[c_rows].reshape((-1, *B.shape[1:])))


def ref_sgd(A, B, anchors, candidates, labels, lr):
    """The fused pass, sequentially, in the tables' dtype (dot products in float64)."""
    T = A.dtype.type
    A2, B2 = A.reshape(len(A), -1), B.reshape(len(B), -1)  # views: A is B stays shared
    n, k = candidates.shape
    y = default_labels(n, k) if labels is None else labels.astype(np.float64)
    loss = 0.0
    for b in range(n):
        x = A2[anchors[b]]
        e = np.zeros_like(x)
        for j in range(k):
            c = B2[candidates[b, j]]
            f = float(np.dot(x.astype(np.float64), c.astype(np.float64)))
            s = 1.0 / (1.0 + np.exp(-f))
            loss += np.logaddexp(0.0, f) - y[b, j] * f
            g = T(lr * (y[b, j] - s))
            e += g * c
            c += g * x
        x += e
    return loss


def make_case(rng, num_a, num_b, n, k, dtype, index_dtype, row_shape=(8,), scale=0.5):
    A = (scale * rng.standard_normal((num_a, *row_shape))).astype(dtype)
    B = (scale * rng.standard_normal((num_b, *row_shape))).astype(dtype)
    anchors = rng.integers(0, num_a, n).astype(index_dtype)
    candidates = rng.integers(0, num_b, (n, k)).astype(index_dtype)
    if n >= 2:  # duplicates: a repeated anchor, a candidate repeated within and across items
        anchors[-1] = anchors[0]
        if k >= 2:
            candidates[0, 1] = candidates[0, 0]
            candidates[-1, -1] = candidates[0, 0]
    return A, B, anchors, candidates


# --------------------------------------------------------------------------------------------
# loss and gradients
# --------------------------------------------------------------------------------------------
def test_small_example_by_hand():
    A = np.array([[1.0, 0.0], [0.0, 2.0]])
    B = np.array([[0.5, 0.5], [1.0, -1.0], [0.0, 0.0]])
    anchors = np.array([0, 1])
    candidates = np.array([[0, 1], [2, 0]])
    f = np.array([[0.5, 1.0], [0.0, 1.0]])
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    expected = float((np.log1p(np.exp(f)) - y * f).sum())
    assert sampled.logistic_loss(A, B, anchors, candidates) == pytest.approx(expected, rel=1e-14)
    g = sampled.logistic_grad(A, B, anchors, candidates)
    c = 1 / (1 + np.exp(-f)) - y
    assert g.loss == pytest.approx(expected, rel=1e-14)
    np.testing.assert_array_equal(g.anchor_rows, [0, 1])
    np.testing.assert_allclose(g.anchor_grad, [c[0, 0] * B[0] + c[0, 1] * B[1],
                                               c[1, 0] * B[2] + c[1, 1] * B[0]], rtol=1e-14)
    np.testing.assert_array_equal(g.candidate_rows, [0, 1, 2])
    np.testing.assert_allclose(g.candidate_grad, [c[0, 0] * A[0] + c[1, 1] * A[1],
                                                  c[0, 1] * A[0], c[1, 0] * A[1]], rtol=1e-14)


@pytest.mark.parametrize("row_shape", [(), (8,), (3, 2)], ids=lambda s: f"row{s}")
@pytest.mark.parametrize("with_labels", [False, True], ids=["pos_neg", "labels"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_loss_and_grad_match_reference(rng, dtype, index_dtype, with_labels, row_shape):
    A, B, anchors, candidates = make_case(rng, 30, 40, 50, 6, dtype, index_dtype, row_shape)
    labels = rng.random(candidates.shape).astype(dtype) if with_labels else None
    A0, B0 = A.copy(), B.copy()
    loss = sampled.logistic_loss(A, B, anchors, candidates, labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref_loss(A, B, anchors, candidates, labels), rel=tol(dtype))
    g = sampled.logistic_grad(A, B, anchors, candidates, labels)
    assert g.loss == loss
    ra, ga, rc, gc = ref_grad(A, B, anchors, candidates, labels)
    assert g.anchor_rows.dtype == index_dtype and g.candidate_rows.dtype == index_dtype
    assert g.anchor_grad.dtype == dtype and g.candidate_grad.dtype == dtype
    np.testing.assert_array_equal(g.anchor_rows, ra)
    np.testing.assert_array_equal(g.candidate_rows, rc)
    assert_close(g.anchor_grad, ga.astype(dtype), rtol=tol(dtype))
    assert_close(g.candidate_grad, gc.astype(dtype), rtol=tol(dtype))
    # reading never writes
    assert np.array_equal(A, A0) and np.array_equal(B, B0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_grad_sums_in_input_order(dtype):
    """Repeated rows are summed from zero in input order, in the table's dtype."""
    big = dtype(1e8) if dtype == np.float32 else dtype(1e17)
    A = np.array([[0.0]], dtype)  # f = 0: every coefficient is sigmoid(0) - 0 = 0.5
    B = np.array([[big], [1.0], [-big]], dtype)
    anchors = np.array([0, 0, 0])
    candidates = np.array([[0], [1], [2]])
    labels = np.zeros((3, 1), dtype)
    g = sampled.logistic_grad(A, B, anchors, candidates, labels)
    expected = dtype(0)
    for row in B[:, 0]:
        expected = dtype(expected + dtype(0.5) * row)
    assert expected == 0  # (big/2 + 1/2) - big/2 rounds to 0; another order would give 0.5
    assert g.anchor_grad[0, 0] == expected


def test_loss_is_stable_for_large_dot_products():
    A = np.array([[30.0], [-30.0]])
    B = np.array([[30.0]])
    loss = sampled.logistic_loss(A, B, np.array([0, 1]), np.array([[0], [0]]),
                                 np.array([[0.0], [1.0]]))
    assert loss == pytest.approx(1800.0, rel=1e-12)  # softplus(900) + softplus(-900) + 900
    g = sampled.logistic_grad(A, B, np.array([0, 1]), np.array([[0], [0]]),
                              np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(g.anchor_grad, [[30.0], [-30.0]])


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_empty_batches(dtype, index_dtype):
    A = np.ones((3, 4), dtype)
    B = np.ones((5, 4), dtype)
    for n, k in [(0, 6), (0, 0), (4, 0)]:
        anchors = np.zeros(n, index_dtype)
        candidates = np.zeros((n, k), index_dtype)
        assert sampled.logistic_loss(A, B, anchors, candidates) == 0.0
        g = sampled.logistic_grad(A, B, anchors, candidates)
        assert g.loss == 0.0
        # anchors without candidates are rows with a zero gradient
        assert np.array_equal(g.anchor_rows, np.unique(anchors))
        assert g.anchor_grad.shape == (len(g.anchor_rows), 4) and not g.anchor_grad.any()
        assert g.candidate_rows.shape == (0,) and g.candidate_grad.shape == (0, 4)
        A0, B0 = A.copy(), B.copy()
        assert sampled.logistic_sgd(A, B, anchors, candidates, lr=0.1) == 0.0
        assert np.array_equal(A, A0) and np.array_equal(B, B0)


def test_empty_tables_with_empty_batch():
    A = np.zeros((0, 3), np.float32)
    empty = np.zeros(0, np.int64)
    assert sampled.logistic_loss(A, A, empty, empty.reshape(0, 5)) == 0.0


def test_one_table_for_both(rng):
    """Tied embeddings: anchor_table is candidate_table (a row may meet itself)."""
    E, _, anchors, candidates = make_case(rng, 20, 20, 30, 4, np.float64, np.int64)
    candidates[3, 2] = anchors[3]
    g = sampled.logistic_grad(E, E, anchors, candidates)
    ra, ga, rc, gc = ref_grad(E, E, anchors, candidates)
    assert_close(g.anchor_grad, ga)
    assert_close(g.candidate_grad, gc)
    E_ref = E.copy()
    loss_ref = ref_sgd(E_ref, E_ref, anchors, candidates, None, 0.1)
    loss = sampled.logistic_sgd(E, E, anchors, candidates, lr=0.1)
    assert loss == pytest.approx(loss_ref, rel=1e-11)
    assert_close(E, E_ref, rtol=1e-11)


def test_grad_feeds_an_optimizer(rng):
    """The gradients are row-sparse gradients as sparseopt's optimizers take them."""
    A, B, anchors, candidates = make_case(rng, 30, 40, 50, 6, np.float32, np.int32)
    g = sampled.logistic_grad(A, B, anchors, candidates)
    A_ref, B_ref = A.copy(), B.copy()
    opt_a, opt_b = Adagrad(A, lr=0.1), SGD(B, lr=0.1)
    opt_a.step(g.anchor_rows, g.anchor_grad)
    opt_b.step(g.candidate_rows, g.candidate_grad)
    B_ref[g.candidate_rows] -= np.float32(0.1) * g.candidate_grad
    assert np.array_equal(B, B_ref)
    touched = np.zeros(len(A), bool)
    touched[g.anchor_rows] = True
    assert np.array_equal(A[~touched], A_ref[~touched]) and not np.array_equal(A, A_ref)
    assert sampled.logistic_loss(A, B, anchors, candidates) < g.loss


# --------------------------------------------------------------------------------------------
# fused SGD
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_labels", [False, True], ids=["pos_neg", "labels"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_sgd_matches_sequential_loop(rng, dtype, index_dtype, with_labels):
    A, B, anchors, candidates = make_case(rng, 12, 15, 60, 6, dtype, index_dtype, (8,))
    labels = rng.random(candidates.shape).astype(dtype) if with_labels else None
    A_ref, B_ref = A.copy(), B.copy()
    losses = []
    for lr in (0.5, 0.1, 0.0):
        loss_ref = ref_sgd(A_ref, B_ref, anchors, candidates, labels, lr)
        losses.append(sampled.logistic_sgd(A, B, anchors, candidates, labels, lr=lr))
        assert losses[-1] == pytest.approx(loss_ref, rel=tol(dtype))
        assert_close(A, A_ref, rtol=10 * tol(dtype))
        assert_close(B, B_ref, rtol=10 * tol(dtype))
    assert losses[1] < losses[0]  # it trains


def test_sgd_equals_gradient_step_when_rows_are_distinct(rng):
    """With every row used once (and lr the same), word2vec's order is a plain SGD step."""
    A = rng.standard_normal((10, 5))
    B = rng.standard_normal((30, 5))
    anchors = np.array([3, 7, 1, 0])
    candidates = rng.permutation(30)[:12].reshape(4, 3)
    g = sampled.logistic_grad(A, B, anchors, candidates)
    A_ref, B_ref = A.copy(), B.copy()
    A_ref[g.anchor_rows] -= 0.3 * g.anchor_grad
    B_ref[g.candidate_rows] -= 0.3 * g.candidate_grad
    loss = sampled.logistic_sgd(A, B, anchors, candidates, lr=0.3)
    assert loss == pytest.approx(g.loss, rel=1e-14)
    assert_close(A, A_ref)
    assert_close(B, B_ref)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_sgd_side_by_side_path_has_the_sequential_bits(rng, dtype):
    """Items whose candidate rows are distinct take their dot products side by side; items with
    more than 32 candidates go term by term. A 33rd candidate that is a zero row with label 0.5
    has g = 0 and changes nothing, so both batches must give the same bits."""
    n, k, width = 300, 32, 24
    A = (0.3 * rng.standard_normal((50, width))).astype(dtype)
    B = (0.3 * rng.standard_normal((200, width))).astype(dtype)
    B[-1] = 0  # the no-op candidate
    anchors = rng.integers(0, 50, n)
    candidates = np.array([rng.permutation(199)[:k] for _ in range(n)])  # distinct per item
    labels = rng.random((n, k)).astype(dtype)
    A1, B1 = A.copy(), B.copy()
    loss1 = sampled.logistic_sgd(A1, B1, anchors, candidates, labels, lr=0.3)
    A2, B2 = A.copy(), B.copy()
    loss2 = sampled.logistic_sgd(
        A2, B2, anchors, np.hstack([candidates, np.full((n, 1), 199)]),
        np.hstack([labels, np.full((n, 1), 0.5, dtype)]), lr=0.3)
    assert np.array_equal(A1, A2) and np.array_equal(B1, B2)
    assert loss2 == pytest.approx(loss1 + n * np.log(2), rel=1e-12)
    assert not np.array_equal(A1, A)


def test_sgd_compute_loss_false(rng):
    A, B, anchors, candidates = make_case(rng, 12, 15, 40, 6, np.float32, np.int64)
    A2, B2 = A.copy(), B.copy()
    assert sampled.logistic_sgd(A, B, anchors, candidates, lr=0.2) > 0
    assert sampled.logistic_sgd(A2, B2, anchors, candidates, lr=0.2, compute_loss=False) == 0.0
    assert np.array_equal(A, A2) and np.array_equal(B, B2)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_sgd_is_deterministic(rng, dtype):
    A, B, anchors, candidates = make_case(rng, 200, 300, 3000, 6, dtype, np.int64, (16,))
    out = []
    for _ in range(2):
        A2, B2 = A.copy(), B.copy()
        loss = sampled.logistic_sgd(A2, B2, anchors, candidates, lr=0.05)
        out.append((loss, A2, B2))
    assert out[0][0] == out[1][0]
    assert np.array_equal(out[0][1], out[1][1]) and np.array_equal(out[0][2], out[1][2])


def test_sgd_hogwild_threads_train(rng):
    """Two Python threads on the same tables (GIL released): no crash, the loss goes down, and
    rows only one thread touches are exactly what a single thread would make of them."""
    import threading

    A, B, _, _ = make_case(rng, 400, 400, 1, 1, np.float32, np.int64, (32,), scale=0.1)
    batches = []
    for w in range(2):  # worker w only touches rows of its own half: no collisions
        lo = 200 * w
        anchors = rng.integers(lo, lo + 200, 20000)
        candidates = rng.integers(lo, lo + 200, (20000, 6))
        batches.append((anchors, candidates))
    A_seq, B_seq = A.copy(), B.copy()
    for anchors, candidates in batches:
        sampled.logistic_sgd(A_seq, B_seq, anchors, candidates, lr=0.02)
    before = sum(sampled.logistic_loss(A, B, a, c) for a, c in batches)
    threads = [threading.Thread(target=sampled.logistic_sgd, args=(A, B, a, c),
                                kwargs=dict(lr=0.02)) for a, c in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(A, A_seq) and np.array_equal(B, B_seq)
    assert sum(sampled.logistic_loss(A, B, a, c) for a, c in batches) < before


# --------------------------------------------------------------------------------------------
# thread-count determinism (loss and gradients)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_thread_count_invariant(rng, dtype, index_dtype):
    # big enough for the kernels to go parallel (n * k * width >> 2**15)
    A, B, _, _ = make_case(rng, 2000, 3000, 1, 1, dtype, index_dtype, (16,))
    n, k = 8000, 6
    hot = rng.integers(0, 20, n // 2)  # heavy repeats
    anchors = np.concatenate([hot, rng.integers(0, 2000, n - n // 2)]).astype(index_dtype)
    candidates = np.where(rng.random((n, k)) < 0.5, rng.integers(0, 10, (n, k)),
                          rng.integers(0, 3000, (n, k))).astype(index_dtype)
    labels = rng.random((n, k)).astype(dtype)
    results = []
    for nt in (1, 2, 0):
        loss = sampled.logistic_loss(A, B, anchors, candidates, labels, num_threads=nt)
        g = sampled.logistic_grad(A, B, anchors, candidates, labels, num_threads=nt)
        results.append((loss, g))
    for loss, g in results[1:]:
        assert loss == results[0][0]
        for a, b in zip(g, results[0][1]):
            assert np.array_equal(a, b)
    ra, ga, rc, gc = ref_grad(A, B, anchors, candidates, labels)
    assert_close(results[0][1].anchor_grad, ga.astype(dtype), rtol=10 * tol(dtype))
    assert_close(results[0][1].candidate_grad, gc.astype(dtype), rtol=10 * tol(dtype))


# --------------------------------------------------------------------------------------------
# Hypothesis
# --------------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30), k=st.integers(0, 7),
       num_a=st.integers(1, 12), num_b=st.integers(1, 12), width=st.integers(1, 20),
       dtype=st.sampled_from(FLOAT_DTYPES), index_dtype=st.sampled_from(INDEX_DTYPES),
       with_labels=st.booleans(), num_threads=st.sampled_from([0, 1, 2]))
def test_hypothesis_against_reference(seed, n, k, num_a, num_b, width, dtype, index_dtype,
                                      with_labels, num_threads):
    rng = np.random.default_rng(seed)
    A, B, anchors, candidates = make_case(rng, num_a, num_b, n, k, dtype, index_dtype, (width,))
    labels = rng.random((n, k)).astype(dtype) if with_labels else None
    g = sampled.logistic_grad(A, B, anchors, candidates, labels, num_threads=num_threads)
    assert g.loss == pytest.approx(ref_loss(A, B, anchors, candidates, labels), rel=tol(dtype),
                                   abs=1e-300)
    ra, ga, rc, gc = ref_grad(A, B, anchors, candidates, labels)
    np.testing.assert_array_equal(g.anchor_rows, ra)
    np.testing.assert_array_equal(g.candidate_rows, rc)
    assert_close(g.anchor_grad, ga.astype(dtype), rtol=tol(dtype))
    assert_close(g.candidate_grad, gc.astype(dtype), rtol=tol(dtype))
    A_ref, B_ref = A.copy(), B.copy()
    loss_ref = ref_sgd(A_ref, B_ref, anchors, candidates, labels, 0.2)
    loss = sampled.logistic_sgd(A, B, anchors, candidates, labels, lr=0.2)
    assert loss == pytest.approx(loss_ref, rel=tol(dtype), abs=1e-300)
    assert_close(A, A_ref, rtol=10 * tol(dtype))
    assert_close(B, B_ref, rtol=10 * tol(dtype))
