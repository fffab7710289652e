"""The fused EmbeddingBag backward + optimizer step, ``Optimizer.step_bags``.

Its promise is bit-identity with the two calls it replaces, ``gather_sum_backward`` followed by
``step`` (each checked against torch and NumPy references in their own test files), for every
optimizer, both modes, both dtypes and index types, weights, means, duplicates, empty bags and
any thread count; and the same checks before it writes.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt
from sparseopt import optim

from _helpers import FLOAT_DTYPES, INDEX_DTYPES, ROW_SHAPES

# (name, constructor): a spread of each optimizer's options, both modes where they differ.
CONFIGS = [
    ("sgd", lambda p: optim.SGD(p, lr=0.1)),
    ("sgd_momentum_lazy", lambda p: optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1)),
    ("sgd_nesterov_exact", lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                               weight_decay=0.01, mode="exact")),
    ("adagrad", lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.01)),
    ("rmsprop_lazy", lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True)),
    ("rmsprop_exact", lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True,
                                              mode="exact")),
    ("adam_lazy", lambda p: optim.Adam(p, lr=0.01)),
    ("adam_row_bias", lambda p: optim.Adam(p, lr=0.01, bias_correction="row", weight_decay=0.1)),
    ("adam_exact", lambda p: optim.Adam(p, lr=0.01, mode="exact")),
    ("adamw_exact_amsgrad", lambda p: optim.AdamW(p, lr=0.01, amsgrad=True, mode="exact")),
    ("rowwise_adagrad", lambda p: optim.RowWiseAdagrad(p, lr=0.1)),
    ("ftrl", lambda p: optim.FTRL(p, lr=0.1, l1=0.01, l2=0.01)),
]


def random_bags(rng, num_rows, index_dtype, *, max_bags=12, max_len=6):
    """indptr/indices with empty bags and many repeated rows (a few hot rows)."""
    num_bags = int(rng.integers(0, max_bags + 1))
    lengths = rng.integers(0, max_len + 1, size=num_bags)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    hot = rng.integers(0, num_rows, size=3)
    n = int(indptr[-1])
    indices = np.where(rng.random(n) < 0.4, rng.choice(hot, size=n), rng.integers(0, num_rows, size=n))
    return indptr, indices.astype(index_dtype)


def state_arrays(opt):
    return {name: np.array(a, copy=True) for name, a in opt.state.items()}


def assert_same_bits(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what


@pytest.mark.parametrize("name,make", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_fused_step_equals_backward_then_step(name, make, dtype, index_dtype, rng):
    num_rows = 40
    row_shape = ROW_SHAPES[int(rng.integers(len(ROW_SHAPES)))]
    table = rng.standard_normal((num_rows, *row_shape)).astype(dtype)
    fused_table, two_call_table = table.copy(), table.copy()
    fused, two_call = make(fused_table), make(two_call_table)
    for step in range(8):
        indptr, indices = random_bags(rng, num_rows, index_dtype)
        num_bags = len(indptr) - 1
        grad_out = rng.standard_normal((num_bags, *row_shape)).astype(dtype)
        mode = "mean" if step % 3 == 1 else "sum"
        weights = (rng.standard_normal(len(indices)).astype(dtype)
                   if mode == "sum" and step % 2 == 0 else None)
        threads = (1, 2, 0)[step % 3]
        fused.num_threads = threads
        two_call.num_threads = 3 - threads if threads else 1
        rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                     num_rows=num_rows)
        two_call.step(rows, values)
        fused.step_bags(grad_out, indptr, indices, weights, mode=mode)
        if step == 4 and fused.exact:  # a forward pass's catch-up between steps
            fused.flush(indices)
            two_call.flush(indices)
        assert fused.step_count == two_call.step_count == step + 1
        assert_same_bits(fused_table, two_call_table, f"param after step {step + 1}")
    fused.flush()
    two_call.flush()
    assert_same_bits(fused_table, two_call_table, "param after flush")
    ours, theirs = state_arrays(fused), state_arrays(two_call)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert_same_bits(ours[key], theirs[key], key)


def test_fused_sgd_against_numpy(rng):
    """An independent reference: plain SGD, p -= lr * (the summed weighted terms), the
    gradient built row by row in NumPy from the bags."""
    num_rows, width, lr = 30, 5, 0.1
    table = rng.standard_normal((num_rows, width))
    expected = table.copy()
    opt = optim.SGD(table, lr=lr)
    for step in range(5):
        indptr, indices = random_bags(rng, num_rows, np.int64, max_bags=20)
        grad_out = rng.standard_normal((len(indptr) - 1, width))
        weights = rng.standard_normal(len(indices))
        grad = np.zeros_like(expected)
        for b in range(len(indptr) - 1):
            for p in range(indptr[b], indptr[b + 1]):
                grad[indices[p]] += weights[p] * grad_out[b]
        expected -= lr * grad
        opt.step_bags(grad_out, indptr, indices, weights)
        np.testing.assert_allclose(table, expected, rtol=1e-12, atol=1e-12)


def test_fused_adam_mean_against_numpy(rng):
    """mode="mean" divides each bag's gradient by its length; lazy Adam then follows
    SparseAdam's formula on the touched rows only."""
    num_rows, width, lr, b1, b2, eps = 25, 3, 0.01, 0.9, 0.999, 1e-8
    table = rng.standard_normal((num_rows, width))
    p = table.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    opt = optim.Adam(table, lr=lr)
    for t in range(1, 6):
        indptr, indices = random_bags(rng, num_rows, np.int32, max_bags=15)
        grad_out = rng.standard_normal((len(indptr) - 1, width))
        g = np.zeros_like(p)
        for b in range(len(indptr) - 1):
            length = indptr[b + 1] - indptr[b]
            for q in range(indptr[b], indptr[b + 1]):
                g[indices[q]] += grad_out[b] / length
        touched = np.unique(indices)
        m[touched] += (g[touched] - m[touched]) * (1 - b1)
        v[touched] += (g[touched] ** 2 - v[touched]) * (1 - b2)
        step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        p[touched] -= step_size * m[touched] / (np.sqrt(v[touched]) + eps)
        opt.step_bags(grad_out, indptr, indices, mode="mean")
        np.testing.assert_allclose(table, p, rtol=1e-10, atol=1e-12)


