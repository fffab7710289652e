"""sparseopt.grad_norm / clip_grad_norm over lists of dense and row-sparse gradients.

References: torch.nn.utils.clip_grad_norm_ on the dense-equivalent gradients (duplicates summed
by np.add.at), and a plain NumPy loop written from the formulas (coalesce in order of
appearance, squares summed in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt

from _helpers import FLOAT_DTYPES, INDEX_DTYPES

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
ORDS = (2.0, np.inf)
# torch takes a float32 norm in float32, sparseopt in float64: they agree to float32 rounding
NORM_RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


def random_grads(rng, dtype, index_dtype, *, num_rows=30, row_shape=(3,), empty=True):
    """A list of gradients: row-sparse with duplicates, an empty row-sparse one, a dense one,
    a 1-D row-sparse one; plus each one's dense shape."""
    grads, shapes = [], []
    for n in (int(rng.integers(5, 60)), 0 if empty else 4, int(rng.integers(1, 20))):
        idx = rng.integers(0, num_rows, size=n).astype(index_dtype)
        if n >= 2:
            idx[-1] = idx[0]  # at least one duplicate
        vals = rng.standard_normal((n, *row_shape)).astype(dtype)
        grads.append((idx, vals))
        shapes.append((num_rows, *row_shape))
    grads.insert(2, rng.standard_normal((7, 5)).astype(dtype))
    shapes.insert(2, (7, 5))
    idx = rng.integers(0, 10, size=9).astype(index_dtype)
    grads.append((idx, rng.standard_normal(9).astype(dtype)))
    shapes.append((10,))
    return grads, shapes


def densify(grad, shape):
    if isinstance(grad, np.ndarray):
        return grad.copy()
    idx, vals = grad
    dense = np.zeros(shape, dtype=vals.dtype)
    np.add.at(dense, idx.astype(np.int64), vals)
    return dense


def copy_grads(grads):
    return [g.copy() if isinstance(g, np.ndarray) else (g[0].copy(), g[1].copy()) for g in grads]


def norm_ref(grads, ord):
    """From the formulas: each row-sparse gradient coalesced (repeats summed in order of
    appearance, in its dtype), then sum of squares (or max magnitude) in float64."""
    total_sq, total_max = 0.0, 0.0
    for g in grads:
        if isinstance(g, np.ndarray):
            rows = [g.reshape(-1)]
        else:
            summed = {}
            for i, r in enumerate(g[0].tolist()):
                summed[r] = g[1][i].copy() if r not in summed else summed[r] + g[1][i]
            rows = [np.asarray(summed[r]).reshape(-1) for r in sorted(summed)]
        for row in rows:
            x = row.astype(np.float64)
            total_sq += float(np.sum(x * x))
            total_max = max([total_max, *np.abs(x).tolist()])
    return np.sqrt(total_sq) if ord == 2 else total_max


def test_duplicates_are_summed_before_the_norm():
    idx = np.array([3, 3], dtype=np.int64)
    vals = np.array([[1.0], [1.0]])
    assert sparseopt.grad_norm([(idx, vals)]) == 2.0  # not sqrt(2): the coalesced row is 2
    assert sparseopt.grad_norm((idx, vals), ord=np.inf) == 2.0
    assert sparseopt.grad_norm([]) == 0.0
    assert sparseopt.grad_norm(np.array([3.0, 4.0])) == 5.0


