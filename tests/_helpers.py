"""Plain helpers for the sparseopt tests (no pytest hooks, never calls sparseopt).

References here are NumPy only. conftest.py puts this folder on sys.path, so
test modules can ``from _helpers import ...`` under any pytest import mode;
conftest.py also hands the same helpers out as session-scoped fixtures.
"""

from __future__ import annotations

import importlib.util

import numpy as np

HAVE_TORCH = importlib.util.find_spec("torch") is not None

RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

FLOAT_DTYPES = (np.float32, np.float64)
INDEX_DTYPES = (np.int32, np.int64)
ROW_SHAPES = ((), (4,), (3, 2))


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def assert_close(actual, ref, dtype=None, rtol=None, err_msg=""):
    """assert_allclose with the suite's tolerance.

    float32: rtol 1e-6, float64: rtol 1e-12; atol = rtol * max(1, max|ref|).
    """
    actual = np.asarray(actual)
    ref = np.asarray(ref)
    if dtype is None:
        dtype = ref.dtype
    if rtol is None:
        rtol = rtol_for(dtype)
    assert actual.shape == ref.shape, (actual.shape, ref.shape, err_msg)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    atol = rtol * max(1.0, scale)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol, err_msg=err_msg)


def make_step(
    rng,
    num_rows,
    row_shape=(),
    dtype=np.float64,
    index_dtype=np.int64,
    nnz=None,
    touch_rows=None,
    dup=True,
    scale=1.0,
):
    """A random row-sparse gradient (indices, values) that contains duplicates.

    ``touch_rows``: the pool the indices are drawn from (default: all rows).
    With ``dup`` the sample is with replacement and at least one duplicate is
    forced whenever nnz >= 2.
    """
    pool = np.arange(num_rows) if touch_rows is None else np.asarray(touch_rows)
    if nnz is None:
        nnz = int(rng.integers(1, max(2, 2 * len(pool)) + 1))
    if dup:
        idx = rng.choice(pool, size=nnz, replace=True)
        if nnz >= 2:
            idx[-1] = idx[0]  # guarantee a repeat
    else:
        nnz = min(nnz, len(pool))
        idx = rng.choice(pool, size=nnz, replace=False)
    idx = np.ascontiguousarray(idx.astype(index_dtype))
    vals = np.ascontiguousarray(
        (scale * rng.standard_normal((nnz, *row_shape))).astype(dtype)
    )
    return idx, vals


def empty_step(row_shape=(), dtype=np.float64, index_dtype=np.int64):
    return (
        np.zeros((0,), dtype=index_dtype),
        np.zeros((0, *row_shape), dtype=dtype),
    )


def make_steps(
    rng,
    num_rows,
    n_steps,
    row_shape=(),
    dtype=np.float64,
    index_dtype=np.int64,
    empty_every=0,
    hot_rows=None,
):
    """A list of random steps with duplicates.

    Each step touches a random subset of rows (so some rows are skipped in
    some steps); ``empty_every`` > 0 makes every such step an empty gradient;
    ``hot_rows`` rows are never touched when given as an int (they stay
    untouched for the whole sequence, to check laziness).
    """
    steps = []
    allowed = np.arange(num_rows)
    if hot_rows is not None:
        allowed = allowed[hot_rows:]  # rows [0, hot_rows) are never touched
    for s in range(n_steps):
        if empty_every and (s % empty_every == empty_every - 1):
            steps.append(empty_step(row_shape, dtype, index_dtype))
            continue
        k = int(rng.integers(1, len(allowed) + 1))
        pool = rng.choice(allowed, size=k, replace=False)
        nnz = int(rng.integers(1, 2 * k + 2))
        steps.append(make_step(rng, num_rows, row_shape, dtype, index_dtype, nnz, pool))
    return steps


def random_param(rng, num_rows, row_shape, dtype):
    """A C-contiguous standard-normal table of shape (num_rows, *row_shape)."""
    return np.ascontiguousarray(rng.standard_normal((num_rows, *row_shape)).astype(dtype))


def coalesce_ref(indices, values):
    """Plain NumPy coalescing: unique ascending indices, duplicates summed in
    order of appearance (sequentially, in the values' dtype), counts int64."""
    indices = np.asarray(indices)
    values = np.asarray(values)
    uniq = np.unique(indices)
    pos = {int(u): k for k, u in enumerate(uniq)}
    out = np.zeros((len(uniq), *values.shape[1:]), dtype=values.dtype)
    seen = np.zeros(len(uniq), dtype=bool)
    counts = np.zeros(len(uniq), dtype=np.int64)
    for j, i in enumerate(indices.tolist()):
        k = pos[i]
        if seen[k]:
            out[k] = out[k] + values[j]
        else:
            out[k] = values[j]
            seen[k] = True
        counts[k] += 1
    return uniq.astype(indices.dtype), out, counts


def snapshot(opt, param):
    """(param copy, deep copy of state_dict) for 'nothing changed' checks."""
    sd = opt.state_dict()
    sd_copy = {
        "step": sd["step"],
        "hyperparams": dict(sd["hyperparams"]),
        "state": {k: np.array(v, copy=True) for k, v in sd["state"].items()},
    }
    return np.array(param, copy=True), sd_copy


def assert_unchanged(opt, param, snap):
    p0, sd0 = snap
    assert np.array_equal(param, p0, equal_nan=True), "param changed"
    assert opt.param is param
    sd = opt.state_dict()
    assert sd["step"] == sd0["step"], "step counter changed"
    assert set(sd["state"]) == set(sd0["state"])
    for k, v in sd0["state"].items():
        assert sd["state"][k].dtype == v.dtype, k
        assert np.array_equal(sd["state"][k], v, equal_nan=True), f"state {k!r} changed"
    assert set(sd["hyperparams"]) == set(sd0["hyperparams"])
    for k, v in sd0["hyperparams"].items():
        assert _same_value(sd["hyperparams"][k], v), f"hyperparam {k!r} changed"


def _same_value(a, b) -> bool:
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)) or a is None or b is None:
        return a == b
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # non-numeric content: fall back to ==
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def torch_sparse_grad(torch, indices, values, shape):
    """A torch sparse COO gradient, uncoalesced (torch.optim coalesces)."""
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64).reshape(1, -1).copy())
    val = torch.from_numpy(np.array(values, copy=True))
    return torch.sparse_coo_tensor(idx, val, tuple(shape), check_invariants=True)