def test_empty_bags_and_no_indices_still_count_a_step(rng):
    table = rng.standard_normal((10, 4)).astype(np.float32)
    before = table.copy()
    opt = optim.Adam(table, mode="exact")
    opt.step_bags(np.zeros((3, 4), np.float32), np.zeros(4, np.int64), np.zeros(0, np.int64))
    opt.step_bags(np.zeros((0, 4), np.float32), np.zeros(1, np.int64), np.zeros(0, np.int64))
    assert opt.step_count == 2
    opt.flush()
    np.testing.assert_array_equal(table, before)  # zero moments: nothing moves


def test_a_hot_row_with_many_terms_is_bit_identical(rng):
    """Zipf-like bags put hundreds of terms on one row: the long-row path of the sum."""
    num_rows, width = 1000, 37
    table = rng.standard_normal((num_rows, width)).astype(np.float32)
    other = table.copy()
    indices = np.where(rng.random(5000) < 0.3, 7, rng.integers(0, num_rows, 5000)).astype(np.int64)
    indptr = np.arange(0, 5001, 10, dtype=np.int64)
    grad_out = rng.standard_normal((500, width)).astype(np.float32)
    weights = rng.random(5000).astype(np.float32)
    a, b = optim.RowWiseAdagrad(table, num_threads=2), optim.RowWiseAdagrad(other)
    a.step_bags(grad_out, indptr, indices, weights)
    b.step(*sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, num_rows=num_rows))
    assert_same_bits(table, other, "param")