@pytest.mark.parametrize("ord", ORDS, ids=lambda o: f"ord{o}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_norm_matches_numpy_reference(rng, dtype, index_dtype, ord):
    for case in range(20):
        grads, _ = random_grads(rng, dtype, index_dtype, empty=case % 2 == 0)
        got = sparseopt.grad_norm(grads, ord=ord)
        assert isinstance(got, float)
        np.testing.assert_allclose(got, norm_ref(grads, ord), rtol=1e-12, err_msg=f"case {case}")


@pytest.mark.requires_torch
@pytest.mark.parametrize("ord", ORDS, ids=lambda o: f"ord{o}")
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_clip_matches_torch(torch, rng, dtype, index_dtype, ord):
    rtol = NORM_RTOL[np.dtype(dtype)]
    for case in range(20):
        grads, shapes = random_grads(rng, dtype, index_dtype, empty=case % 2 == 0)
        dense = [densify(g, s) for g, s in zip(grads, shapes)]
        params = []
        for d in dense:
            p = torch.zeros(d.shape, dtype=torch.from_numpy(d).dtype, requires_grad=True)
            p.grad = torch.from_numpy(d.copy())
            params.append(p)
        norm = float(torch.nn.utils.get_total_norm([p.grad for p in params], ord))
        # below, at about and above the norm: clipped, borderline, untouched
        max_norm = norm * (0.3, 1.0, 2.0)[case % 3]
        ref_total = float(torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=ord))
        got = sparseopt.clip_grad_norm(grads, max_norm, ord=ord)
        np.testing.assert_allclose(got, ref_total, rtol=rtol, err_msg=f"case {case}")
        for k, (g, s, p) in enumerate(zip(grads, shapes, params)):
            ours = densify(g, s)
            ref = p.grad.numpy()
            scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
            np.testing.assert_allclose(ours, ref, rtol=4 * rtol, atol=4 * rtol * scale,
                                       err_msg=f"case {case}, grads[{k}]")
            if not isinstance(g, np.ndarray):  # rows the gradient does not list stay zero
                absent = np.setdiff1d(np.arange(s[0]), g[0])
                assert not np.any(ours[absent]) and not np.any(ref[absent]), f"grads[{k}]"


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_clip_scales_by_torchs_coefficient(rng, dtype, index_dtype):
    """Every value is multiplied, in its dtype, by max_norm / (total + 1e-6); nothing else."""
    grads, _ = random_grads(rng, dtype, index_dtype)
    before = copy_grads(grads)
    total = sparseopt.grad_norm(grads)
    max_norm = 0.25 * total
    assert sparseopt.clip_grad_norm(grads, max_norm) == total
    coefficient = np.dtype(dtype).type(max_norm / (total + 1e-6))
    for g, b in zip(grads, before):
        if isinstance(g, np.ndarray):
            assert np.array_equal(g, b * coefficient)
        else:
            assert np.array_equal(g[0], b[0])  # indices never change
            assert np.array_equal(g[1], b[1] * coefficient)
    # at or below max_norm: not a bit changes
    again = copy_grads(grads)
    sparseopt.clip_grad_norm(grads, 2 * total)
    for g, b in zip(grads, again):
        assert np.array_equal(g if isinstance(g, np.ndarray) else g[1],
                              b if isinstance(b, np.ndarray) else b[1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_same_bits_for_any_thread_count(rng, dtype):
    # large enough for both kernels to start threads (parallel_min_work is 32,768 elements)
    idx = rng.integers(0, 5_000, size=40_000).astype(np.int64)
    vals = rng.standard_normal((40_000, 8)).astype(dtype)
    dense = rng.standard_normal((300, 500)).astype(dtype)
    for ord in ORDS:
        norms = {t: sparseopt.grad_norm([(idx, vals), dense], ord, num_threads=t) for t in (1, 2, 3)}
        assert norms[1] == norms[2] == norms[3], norms
    clipped = {}
    for t in (1, 2):
        grads = copy_grads([(idx, vals), dense])
        clipped[t] = (sparseopt.clip_grad_norm(grads, 1.0, num_threads=t), grads)
    assert clipped[1][0] == clipped[2][0]
    assert np.array_equal(clipped[1][1][0][1], clipped[2][1][0][1])
    assert np.array_equal(clipped[1][1][1], clipped[2][1][1])


@pytest.mark.requires_torch
def test_nonfinite_norms_follow_torch(torch):
    for bad in (np.nan, np.inf):
        vals = np.array([[1.0, bad], [2.0, 3.0]])
        idx = np.array([0, 4], dtype=np.int64)
        dense = densify((idx, vals), (5, 2))
        p = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
        p.grad = torch.from_numpy(dense.copy())
        for ord in ORDS:
            assert np.isnan(sparseopt.grad_norm((idx, vals), ord)) == np.isnan(
                float(torch.nn.utils.get_total_norm([p.grad], ord)))
        ref_total = float(torch.nn.utils.clip_grad_norm_([p], 1.0))
        before = vals.copy()
        with pytest.raises(ValueError, match="error_if_nonfinite"):
            sparseopt.clip_grad_norm([(idx, vals)], 1.0, error_if_nonfinite=True)
        assert np.array_equal(vals, before, equal_nan=True)
        got = sparseopt.clip_grad_norm([(idx, vals)], 1.0)
        assert np.array_equal(got, ref_total, equal_nan=True)
        # the rows present match torch's; absent rows are not stored, so they stay 0 where
        # torch's dense zeros times a NaN coefficient turn NaN
        np.testing.assert_array_equal(densify((idx, vals), (5, 2))[idx], p.grad.numpy()[idx])
        assert not np.any(densify((idx, vals), (5, 2))[[1, 2, 3]])


def bad_calls(rng):
    """(description, grads, kwargs, exception, words the message must contain)."""
    ok_idx = np.array([0, 2, 2], dtype=np.int64)
    ok_vals = rng.standard_normal((3, 2))
    read_only = ok_vals.copy()
    read_only.flags.writeable = False
    return [
        ("negative index", [(np.array([1, -1, 1], dtype=np.int64), ok_vals)], {}, IndexError,
         ["grads[1]", "indices[1] = -1"]),
        ("float indices", [(ok_idx.astype(np.float64), ok_vals)], {}, TypeError,
         ["grads[1]", "indices", "int64"]),
        ("int values", [(ok_idx, np.ones((3, 2), dtype=np.int64))], {}, TypeError,
         ["grads[1]", "values", "float32"]),
        ("short values", [(ok_idx, ok_vals[:2])], {}, ValueError, ["grads[1]", "values", "shape"]),
        ("strided values", [(ok_idx[:2], ok_vals[::2])], {}, TypeError,
         ["grads[1]", "C-contiguous"]),
        ("strided dense", [np.ones((4, 4))[:, ::2]], {}, TypeError, ["grads[1]", "C-contiguous"]),
        ("read-only values", [(ok_idx, read_only)], {}, TypeError, ["grads[1]", "read-only"]),
        ("a list pair", [[ok_idx, ok_vals.copy()]], {}, TypeError, ["grads[1]", "tuple"]),
        ("a triple", [(ok_idx, ok_vals.copy(), ok_idx)], {}, ValueError, ["grads[1]", "pair"]),
        ("int dense", [np.ones(3, dtype=np.int32)], {}, TypeError, ["grads[1]", "grad", "float"]),
        ("ord 1", [], {"ord": 1}, ValueError, ["ord", "inf"]),
        ("negative max_norm", [], {"max_norm": -1.0}, ValueError, ["max_norm", ">= 0"]),
        ("NaN max_norm", [], {"max_norm": np.nan}, ValueError, ["max_norm"]),
        ("num_threads", [], {"num_threads": -1}, ValueError, ["num_threads"]),
    ]


@pytest.mark.parametrize("case", range(14))
def test_bad_input_scales_nothing(rng, case):
    what, extra, kwargs, error, words = bad_calls(rng)[case]
    # a valid gradient first, far above max_norm, so that a partial run would scale it
    good_idx = np.array([1, 1, 4], dtype=np.int32)
    good_vals = 100 * rng.standard_normal((3, 5)).astype(np.float32)
    grads = [(good_idx, good_vals), *extra]
    before = copy_grads([g for g in grads if isinstance(g, (tuple, np.ndarray))])
    args = {"max_norm": 1.0, **kwargs}
    with pytest.raises(error) as info:
        sparseopt.clip_grad_norm(grads, **args)
    for word in words:
        assert word in str(info.value), (what, str(info.value))
    assert np.array_equal(good_vals, before[0][1]), what
    assert np.array_equal(good_idx, before[0][0]), what
    for g, b in zip(grads[1:], before[1:]):
        for x, y in zip(g if isinstance(g, tuple) else (g,), b if isinstance(b, tuple) else (b,)):
            assert np.array_equal(x, y), what
