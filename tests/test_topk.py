"""sparseopt.topk(x, k, *, largest, magnitude, sorted, num_threads) -> (values, indices).

References: a NumPy lexsort ranking (NaN above every number, ties by lower index), a
stable-argsort ranking for NaN-free data, and torch.topk on tie-free data (torch leaves ties
unordered). Values are compared bit for bit (the sign of zero and NaN payloads included).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseopt

from _helpers import FLOAT_DTYPES, run_cpp

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
OPTIONS = [dict(largest=l, magnitude=m, sorted=s)
           for l, m, s in itertools.product((True, False), repeat=3)]
OPT_IDS = [("max" if o["largest"] else "min") + ("_abs" if o["magnitude"] else "")
           + ("_sorted" if o["sorted"] else "_unsorted") for o in OPTIONS]
SPLIT_MIN_N = 1 << 16  # rows this long may be split across threads and are always sorted


# --------------------------------------------------------------------------- #
# references
# --------------------------------------------------------------------------- #
def rank_order(row, largest, magnitude):
    """Positions of a 1-D row from best to worst: NaN above every number, -0.0 == 0.0,
    ties by lower index (np.lexsort: the last key is the primary one)."""
    row = np.asarray(row, dtype=np.float64)  # exact for float32 too
    score = np.abs(row) if magnitude else row
    nan = np.isnan(score)
    score = np.where(nan, 0.0, score) + 0.0  # + 0.0 turns -0.0 into 0.0
    idx = np.arange(row.size)
    if largest:
        return np.lexsort((idx, -score, ~nan))
    return np.lexsort((idx, score, nan))


def topk_ref(x, k, largest=True, magnitude=False):
    """(values, indices) in sorted order, for 1-D or 2-D x."""
    x2 = x.reshape(-1, x.shape[-1])
    idx = np.stack([rank_order(r, largest, magnitude)[:k] for r in x2]) if len(x2) else \
        np.zeros((0, k), np.int64)
    idx = idx.astype(np.int64).reshape(x.shape[:-1] + (k,))
    return np.take_along_axis(x, idx, axis=-1), idx


def argsort_ref(x, k, largest=True, magnitude=False):
    """A second, independent reference for NaN-free data: a stable argsort keeps equal keys in
    index order."""
    s = np.abs(x) if magnitude else x
    order = np.argsort(-s if largest else s, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order.astype(np.int64)


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def check(x, k, got, largest=True, magnitude=False, sorted=True):
    """got == the lexsort reference: bit for bit when sorted, as a set otherwise."""
    values, indices = got
    out_shape = x.shape[:-1] + (k,)
    assert isinstance(values, np.ndarray) and isinstance(indices, np.ndarray)
    assert values.dtype == x.dtype and indices.dtype == np.int64
    assert values.shape == out_shape and indices.shape == out_shape
    assert values.flags.c_contiguous and indices.flags.c_contiguous
    ref_v, ref_i = topk_ref(x, k, largest, magnitude)
    # values are the elements at the returned positions, bit for bit
    assert np.array_equal(bits(values), bits(np.take_along_axis(x, indices, axis=-1)))
    if sorted or x.shape[-1] >= SPLIT_MIN_N:
        assert np.array_equal(indices, ref_i)
        assert np.array_equal(bits(values), bits(ref_v))
    else:
        assert np.array_equal(np.sort(indices, axis=-1), np.sort(ref_i, axis=-1))


def tie_free(rng, shape, dtype, magnitude):
    """Distinct keys in every row (distinct |x| with magnitude), random order and signs."""
    n = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    base = np.stack([rng.permutation(n) for _ in range(rows)]) + 1.0 if rows else np.zeros((0, n))
    x = base * 0.25  # exact in float32 for n < 2**24
    if magnitude:
        x = x * rng.choice([-1.0, 1.0], size=x.shape)
    else:
        x = x - n / 8.0
    return np.ascontiguousarray(x.reshape(shape).astype(dtype))


def with_ties(rng, shape, dtype):
    """Few distinct values (many ties, both signs of zero)."""
    pool = np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0])
    return np.ascontiguousarray(rng.choice(pool, size=shape).astype(dtype))


def special(rng, shape, dtype):
    """Normal values with NaN (both signs), +-inf, +-0.0 and ties sprinkled in."""
    x = rng.standard_normal(shape)
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])
    mask = rng.random(shape) < 0.2
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    return np.ascontiguousarray(x.astype(dtype))


# --------------------------------------------------------------------------- #
# small examples written out by hand
# --------------------------------------------------------------------------- #
def test_docstring_example():
    x = np.array([[3.0, -7.0, 1.0, 7.0], [0.5, 2.0, 2.0, -1.0]], dtype=np.float32)
    v, i = sparseopt.topk(x, 2)
    assert v.tolist() == [[7.0, 3.0], [2.0, 2.0]] and i.tolist() == [[3, 0], [1, 2]]
    v, i = sparseopt.topk(x, 2, magnitude=True)
    assert v.tolist() == [[-7.0, 7.0], [2.0, 2.0]] and i.tolist() == [[1, 3], [1, 2]]
    v, i = sparseopt.topk(x, 2, largest=False)
    assert v.tolist() == [[-7.0, 1.0], [-1.0, 0.5]] and i.tolist() == [[1, 2], [3, 0]]
    v, i = sparseopt.topk(x, 3, largest=False, magnitude=True)
    assert v.tolist() == [[1.0, 3.0, -7.0], [0.5, -1.0, 2.0]] and i.tolist() == [[2, 0, 1], [0, 3, 1]]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_nan_ranks_above_every_number(dtype):
    nan, inf = np.nan, np.inf
    x = np.array([1.0, nan, -2.0, nan, 3.0, -inf, inf], dtype=dtype)
    v, i = sparseopt.topk(x, 3)
    assert i.tolist() == [1, 3, 6] and np.isnan(v[:2]).all() and v[2] == inf
    v, i = sparseopt.topk(x, 3, largest=False)
    assert i.tolist() == [5, 2, 0]
    v, i = sparseopt.topk(x, 7, largest=False)  # NaNs last, in index order
    assert i.tolist() == [5, 2, 0, 4, 6, 1, 3]
    v, i = sparseopt.topk(x, 7)
    assert i.tolist() == [1, 3, 6, 4, 0, 2, 5]
    # |NaN| is NaN: with magnitude NaN still ranks above inf, and the signed value comes back
    y = np.array([-inf, 2.0, -nan, inf, -3.0], dtype=dtype)
    v, i = sparseopt.topk(y, 3, magnitude=True)
    assert i.tolist() == [2, 0, 3] and np.signbit(v[0]) and v[1] == -inf and v[2] == inf
    v, i = sparseopt.topk(y, 5, largest=False, magnitude=True)
    assert i.tolist() == [1, 4, 0, 3, 2]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_nan_payload_and_sign_are_returned(dtype):
    uint = np.uint32 if dtype == np.float32 else np.uint64
    payload = np.array([0x7FC00123 if dtype == np.float32 else 0x7FF8000000000123], dtype=uint)
    neg = np.array([0xFFC00001 if dtype == np.float32 else 0xFFF8000000000001], dtype=uint)
    x = np.array([1.0, 0.0, 2.0, 0.0], dtype=dtype)
    x.view(uint)[1] = payload[0]
    x.view(uint)[3] = neg[0]
    v, i = sparseopt.topk(x, 2)
    assert i.tolist() == [1, 3]  # both NaNs, equal rank: index order
    assert bits(v).tolist() == [int(payload[0]), int(neg[0])]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_negative_zero_equals_zero(dtype):
    x = np.array([0.0, -0.0, 0.0, -0.0, 1.0, -1.0], dtype=dtype)
    v, i = sparseopt.topk(x, 4)
    assert i.tolist() == [4, 0, 1, 2]
    assert np.signbit(v).tolist() == [False, False, True, False]  # each element's own sign
    v, i = sparseopt.topk(x, 4, largest=False)
    assert i.tolist() == [5, 0, 1, 2]
    v, i = sparseopt.topk(x, 6, largest=False, magnitude=True)
    assert i.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.signbit(v).tolist() == [False, True, False, True, False, True]


def test_ties_lower_index_first():
    x = np.array([1.0, 2.0, 2.0, 1.0, 2.0, 1.0])
    assert sparseopt.topk(x, 3)[1].tolist() == [1, 2, 4]
    assert sparseopt.topk(x, 4)[1].tolist() == [1, 2, 4, 0]
    assert sparseopt.topk(x, 2, largest=False)[1].tolist() == [0, 3]
    y = np.array([-2.0, 2.0, -2.0, 1.0])
    assert sparseopt.topk(y, 3, magnitude=True)[1].tolist() == [0, 1, 2]
    z = np.ones(1000)
    assert sparseopt.topk(z, 5)[1].tolist() == [0, 1, 2, 3, 4]
    assert sparseopt.topk(z, 5, largest=False)[1].tolist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- #
# every option combination against the references
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("opts", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [(1,), (7,), (300,), (5, 1), (4, 9), (6, 257), (3, 2000)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("data", ["normal", "ties", "special"])
def test_matches_reference(rng, opts, dtype, shape, data):
    make = {"normal": lambda: rng.standard_normal(shape).astype(dtype),
            "ties": lambda: with_ties(rng, shape, dtype),
            "special": lambda: special(rng, shape, dtype)}[data]
    x = np.ascontiguousarray(make())
    x0 = x.copy()
    n = shape[-1]
    for k in sorted({1, min(2, n), min(5, n), n // 2 or 1, n - 1 or 1, n}):
        got = sparseopt.topk(x, k, **opts)
        check(x, k, got, **opts)
        if data != "special":  # the argsort reference has no NaN rule
            if opts["sorted"]:
                rv, ri = argsort_ref(x, k, opts["largest"], opts["magnitude"])
                assert np.array_equal(got[1], ri) and np.array_equal(bits(got[0]), bits(rv))
    assert np.array_equal(bits(x), bits(x0)), "x changed"


@pytest.mark.parametrize("opts", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_long_rows_and_split_rows(rng, opts, dtype):
    """Rows long enough to be split across threads, with k small and large."""
    for shape in [(200_003,), (2, 70_001), (5, 66_000)]:
        x = rng.standard_normal(shape).astype(dtype)
        x[..., 1234] = np.nan
        x[..., -3:] = x[..., :3]  # ties across the ends of the row
        for k in (1, 37, 4_999):
            results = [sparseopt.topk(x, k, **opts, num_threads=t) for t in (1, 2, 0)]
            check(x, k, results[0], **opts)
            for v, i in results[1:]:
                assert np.array_equal(i, results[0][1])
                assert np.array_equal(bits(v), bits(results[0][0]))


def test_ascending_and_descending_rows(rng):
    """Worst cases for a heap that fills from the start: every element improves it."""
    for dtype in FLOAT_DTYPES:
        up = np.arange(5000, dtype=dtype)
        for x in (up, up[::-1].copy(), np.tile(up, (3, 1))):
            for opts in OPTIONS:
                check(x, 50, sparseopt.topk(x, 50, **opts), **opts)


def test_all_nan_and_all_inf_rows():
    for dtype in FLOAT_DTYPES:
        for fill in (np.nan, np.inf, -np.inf, 0.0, -0.0):
            x = np.full((3, 700), fill, dtype=dtype)
            x[1, 5] = 1.0
            x[2, ::7] = -0.0
            for opts in OPTIONS:
                for k in (1, 30, 700):
                    check(x, k, sparseopt.topk(x, k, **opts), **opts)


# --------------------------------------------------------------------------- #
# torch.topk on tie-free data
# --------------------------------------------------------------------------- #
@pytest.mark.requires_torch
@pytest.mark.parametrize("largest", [True, False], ids=["max", "min"])
@pytest.mark.parametrize("magnitude", [False, True], ids=["signed", "abs"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [(1,), (1000,), (50, 500), (8, 4096), (2, 100_000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matches_torch(torch, rng, largest, magnitude, dtype, shape):
    x = tie_free(rng, shape, dtype, magnitude)
    t = torch.from_numpy(x)
    key = t.abs() if magnitude else t
    n = shape[-1]
    for k in sorted({1, min(20, n), n}):
        v, i = sparseopt.topk(x, k, largest=largest, magnitude=magnitude)
        tv, ti = torch.topk(key, k, dim=-1, largest=largest, sorted=True)
        assert np.array_equal(i, ti.numpy())
        tvals = torch.gather(t, -1, ti).numpy() if magnitude else tv.numpy()
        assert np.array_equal(v, tvals)
        # unsorted: the same set
        v2, i2 = sparseopt.topk(x, k, largest=largest, magnitude=magnitude, sorted=False)
        assert np.array_equal(np.sort(i2, -1), np.sort(ti.numpy(), -1))


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_nan_and_inf_like_torch(torch, rng, dtype):
    """One NaN and distinct other values per row: no ties, so torch's order is determined."""
    x = tie_free(rng, (6, 300), dtype, False)
    x[np.arange(6), rng.integers(0, 300, 6)] = np.nan
    x[0, 7] = np.inf if not np.isnan(x[0, 7]) else x[0, 7]
    x[1, 9] = -np.inf if not np.isnan(x[1, 9]) else x[1, 9]
    t = torch.from_numpy(x)
    for largest in (True, False):
        for k in (1, 5, 299, 300):
            v, i = sparseopt.topk(x, k, largest=largest)
            tv, ti = torch.topk(t, k, largest=largest)
            assert np.array_equal(i, ti.numpy()), (largest, k)
            assert np.array_equal(v, tv.numpy(), equal_nan=True)