# -- bad input: a clear error, nothing written ------------------------------------------------

def _bad_calls(rng):
    g = rng.standard_normal((3, 4)).astype(np.float32)
    indptr = np.array([0, 2, 2, 5], np.int64)
    ids = np.array([1, 3, 1, 0, 9], np.int64)
    return [
        ("out of range", (g, indptr, np.array([1, 3, 1, 0, 10]), None, "sum"), IndexError, "indices\\[4\\] = 10"),
        ("negative", (g, indptr, np.array([1, -1, 1, 0, 2]), None, "sum"), IndexError, "indices\\[1\\]"),
        ("grad_out dtype", (g.astype(np.float64), indptr, ids, None, "sum"), TypeError, "grad_out"),
        ("grad_out rows", (g[:2], indptr, ids, None, "sum"), ValueError, "grad_out must have shape \\(3, 4\\)"),
        ("grad_out width", (g[:, :3].copy(), indptr, ids, None, "sum"), ValueError, "grad_out"),
        ("torch offsets", (g, indptr[:-1], ids, None, "sum"), ValueError, "len\\(indices\\) appended"),
        ("indptr[0]", (g[:2], indptr[1:], ids, None, "sum"), ValueError, "indptr\\[0\\] must be 0"),
        ("decreasing", (g, np.array([0, 3, 2, 5]), ids, None, "sum"), ValueError, "non-decreasing"),
        ("index dtypes", (g, indptr.astype(np.int32), ids, None, "sum"), TypeError, "indices must have the dtype"),
        ("weights dtype", (g, indptr, ids, np.ones(5), "sum"), TypeError, "weights"),
        ("weights shape", (g, indptr, ids, np.ones(4, np.float32), "sum"), ValueError, "weights"),
        ("weights with mean", (g, indptr, ids, np.ones(5, np.float32), "mean"), ValueError, "mode=\"sum\""),
        ("mode", (g, indptr, ids, None, "max"), ValueError, "mode"),
    ]


@pytest.mark.parametrize("exact", [False, True])
def test_bad_input_changes_nothing(exact, rng):
    table = rng.standard_normal((10, 4)).astype(np.float32)
    opt = optim.Adam(table, mode="exact" if exact else "lazy")
    opt.step_bags(rng.standard_normal((2, 4)).astype(np.float32), np.array([0, 1, 3]), np.array([2, 5, 2]))
    params, state = table.copy(), state_arrays(opt)
    for what, (g, indptr, ids, weights, mode), error, match in _bad_calls(rng):
        with pytest.raises(error, match=match):
            opt.step_bags(g, indptr, ids, weights, mode=mode)
        assert opt.step_count == 1, what
        np.testing.assert_array_equal(table, params, err_msg=what)
        after = state_arrays(opt)
        for key in state:
            np.testing.assert_array_equal(after[key], state[key], err_msg=f"{what}: {key}")


def test_grad_out_sharing_memory_with_the_table_is_refused(rng):
    table = rng.standard_normal((10, 4))
    params = table.copy()
    opt = optim.SGD(table, lr=0.1)
    with pytest.raises(ValueError, match="grad_out.*share memory|share memory.*grad_out"):
        opt.step_bags(table[:2], np.array([0, 1, 2]), np.array([3, 4]))
    np.testing.assert_array_equal(table, params)
    assert opt.step_count == 0


def test_gather_sum_backward_names_torch_offsets_too(rng):
    """The same hint where the two calls would fail: an indptr one entry short."""
    grad_out = rng.standard_normal((3, 4)).astype(np.float32)
    offsets = np.array([0, 2, 2], np.int64)  # torch's: one per bag
    with pytest.raises(ValueError, match="len\\(indices\\) appended"):
        sparseopt.gather_sum_backward(grad_out, offsets, np.array([1, 3, 1, 0, 9]), num_rows=10)
