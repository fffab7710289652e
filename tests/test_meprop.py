"""meProp's sparsified linear backward, against the dense backward of the top-k-masked gradient.

The references are written from the definition (NumPy: a stable argsort picks the top-k |g|
per example, ties to the lower unit; then the dense products of the masked gradient) and,
where installed, torch autograd of ``F.linear`` fed the masked gradient. Neither calls
sparseopt.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import FLOAT_DTYPES, HAVE_TORCH

import sparseopt
from sparseopt.meprop import linear_backward
from sparseopt.nn import MePropLinear
from sparseopt.optim import SGD, Adam

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def topk_mask(g, k, unified):
    """The meProp selection as a boolean mask: per example, the k largest |g| (ties: lower
    unit first; NaN ranks above every number); unified: the k largest column sums of |g|."""
    a = np.abs(g.astype(np.float64))
    if unified:
        a = a.sum(0, keepdims=True)
    key = np.where(np.isnan(a), np.inf, a)  # NaN above every number ...
    nan_first = np.isnan(a)                 # ... and above inf
    mask = np.zeros(a.shape, bool)
    for r in range(a.shape[0]):
        order = np.lexsort((np.arange(a.shape[1]), -key[r], ~nan_first[r]))
        mask[r, order[:k]] = True
    return np.broadcast_to(mask, g.shape) if unified else mask


def reference(x, W, g, k, unified):
    mask = topk_mask(g, k, unified)
    gm = np.where(mask, g, 0).astype(np.float64)
    rows = np.flatnonzero(mask.any(0))
    return gm @ W.astype(np.float64), rows, (gm.T @ x.astype(np.float64))[rows], \
        g.astype(np.float64).sum(0)


def close(actual, ref, dtype, what):
    rtol = RTOL[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def make(rng, batch, n_in, n_out, dtype):
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    g = rng.standard_normal((batch, n_out)).astype(dtype)
    return x, W, g


def check(x, W, g, k, unified):
    gx, (rows, values), gb = linear_backward(x, W, g, k, unified=unified)
    rgx, rrows, rvalues, rgb = reference(x, W, g, k, unified)
    assert rows.dtype == np.int64 and values.dtype == x.dtype and gx.dtype == x.dtype
    np.testing.assert_array_equal(rows, rrows)
    close(gx, rgx, x.dtype, "grad_x")
    close(values, rvalues, x.dtype, "weight values")
    close(gb, rgb, x.dtype, "grad_bias")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("unified", [False, True])
@pytest.mark.parametrize("k", [1, 3, 20])
def test_matches_masked_dense_backward(dtype, unified, k):
    rng = np.random.default_rng(k)
    check(*make(rng, 50, 30, 40, dtype), k, unified)


@given(batch=st.integers(0, 9), n_in=st.integers(1, 9), n_out=st.integers(1, 12),
       data=st.data(), unified=st.booleans(), dtype=st.sampled_from(FLOAT_DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes(batch, n_in, n_out, data, unified, dtype, seed):
    k = data.draw(st.integers(1, n_out))
    check(*make(np.random.default_rng(seed), batch, n_in, n_out, dtype), k, unified)


@pytest.mark.parametrize("unified", [False, True])
def test_k_equal_out_is_the_dense_backward(unified):
    rng = np.random.default_rng(1)
    x, W, g = make(rng, 6, 5, 7, np.float64)
    gx, (rows, values), gb = linear_backward(x, W, g, 7, unified=unified)
    np.testing.assert_array_equal(rows, np.arange(7))
    np.testing.assert_allclose(gx, g @ W, rtol=1e-13)
    np.testing.assert_allclose(values, g.T @ x, rtol=1e-13)


@pytest.mark.parametrize("unified", [False, True])
def test_ties_go_to_the_lower_unit(unified):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((8, 4))
    g = rng.integers(-2, 3, size=(5, 8)).astype(np.float64)  # many equal magnitudes
    check(x, W, g, 3, unified)


def test_masked_units_do_not_contribute():
    """A huge gradient on an unselected unit must not leak into grad_x (k=1 keeps only the
    largest magnitude of each example)."""
    x = np.ones((1, 2))
    W = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    g = np.array([[0.5, -3.0, 2.0]])
    gx, (rows, values), _ = linear_backward(x, W, g, 1)
    np.testing.assert_array_equal(rows, [1])
    np.testing.assert_array_equal(gx, [[0.0, -3.0]])
    np.testing.assert_array_equal(values, [[-3.0, -3.0]])


def test_nan_gradient_is_kept_and_seen():
    rng = np.random.default_rng(3)
    x, W, g = make(rng, 3, 4, 6, np.float64)
    g[1, 4] = np.nan
    gx, (rows, values), gb = linear_backward(x, W, g, 1)
    assert 4 in rows
    assert np.isnan(gx[1]).all() and not np.isnan(gx[[0, 2]]).any()
    assert np.isnan(values[list(rows).index(4)]).all()
    assert np.isnan(gb[4])


def test_need_grad_x_false():
    rng = np.random.default_rng(4)
    x, W, g = make(rng, 4, 3, 5, np.float32)
    full = linear_backward(x, W, g, 2)
    part = linear_backward(x, W, g, 2, need_grad_x=False)
    assert part.grad_x is None
    np.testing.assert_array_equal(part.weight[0], full.weight[0])
    np.testing.assert_array_equal(part.weight[1], full.weight[1])
    np.testing.assert_array_equal(part.bias, full.bias)


@pytest.mark.parametrize("unified", [False, True])
def test_thread_count_does_not_change_bits(unified):
    rng = np.random.default_rng(5)
    x, W, g = make(rng, 64, 300, 500, np.float32)
    runs = [linear_backward(x, W, g, 20, unified=unified, num_threads=t) for t in (1, 2, 0)]
    for r in runs[1:]:
        for a, b in ((r.grad_x, runs[0].grad_x), (r.weight[0], runs[0].weight[0]),
                     (r.weight[1], runs[0].weight[1]), (r.bias, runs[0].bias)):
            np.testing.assert_array_equal(a, b)


def test_inputs_are_read_only_and_unchanged():
    rng = np.random.default_rng(6)
    x, W, g = make(rng, 5, 4, 6, np.float64)
    copies = [a.copy() for a in (x, W, g)]
    for a in (x, W, g):
        a.flags.writeable = False
    linear_backward(x, W, g, 2)
    for a, c in zip((x, W, g), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("unified", [False, True])
def test_against_torch_autograd(dtype, unified):
    import torch

    rng = np.random.default_rng(7)
    x, W, g = make(rng, 50, 40, 60, dtype)
    b = rng.standard_normal(60).astype(dtype)
    mask = topk_mask(g, 10, unified)
    tx = torch.tensor(x, requires_grad=True)
    tW = torch.tensor(W, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    y = torch.nn.functional.linear(tx, tW, tb)
    y.backward(torch.tensor(np.where(mask, g, 0)))
    gx, (rows, values), gb = linear_backward(x, W, g, 10, unified=unified)
    tgW = tW.grad.numpy()
    close(gx, tx.grad.numpy(), dtype, "grad_x")
    close(values, tgW[rows], dtype, "weight values")
    untouched = np.setdiff1d(np.arange(60), rows)
    assert not tgW[untouched].any()
    close(gb, g.astype(np.float64).sum(0), dtype, "grad_bias (unmasked)")


# --- bad input --------------------------------------------------------------------------------
def _good():
    rng = np.random.default_rng(8)
    return make(rng, 4, 3, 5, np.float32)


@pytest.mark.parametrize("which,bad,exc,words", [
    ("x", lambda a: a.astype(np.float64), TypeError, "dtype of x"),
    ("W", lambda a: a.astype(np.float64), TypeError, "weight must have the dtype"),
    ("g", lambda a: a.astype(np.float64), TypeError, "grad_out must have the dtype"),
    ("x", lambda a: a.astype(np.int32), TypeError, "float32 or float64"),
    ("x", lambda a: np.asfortranarray(np.tile(a, (1, 2))), TypeError, "C-contiguous"),
    ("W", lambda a: a[:, ::1][::-1], TypeError, "C-contiguous"),
    ("x", lambda a: a.ravel(), ValueError, "x must be 2-D"),
    ("W", lambda a: a[:, :2].copy(), ValueError, "weight must have shape (out, in)"),
    ("g", lambda a: a[:3].copy(), ValueError, "grad_out must have shape (batch, out)"),
    ("g", lambda a: a.tolist(), TypeError, "numpy.ndarray"),
])
def test_bad_arrays_are_refused(which, bad, exc, words):
    x, W, g = _good()
    args = dict(x=x, W=W, g=g)
    if which == "x" and words == "dtype of x":  # x float64: then W and g are the mismatch
        args["x"] = bad(x)
        with pytest.raises(TypeError, match="must have the dtype of x"):
            linear_backward(args["x"], W, g, 2)
        return
    args[which] = bad(args[which])
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        linear_backward(args["x"], args["W"], args["g"], 2)


@pytest.mark.parametrize("k,exc,words", [
    (0, ValueError, "k must be >= 1"), (6, ValueError, r"k must be in \[1, out\]"),
    (-1, ValueError, "k must be >= 1"), (True, TypeError, "k must be an integer"),
    (2.0, TypeError, "k must be an integer"),
])
def test_bad_k_is_refused(k, exc, words):
    x, W, g = _good()
    with pytest.raises(exc, match=words):
        linear_backward(x, W, g, k)


def test_bad_num_threads_is_refused():
    x, W, g = _good()
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        linear_backward(x, W, g, 2, num_threads=-1)


# --- nn.MePropLinear ---------------------------------------------------------------------------
def test_layer_steps_only_the_selected_rows():
    rng = np.random.default_rng(9)
    layer = MePropLinear(6, 10, 2, optimizer=lambda p: Adam(p, lr=1e-2), seed=0)
    w0, b0 = layer.weight.copy(), layer.bias.copy()
    x = rng.standard_normal((3, 6)).astype(np.float32)
    y = layer.forward(x)
    np.testing.assert_allclose(y, x @ w0.T + b0, rtol=1e-6)
    g = rng.standard_normal((3, 10)).astype(np.float32)
    gx = layer.backward(g)
    rows = layer.grads.weight[0]
    ref_gx, ref_rows, _, _ = reference(x, w0, g, 2, False)
    np.testing.assert_array_equal(rows, ref_rows)
    close(gx, ref_gx, np.float32, "grad_x")
    layer.step()
    untouched = np.setdiff1d(np.arange(10), rows)
    np.testing.assert_array_equal(layer.weight[untouched], w0[untouched])
    assert (layer.weight[rows] != w0[rows]).all()
    assert (layer.bias != b0).all()  # the bias gets the full gradient


def test_layer_learns_a_linear_map():
    """A 2-layer regression trained with meProp (k = half the units) and SGD: the loss falls."""
    rng = np.random.default_rng(10)
    A = rng.standard_normal((8, 4))
    X = rng.standard_normal((256, 8))
    Y = X @ A
    layer = MePropLinear(8, 4, 2, optimizer=lambda p: SGD(p, lr=0.05), dtype=np.float64, seed=1)

    def loss():
        return float(np.mean((layer.forward(X) - Y) ** 2))

    before = loss()
    for step in range(300):
        idx = rng.integers(0, 256, 32)
        out = layer.forward(X[idx])
        layer.backward(2 * (out - Y[idx]) / out.size, need_grad_x=False)
        layer.step()
    assert loss() < 0.05 * before


def dense_adam(p, g, m, v, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam's step (float64), written from its formula: every element moves."""
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
    p -= lr / (1 - b1 ** t) * m / denom