# --------------------------------------------------------------------------- #
# determinism: the same bits for every thread count, and for repeated calls
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("opts", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_thread_count_bit_identity(rng, opts, dtype):
    # (50, 500) and (12, 1000): meProp's shape and one just over the bar where top-k starts
    # a second thread (fewer elements than the other kernels' bar)
    for shape, k in [((300, 1000), 16), ((64, 4096), 32), ((3, 5000), 4999), ((1, 300_000), 100),
                     ((150_000,), 7), ((50, 500), 20), ((12, 1000), 5)]:
        x = special(rng, shape, dtype) if shape[-1] < 10_000 else \
            rng.standard_normal(shape).astype(dtype)
        ref = sparseopt.topk(x, k, **opts, num_threads=1)
        for t in (2, 0, 3, 1):
            v, i = sparseopt.topk(x, k, **opts, num_threads=t)
            assert np.array_equal(i, ref[1]), (shape, t)
            assert np.array_equal(bits(v), bits(ref[0])), (shape, t)


def test_unsorted_order_is_heap_order_and_stable(rng):
    """sorted=False: deterministic, the same k elements, worst-ranked first."""
    x = rng.standard_normal((40, 1000))
    v, i = sparseopt.topk(x, 25, sorted=False)
    v2, i2 = sparseopt.topk(x, 25, sorted=False)
    assert np.array_equal(i, i2) and np.array_equal(v, v2)
    ref_v, ref_i = topk_ref(x, 25)
    assert np.array_equal(np.sort(i, -1), np.sort(ref_i, -1))
    # heap order: position 0 holds the worst-ranked selected element, and every parent ranks
    # behind its children
    assert np.array_equal(v[:, 0], ref_v[:, -1])
    for j in range(1, 25):
        assert (v[:, (j - 1) // 2] <= v[:, j]).all()


# --------------------------------------------------------------------------- #
# shapes, empty inputs, outputs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_zero_rows(dtype):
    x = np.zeros((0, 5), dtype=dtype)
    for k in (1, 5):
        v, i = sparseopt.topk(x, k)
        assert v.shape == (0, k) and i.shape == (0, k)
        assert v.dtype == dtype and i.dtype == np.int64
    with pytest.raises(ValueError, match=r"k.*n = 5"):
        sparseopt.topk(x, 6)


def test_k_equals_n_and_k_one(rng):
    x = rng.standard_normal((4, 33)).astype(np.float32)
    v, i = sparseopt.topk(x, 33)
    assert np.array_equal(i, np.argsort(-x, axis=1, kind="stable"))
    v, i = sparseopt.topk(x, 1)
    assert np.array_equal(i[:, 0], np.argmax(x, axis=1))
    v, i = sparseopt.topk(x, 1, largest=False, magnitude=True)
    assert np.array_equal(i[:, 0], np.argmin(np.abs(x), axis=1))


def test_read_only_input_and_fresh_outputs(rng):
    x = rng.standard_normal((3, 10))
    x.setflags(write=False)
    x0 = x.copy()
    v, i = sparseopt.topk(x, 4)
    assert v.flags.writeable and i.flags.writeable
    assert not np.shares_memory(v, x)
    v[...] = 0
    assert np.array_equal(x, x0)
    # a 1-D view that is contiguous is taken as it is
    row = x[1]
    assert np.array_equal(sparseopt.topk(row, 4)[1], topk_ref(x0[1], 4)[1])


# --------------------------------------------------------------------------- #
# bad input: the right exception, a message saying what to pass
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("k", [0, -1, 11, 2**40])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match=rf"k must be in \[1, n\].*n = 10.*got k = {k}"):
        sparseopt.topk(np.zeros((2, 10)), k)


def test_k_beyond_int64():
    with pytest.raises(ValueError, match=r"k must be in \[1, n\].*n = 10"):
        sparseopt.topk(np.zeros(10), 2**70)


@pytest.mark.parametrize("k", [2.0, "2", None, True, np.float64(2)])
def test_k_not_an_integer(k):
    with pytest.raises(TypeError, match="k must be an integer"):
        sparseopt.topk(np.zeros(10), k)


def test_k_numpy_integer_is_fine():
    assert sparseopt.topk(np.arange(10.0), np.int32(3))[1].tolist() == [9, 8, 7]


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_empty_rows_have_no_topk(shape):
    with pytest.raises(ValueError, match=r"k must be in \[1, n\].*n = 0"):
        sparseopt.topk(np.zeros(shape), 1)


@pytest.mark.parametrize("bad", [
    np.zeros(10, np.int16), np.zeros(10, np.int64), np.zeros(10, np.int32), np.zeros(10, ">f2"),
    np.zeros(10, np.complex128), np.zeros(10, bool), np.zeros(10, ">f4"), np.zeros(10, ">f8"),
], ids=lambda a: a.dtype.str)
def test_wrong_dtype(bad):
    with pytest.raises(TypeError, match=r"x must have dtype float32, float64, float16 or bfloat16.*astype"):
        sparseopt.topk(bad, 2)


@pytest.mark.parametrize("bad", [[1.0, 2.0, 3.0], (1.0, 2.0), 3.0, None],
                         ids=["list", "tuple", "float", "None"])
def test_not_an_array(bad):
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray.*ascontiguousarray"):
        sparseopt.topk(bad, 1)


def test_non_contiguous():
    base = np.arange(40.0).reshape(4, 10)
    for bad in (base[:, ::2], base.T, np.asfortranarray(base), base[::2], base[:, 1:]):
        if bad.flags.c_contiguous:
            continue
        with pytest.raises(TypeError, match=r"x must be C-contiguous.*ascontiguousarray"):
            sparseopt.topk(bad, 2)
    with pytest.raises(TypeError, match="C-contiguous"):
        sparseopt.topk(np.arange(10.0)[::-1], 2)


def test_misaligned():
    buf = np.zeros(8 * 11 + 1, dtype=np.uint8)
    x = np.frombuffer(buf.data, dtype=np.float64, count=10, offset=1)
    assert not x.flags.aligned
    with pytest.raises(TypeError, match="aligned"):
        sparseopt.topk(x, 2)


@pytest.mark.parametrize("shape", [(), (2, 3, 4), (1, 1, 5)])
def test_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"x must be 1-D \(n,\) or 2-D \(rows, n\).*reshape"):
        sparseopt.topk(np.zeros(shape), 1)


@pytest.mark.parametrize("name", ["largest", "magnitude", "sorted"])
@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0])
def test_flags_must_be_bool(name, value):
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        sparseopt.topk(np.zeros(5), 2, **{name: value})
    assert sparseopt.topk(np.arange(5.0), 2, **{name: np.bool_(True)})[0].shape == (2,)