@pytest.mark.parametrize("unified", [False, True])
def test_exact_adam_layer_is_dense_adam_on_the_masked_gradient(unified):
    """With mode="exact", the layer trains as the reference code does: dense Adam fed the
    top-k-masked gradient, so rows that this step left out still move with their momentum --
    forward() sees them brought up to date."""
    rng = np.random.default_rng(11)
    n_in, n_out, k, batch = 7, 12, 3, 4
    layer = MePropLinear(n_in, n_out, k, optimizer=lambda p: Adam(p, lr=1e-2, mode="exact"),
                         unified=unified, dtype=np.float64, seed=2)
    W, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    state = [np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)]
    lazy_would_differ = False
    for t in range(1, 41):
        x = rng.standard_normal((batch, n_in))
        y = layer.forward(x)
        np.testing.assert_allclose(y, x @ W.T + b, rtol=1e-9, atol=1e-12,
                                   err_msg=f"forward at step {t}")
        g = rng.standard_normal((batch, n_out))
        layer.backward(g, need_grad_x=False)
        layer.step()
        mask = topk_mask(g, k, unified)
        gm = np.where(mask, g, 0.0)
        lazy_would_differ |= not mask.any(0).all()
        dense_adam(W, gm.T @ x, state[0], state[1], t)
        dense_adam(b, g.sum(0), state[2], state[3], t)
    layer.forward(np.zeros((1, n_in)))  # brings every row up to date
    np.testing.assert_allclose(layer.weight, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.bias, b, rtol=1e-9, atol=1e-12)
    assert lazy_would_differ  # some steps left rows out: the case where lazy and dense differ


def test_layer_refuses_bad_use():
    with pytest.raises(ValueError, match="k must be <= out_features"):
        MePropLinear(3, 4, 5, optimizer=lambda p: SGD(p, lr=0.1))
    layer = MePropLinear(3, 4, 2, optimizer=lambda p: SGD(p, lr=0.1))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.zeros((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="backward"):
        layer.step()
    with pytest.raises(ValueError, match="bias must be"):
        MePropLinear.from_arrays(np.zeros((4, 3)), np.zeros(3), 2, optimizer=lambda p: SGD(p, lr=0.1))


def test_exported():
    assert sparseopt.meprop.linear_backward is linear_backward
    assert sparseopt.nn.MePropLinear is MePropLinear