def test_num_threads():
    with pytest.raises(ValueError, match="num_threads"):
        sparseopt.topk(np.zeros(5), 2, num_threads=-1)
    with pytest.raises(TypeError, match="num_threads"):
        sparseopt.topk(np.zeros(5), 2, num_threads=1.5)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        sparseopt.topk(np.zeros(5), 2, False)  # noqa: FBT003


# --------------------------------------------------------------------------- #
# Hypothesis
# --------------------------------------------------------------------------- #
_POOL = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-40,
                  3.4e38, -3.4e38, 1e300])


@settings(max_examples=120)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 6),
    n=st.integers(1, 300),
    k_frac=st.floats(0.0, 1.0),
    one_d=st.booleans(),
    dtype=st.sampled_from(FLOAT_DTYPES),
    largest=st.booleans(),
    magnitude=st.booleans(),
    sorted_=st.booleans(),
    special_frac=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    num_threads=st.sampled_from([0, 1, 2]),
)
def test_hypothesis_matches_reference(seed, rows, n, k_frac, one_d, dtype, largest, magnitude,
                                      sorted_, special_frac, num_threads):
    rng = np.random.default_rng(seed)
    shape = (n,) if one_d else (rows, n)
    with np.errstate(over="ignore"):
        x = rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 1e3])
        mask = rng.random(shape) < special_frac
        x[mask] = rng.choice(_POOL, size=int(mask.sum()))
        x = np.ascontiguousarray(x.astype(dtype))
    k = 1 + int(k_frac * (n - 1))
    opts = dict(largest=largest, magnitude=magnitude, sorted=sorted_)
    got = sparseopt.topk(x, k, **opts, num_threads=num_threads)
    check(x, k, got, **opts)
    one = sparseopt.topk(x, k, **opts, num_threads=1)
    assert np.array_equal(got[1], one[1]) and np.array_equal(bits(got[0]), bits(one[0]))


# --------------------------------------------------------------------------- #
# the C++ API, from C++
# --------------------------------------------------------------------------- #
CPP_TEST = Path(__file__).parent / "cpp" / "topk_api.cpp"


def test_cpp_api(tmp_path):
    """topk_row / topk_rows from a C++ program built against the installed headers."""
    out = run_cpp(CPP_TEST, tmp_path / "topk_api", sparseopt.get_include(), sparseopt.info()["openmp"])
    assert "topk api ok" in out
