"""Sparse x dense: sparseopt.gather_sum / gather_sum_backward (EmbeddingBag) and
csr_matmul / csr_matmul_backward (SciPy CSR @ dense).

References: a plain NumPy loop (each bag's terms added in order, so unweighted sums match
bit for bit), torch.nn.functional.embedding_bag (forward and autograd backward, dense and
sparse=True) and SciPy's ``x @ table`` / ``x.T @ grad_out``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseopt
from sparseopt.optim import Adam

from _helpers import FLOAT_DTYPES, INDEX_DTYPES, ROW_SHAPES, assert_close, coalesce_ref

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
RS_IDS = lambda s: f"row{s}"  # noqa: E731


# --------------------------------------------------------------------------- #
# NumPy references
# --------------------------------------------------------------------------- #
def ref_gather(table, indptr, indices, weights=None, mode="sum"):
    """Bag b's first term, then each next term added, in table.dtype; mean divides by len."""
    out = np.zeros((len(indptr) - 1, *table.shape[1:]), dtype=table.dtype)
    for b in range(len(indptr) - 1):
        lo, hi = int(indptr[b]), int(indptr[b + 1])
        acc = None
        for p in range(lo, hi):
            term = table[indices[p]] if weights is None else weights[p] * table[indices[p]]
            acc = np.array(term, copy=True) if acc is None else acc + term
        if acc is not None:
            out[b] = acc / table.dtype.type(hi - lo) if mode == "mean" else acc
    return out


def ref_terms(grad_out, indptr, indices, weights=None, mode="sum"):
    """The per-index terms of the table's gradient: grad_out[bag of p] * w_p (or / len)."""
    terms = np.zeros((len(indices), *grad_out.shape[1:]), dtype=grad_out.dtype)
    for b in range(len(indptr) - 1):
        lo, hi = int(indptr[b]), int(indptr[b + 1])
        for p in range(lo, hi):
            if mode == "mean":
                terms[p] = grad_out[b] / grad_out.dtype.type(hi - lo)
            elif weights is None:
                terms[p] = grad_out[b]
            else:
                terms[p] = weights[p] * grad_out[b]
    return terms


def ref_backward(grad_out, indptr, indices, weights=None, mode="sum"):
    """(rows, values): the terms coalesced in order of appearance (coalesce_ref)."""
    rows, values, _ = coalesce_ref(indices, ref_terms(grad_out, indptr, indices, weights, mode))
    return rows, values


def densify(rows, values, num_rows):
    dense = np.zeros((num_rows, *values.shape[1:]), dtype=values.dtype)
    dense[np.asarray(rows, dtype=np.int64)] = values
    return dense


def make_bags(rng, num_bags, num_rows, max_len=6, index_dtype=np.int64, empty_every=3,
              zipf=False):
    """indptr/indices with empty bags, and repeats within and across bags."""
    lengths = rng.integers(0, max_len + 1, size=num_bags)
    if empty_every:
        lengths[::empty_every] = 0
    indptr = np.zeros(num_bags + 1, dtype=index_dtype)
    np.cumsum(lengths, out=indptr[1:])
    n = int(indptr[-1])
    if zipf:
        indices = (rng.zipf(1.3, size=n) - 1) % num_rows
    else:
        indices = rng.integers(0, num_rows, size=n)
    if n >= 3:
        indices[1] = indices[0]  # a repeat (within a bag or across two)
        indices[-1] = indices[0]
    return indptr, np.ascontiguousarray(indices.astype(index_dtype))


def rand(rng, shape, dtype):
    return np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))


# --------------------------------------------------------------------------- #
# small exact examples
# --------------------------------------------------------------------------- #
def test_small_example():
    table = np.arange(12, dtype=np.float64).reshape(6, 2)
    indptr = np.array([0, 3, 3, 5], dtype=np.int64)
    indices = np.array([1, 4, 1, 0, 5], dtype=np.int64)
    out = sparseopt.gather_sum(table, indptr, indices)
    assert np.array_equal(out, [[2 + 8 + 2, 3 + 9 + 3], [0, 0], [0 + 10, 1 + 11]])
    out = sparseopt.gather_sum(table, indptr, indices, mode="mean")
    assert np.array_equal(out, [[4, 5], [0, 0], [5, 6]])
    w = np.array([1.0, 2.0, -1.0, 0.5, 3.0])
    out = sparseopt.gather_sum(table, indptr, indices, w)
    assert np.array_equal(out, [[2 + 16 - 2, 3 + 18 - 3], [0, 0], [0 + 30, 0.5 + 33]])

    grad_out = np.array([[1.0, 10.0], [7.0, 7.0], [100.0, 1000.0]])
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=6)
    assert rows.dtype == np.int64 and np.array_equal(rows, [0, 1, 4, 5])
    assert np.array_equal(values, [[100, 1000], [2, 20], [1, 10], [100, 1000]])
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, w, num_rows=6)
    assert np.array_equal(values, [[50, 500], [0, 0], [2, 20], [300, 3000]])
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, mode="mean", num_rows=6)
    assert np.array_equal(values, [[50, 500], [2 / 3, 20 / 3], [1 / 3, 10 / 3], [50, 500]])


# Grouping the lookups by row (CoalescePlan, the sorted layout and the fused step's plan) takes
# one of four paths by how large the indices are: a counting sort (small tables), a radix sort
# of (index, bag, position) words, of (index, position) words with each bag looked up after,
# or a comparison sort (indices too large to pack). The same result from each.
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("scale", ["counted", "bag in key", "bag looked up", "compared"])
@pytest.mark.parametrize("weighted", [False, True])
def test_backward_groups_alike_on_every_sort_path(rng, index_dtype, scale, weighted):
    top = {"counted": 1000, "bag in key": 3_000_000, "bag looked up": 2**50, "compared": 2**60}[scale]
    if top > np.iinfo(index_dtype).max:
        pytest.skip("indices this large need int64")
    num_bags, width = 700, 3  # 700 bags: 10 bits of bag, about 12 of position
    indptr, indices = make_bags(rng, num_bags, 2, max_len=12, index_dtype=index_dtype)
    # rows spread up to `top`, with repeats within and across bags
    pool = np.unique(rng.integers(0, top, size=len(indices) // 3 + 1, dtype=np.int64))
    indices = np.ascontiguousarray(rng.choice(pool, size=len(indices)).astype(index_dtype))
    grad_out = rand(rng, (num_bags, width), np.float64)
    weights = rand(rng, (len(indices),), np.float64) if weighted else None
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights,
                                                 num_rows=int(np.iinfo(index_dtype).max))
    want_rows, want_values = ref_backward(grad_out, indptr, indices, weights)
    assert rows.dtype == index_dtype and np.array_equal(rows, want_rows)
    assert values.tobytes() == want_values.tobytes()  # each row's terms added in order


# From 8,192 lookups up (two of CoalescePlan::range_min_share) the radix paths group the words
# on a team of up to four threads, each on a range of index values that splits at quantiles of
# a sample (group_by_range); beyond four threads with 16,384 lookups each (team_min_share), or
# where one range would hold most lookups, on a team of threads that each take a share of the
# words (group_by_team). Both give the plan of one thread: the same rows and bits for any thread
# count, for the bag-carrying plan of the backward (and the fused step) and the plain one of a
# row-sparse gradient alike.
def check_grouping_on_threads(rng, indptr, indices, index_dtype, threads):
    n = len(indices)
    grad_out = rand(rng, (len(indptr) - 1, 3), np.float64)
    want_rows, want_values = ref_backward(grad_out, indptr, indices)
    values = rand(rng, (n, 2), np.float64)
    want = coalesce_ref(indices, values)
    for t in threads:
        rows, got = sparseopt.gather_sum_backward(grad_out, indptr, indices, num_threads=t,
                                                  num_rows=int(np.iinfo(index_dtype).max))
        assert np.array_equal(rows, want_rows) and got.tobytes() == want_values.tobytes(), t
        coalesced = sparseopt.coalesce(indices, values, num_threads=t)
        for a, b in zip(coalesced, want):
            assert np.array_equal(a, b) and a.tobytes() == np.asarray(b, dtype=a.dtype).tobytes(), t


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("scale", ["bag in key", "bag looked up"])
@pytest.mark.parametrize("zipf", [False, True], ids=["uniform", "zipf"])
def test_grouping_on_a_team_of_threads_matches_the_reference(rng, index_dtype, scale, zipf):
    top = {"bag in key": 3_000_000, "bag looked up": 2**47}[scale]  # 2**47: no room for the bag
    if top > np.iinfo(index_dtype).max:
        pytest.skip("indices this large need int64")
    indptr, indices = make_bags(rng, 20000, 2, max_len=14, index_dtype=index_dtype)
    n = len(indices)
    assert n >= 5 * 16384  # 5 threads: a team of shares; 2 to 4: ranges (uniform, Zipf)
    pool = np.unique(rng.integers(0, top, size=n // 3, dtype=np.int64))
    pick = (rng.zipf(1.2, size=n) - 1) % len(pool) if zipf else rng.integers(0, len(pool), size=n)
    indices = np.ascontiguousarray(pool[pick].astype(index_dtype))
    check_grouping_on_threads(rng, indptr, indices, index_dtype, (1, 2, 3, 4, 5))


# The ranges of group_by_range as lookups skew: a hot row with nearly half of them (its
# copies go to one range; the ranges beside it get fewer words, or none), a hot row with nearly
# all of them and a single row (no split evens the ranges: one thread groups them), rows in one
# narrow band, and lookups barely over the ranges' threshold (two ranges of about 4,096 words).
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("lookups", ["half on one row", "hot row", "one row", "narrow band", "zipf",
                                     "just enough"])
def test_grouping_on_ranges_of_skewed_lookups_matches_the_reference(rng, index_dtype, lookups):
    num_bags = 4000
    lengths = rng.integers(1, 12, size=num_bags)
    lengths[::5] = 0
    indptr = np.zeros(num_bags + 1, dtype=index_dtype)
    np.cumsum(lengths, out=indptr[1:])
    n = int(indptr[-1])
    if lookups == "just enough":
        indptr = np.minimum(indptr, 8192).astype(index_dtype)
        n = 8192
    else:
        assert n >= 4 * 4096  # four ranges on four threads
    top = 3_000_000  # above the counting path's reach (a table of up to max(2,048, n) rows)
    spread = rng.integers(0, top, size=n)
    if lookups == "half on one row":
        indices = np.where(rng.random(n) < 0.45, 1_234_567, spread)
    elif lookups == "hot row":
        indices = np.where(rng.random(n) < 0.95, 123_457, spread)
    elif lookups == "one row":
        indices = np.full(n, 2_000_000)
    elif lookups == "narrow band":
        indices = 1_000_000 + rng.integers(0, 300, size=n)
    elif lookups == "zipf":
        indices = (rng.zipf(1.1, size=n) - 1) % top
    else:
        indices = spread
    indices = np.ascontiguousarray(indices.astype(index_dtype))
    check_grouping_on_threads(rng, indptr, indices, index_dtype, (1, 2, 3, 4))


# The backward lays its terms out in one of two ways, by the ratio of num_rows to the number
# of indices (see GatherPlan): "blocked" when num_rows <= len(indices), else "sorted".
# Passing a larger num_rows than the indices need switches to the sorted layout.
LAYOUT_ROWS = {"blocked": lambda num_rows, n: num_rows, "sorted": lambda num_rows, n: 10 * n + 1}


@pytest.mark.parametrize("layout", sorted(LAYOUT_ROWS))
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=RS_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_matches_numpy_reference(rng, case, index_dtype, dtype, row_shape, layout):
    num_rows, num_bags = 40, 30
    table = rand(rng, (num_rows, *row_shape), dtype)
    indptr, indices = make_bags(rng, num_bags, num_rows, index_dtype=index_dtype)
    weights = rand(rng, len(indices), dtype) if case == "weighted" else None
    mode = "mean" if case == "mean" else "sum"
    snapshot = [np.array(a, copy=True) for a in (table, indptr, indices)]

    out = sparseopt.gather_sum(table, indptr, indices, weights, mode=mode)
    ref = ref_gather(table, indptr, indices, weights, mode)
    assert out.dtype == table.dtype and out.shape == (num_bags, *row_shape)
    if weights is None:
        assert np.array_equal(out, ref)  # same additions in the same order
    else:
        assert_close(out, ref)

    grad_out = rand(rng, (num_bags, *row_shape), dtype)
    assert len(indices) >= num_rows  # so that "blocked" is what it says
    backward_rows = LAYOUT_ROWS[layout](num_rows, len(indices))
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                 num_rows=backward_rows)
    ref_rows, ref_values = ref_backward(grad_out, indptr, indices, weights, mode)
    assert rows.dtype == np.dtype(index_dtype) and values.dtype == np.dtype(dtype)
    assert np.array_equal(rows, ref_rows)
    assert values.shape == (len(rows), *row_shape)
    if weights is None:
        assert np.array_equal(values, ref_values)
    else:
        assert_close(values, ref_values)
    # np.add.at of the terms: the dense gradient, touched rows only
    dense = np.zeros_like(table)
    np.add.at(dense, indices.astype(np.int64), ref_terms(grad_out, indptr, indices, weights, mode))
    assert_close(densify(rows, values, num_rows), dense)
    for a, b in zip((table, indptr, indices), snapshot):
        assert np.array_equal(a, b)  # inputs untouched


def test_sum_order_is_order_of_appearance():
    big = np.float32(1e8)
    table = np.array([[big], [1.0], [-big]], dtype=np.float32)
    # ((big + 1) + -big) rounds to 0 in order; any other order gives 1
    indptr = np.array([0, 3], dtype=np.int32)
    out = sparseopt.gather_sum(table, indptr, np.array([0, 1, 2], dtype=np.int32))
    assert out[0, 0] == 0.0
    out = sparseopt.gather_sum(table, indptr, np.array([1, 0, 2], dtype=np.int32))
    assert out[0, 0] == 0.0 and (np.float32(1.0) + big) + -big == 0.0
    # backward: row 0 receives grad_out[0] + grad_out[1] + grad_out[2] in bag order
    grad_out = np.array([[big], [1.0], [-big]], dtype=np.float32)
    rows, values = sparseopt.gather_sum_backward(
        grad_out, np.array([0, 1, 2, 3]), np.array([0, 0, 0]), num_rows=1)
    assert values[0, 0] == 0.0


# --------------------------------------------------------------------------- #
# empty inputs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=RS_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_zero_bags_and_all_empty(index_dtype, row_shape, mode):
    table = np.ones((5, *row_shape), dtype=np.float32)
    grad_none = np.zeros((0, *row_shape), dtype=np.float32)
    no_indices = np.zeros(0, dtype=index_dtype)
    out = sparseopt.gather_sum(table, np.zeros(1, dtype=index_dtype), no_indices, mode=mode)
    assert out.shape == (0, *row_shape) and out.dtype == np.float32
    rows, values = sparseopt.gather_sum_backward(grad_none, np.zeros(1, dtype=index_dtype),
                                                 no_indices, mode=mode, num_rows=5)
    assert rows.shape == (0,) and rows.dtype == np.dtype(index_dtype)
    assert values.shape == (0, *row_shape) and values.dtype == np.float32

    indptr = np.zeros(4, dtype=index_dtype)  # three empty bags
    out = np.full((3, *row_shape), np.nan, dtype=np.float32)
    assert sparseopt.gather_sum(table, indptr, no_indices, mode=mode, out=out) is out
    assert np.array_equal(out, np.zeros_like(out))
    rows, values = sparseopt.gather_sum_backward(np.ones((3, *row_shape), np.float32), indptr,
                                                 no_indices, mode=mode, num_rows=5)
    assert rows.shape == (0,) and values.shape == (0, *row_shape)


def test_empty_table_and_zero_width_rows():
    out = sparseopt.gather_sum(np.zeros((0, 3)), np.zeros(3, np.int64), np.zeros(0, np.int64))
    assert np.array_equal(out, np.zeros((2, 3)))
    table = np.zeros((4, 0), dtype=np.float64)
    out = sparseopt.gather_sum(table, np.array([0, 2]), np.array([3, 1]))
    assert out.shape == (1, 0)
    rows, values = sparseopt.gather_sum_backward(np.zeros((1, 0)), np.array([0, 2]),
                                                 np.array([3, 1]), num_rows=4)
    assert np.array_equal(rows, [1, 3]) and values.shape == (2, 0)


def test_out_is_written_in_place_and_read_only_inputs(rng):
    table = rand(rng, (10, 3), np.float64)
    indptr, indices = make_bags(rng, 8, 10)
    for a in (table, indptr, indices):
        a.setflags(write=False)  # inputs are only read
    out = np.empty((8, 3))
    assert sparseopt.gather_sum(table, indptr, indices, out=out) is out
    assert np.array_equal(out, ref_gather(table, indptr, indices))
    fresh = sparseopt.gather_sum(table, indptr, indices)
    assert fresh is not out and np.array_equal(fresh, out)


# The forward picks its prefetch hints by the repeats among its first 2,048 lookups
# (detail::mostly_repeats, tested from C++ in tests/cpp/prefetch_hints.cpp): two per row for
# rows that rarely repeat, one for mostly cached ones. Hints never change the sums.
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + ("float16",), ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("lookups", ["distinct rows", "a few hot rows"])
def test_both_hint_schemes_match_the_reference(rng, dtype, weighted, lookups):
    num_rows, num_bags = 50_000, 300
    indptr = np.arange(0, 32 * num_bags + 1, 32, dtype=np.int64)
    n = int(indptr[-1])
    if lookups == "distinct rows":
        indices = rng.permutation(num_rows)[:n]
    else:  # four rows in five from a set of 40
        indices = np.where(rng.random(n) < 0.8, rng.integers(0, 40, n), rng.integers(0, num_rows, n))
    table = rand(rng, (num_rows, 24), np.float64).astype(dtype)
    weights = rand(rng, n, np.float32 if dtype == "float16" else dtype) if weighted else None
    out = sparseopt.gather_sum(table, indptr, indices, weights, num_threads=2)
    wide = table.astype(np.float64 if dtype == np.float64 else np.float32)
    ref = ref_gather(wide, indptr, indices, weights)
    if weighted:
        assert_close(out, ref)
    else:
        assert np.array_equal(out, ref)  # the same additions in the same order


# --------------------------------------------------------------------------- #
# threads: the same bits for any count
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("layout", sorted(LAYOUT_ROWS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_thread_count_bit_identical(rng, dtype, case, layout):
    # Zipf indices: a few rows with thousands of terms; thousands of rows (many row blocks)
    num_rows, num_bags = 3000, 2500
    table = rand(rng, (num_rows, 16), dtype)
    indptr, indices = make_bags(rng, num_bags, num_rows, max_len=40, zipf=True)
    weights = rand(rng, len(indices), dtype) if case == "weighted" else None
    mode = "mean" if case == "mean" else "sum"
    grad_out = rand(rng, (num_bags, 16), dtype)
    backward_rows = LAYOUT_ROWS[layout](num_rows, len(indices))
    outs = [sparseopt.gather_sum(table, indptr, indices, weights, mode=mode, num_threads=t)
            for t in (1, 2, 0, 3)]
    grads = [sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                           num_rows=backward_rows, num_threads=t)
             for t in (1, 2, 0, 3)]
    for out, (rows, values) in zip(outs[1:], grads[1:]):
        assert np.array_equal(out, outs[0])
        assert np.array_equal(rows, grads[0][0]) and np.array_equal(values, grads[0][1])
    if weights is None:
        assert np.array_equal(outs[0], ref_gather(table, indptr, indices, None, mode))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_layouts_give_the_same_bits(rng, dtype, case):
    """The blocked layout starts each row at -0.0 and adds every term; the sorted one copies
    the first term and adds the rest: the same bits, signed zeros, infinities and NaN included."""
    num_rows, num_bags = 5000, 3000
    indptr, indices = make_bags(rng, num_bags, num_rows, max_len=12, zipf=True)
    assert len(indices) >= num_rows
    weights = rand(rng, len(indices), dtype) if case == "weighted" else None
    if weights is not None:
        weights[::7] = -0.0
    mode = "mean" if case == "mean" else "sum"
    grad_out = rand(rng, (num_bags, 8), dtype)
    grad_out[::5] = -0.0
    grad_out[3::11, 0] = np.inf
    grad_out[4::13, 1] = -np.inf
    grad_out[5::17, 2] = np.nan
    blocked = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                            num_rows=num_rows)
    sorted_ = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                            num_rows=10 * len(indices) + 1)
    assert np.array_equal(blocked[0], sorted_[0])
    assert blocked[1].tobytes() == sorted_[1].tobytes()
    negative_zero = (blocked[1] == 0) & np.signbit(blocked[1])
    assert negative_zero.any() and np.isnan(blocked[1]).any()  # the cases were there


# --------------------------------------------------------------------------- #
# torch.nn.functional.embedding_bag
# --------------------------------------------------------------------------- #
def _torch_bag(torch, weight, indptr, indices, weights, mode, sparse=False):
    return torch.nn.functional.embedding_bag(
        torch.from_numpy(indices), weight, torch.from_numpy(indptr), mode=mode, sparse=sparse,
        per_sample_weights=None if weights is None else torch.from_numpy(weights),
        include_last_offset=True)


@pytest.mark.requires_torch
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=RS_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", ["sum", "weighted", "mean"])
def test_matches_torch_embedding_bag(torch, rng, case, index_dtype, dtype, row_shape):
    num_rows, num_bags = 50, 40
    width = int(np.prod(row_shape))
    table = rand(rng, (num_rows, *row_shape), dtype)
    indptr, indices = make_bags(rng, num_bags, num_rows, index_dtype=index_dtype)
    weights = rand(rng, len(indices), dtype) if case == "weighted" else None
    mode = "mean" if case == "mean" else "sum"
    grad_out = rand(rng, (num_bags, *row_shape), dtype)

    out = sparseopt.gather_sum(table, indptr, indices, weights, mode=mode)
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                 num_rows=num_rows)
    g = torch.from_numpy(grad_out.reshape(num_bags, width))
    for sparse in (False, True):
        weight = torch.tensor(table.reshape(num_rows, width), requires_grad=True)
        t_out = _torch_bag(torch, weight, indptr, indices, weights, mode, sparse)
        assert_close(out, t_out.detach().numpy().reshape(out.shape))
        t_out.backward(g)
        if sparse:
            grad = weight.grad.coalesce()
            t_rows = grad.indices()[0].numpy()
            t_values = grad.values().numpy()
            assert np.array_equal(rows, t_rows)
            assert_close(values, t_values.reshape(values.shape))
        else:
            assert_close(densify(rows, values, num_rows), weight.grad.numpy().reshape(table.shape))


@pytest.mark.requires_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
def test_sparse_adam_end_to_end_matches_torch(torch, rng, dtype):
    """gather_sum_backward -> sparseopt Adam equals embedding_bag(sparse=True) -> SparseAdam."""
    num_rows, width, num_bags = 60, 4, 16
    table = rand(rng, (num_rows, width), dtype)
    param = table.copy()
    opt = Adam(param, lr=0.05)  # lazy, global bias correction: SparseAdam
    weight = torch.nn.Parameter(torch.from_numpy(table.copy()))
    t_opt = torch.optim.SparseAdam([weight], lr=0.05)
    for _ in range(5):
        indptr, indices = make_bags(rng, num_bags, num_rows, max_len=8)
        target = rand(rng, (num_bags, width), dtype)
        # loss = sum(out * target): d loss / d out = target
        out = sparseopt.gather_sum(param, indptr, indices)
        rows, values = sparseopt.gather_sum_backward(target, indptr, indices, num_rows=num_rows)
        opt.step(rows, values)

        t_opt.zero_grad()
        t_out = _torch_bag(torch, weight, indptr, indices, None, "sum", sparse=True)
        assert_close(out, t_out.detach().numpy())
        (t_out * torch.from_numpy(target)).sum().backward()
        t_opt.step()
    assert_close(param, weight.detach().numpy(), rtol=1e-5 if dtype == np.float32 else 1e-11)


# --------------------------------------------------------------------------- #
# SciPy CSR
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def scipy_sparse():
    return pytest.importorskip("scipy.sparse")


def make_csr(scipy_sparse, rng, num_bags, num_rows, dtype, index_dtype, kind="csr_array"):
    """A CSR matrix with empty rows and repeated columns, kept exactly as built."""
    indptr, indices = make_bags(rng, num_bags, num_rows, index_dtype=index_dtype)
    data = rand(rng, len(indices), dtype)
    cls = getattr(scipy_sparse, kind)
    x = cls((data, indices, indptr), shape=(num_bags, num_rows))
    x.indices, x.indptr = indices, indptr  # SciPy may have narrowed the index dtype
    assert x.indices.dtype == np.dtype(index_dtype) and x.data.dtype == np.dtype(dtype)
    return x


@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=RS_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("kind", ["csr_array", "csr_matrix"])
def test_csr_matmul_matches_scipy(scipy_sparse, rng, kind, index_dtype, dtype, row_shape):
    num_bags, num_rows = 30, 45
    width = int(np.prod(row_shape))
    x = make_csr(scipy_sparse, rng, num_bags, num_rows, dtype, index_dtype, kind)
    table = rand(rng, (num_rows, *row_shape), dtype)
    out = sparseopt.csr_matmul(x, table)
    ref = np.asarray(x @ table.reshape(num_rows, width)).reshape(num_bags, *row_shape)
    assert out.dtype == np.dtype(dtype) and out.shape == (num_bags, *row_shape)
    assert_close(out, ref)

    grad_out = rand(rng, (num_bags, *row_shape), dtype)
    rows, values = sparseopt.csr_matmul_backward(x, grad_out)
    ref_dense = np.asarray(x.T @ grad_out.reshape(num_bags, width)).reshape(num_rows, *row_shape)
    assert rows.dtype == np.dtype(index_dtype)
    assert np.array_equal(rows, np.unique(x.indices))
    assert_close(values, ref_dense[rows])
    assert_close(densify(rows, values, num_rows), ref_dense)  # untouched rows are zero


def test_csr_uses_the_arrays_in_place(scipy_sparse, rng):
    """No copies: changing x.data after the call changes the next result accordingly."""
    x = make_csr(scipy_sparse, rng, 5, 7, np.float64, np.int32)
    table = rand(rng, (7, 2), np.float64)
    first = sparseopt.csr_matmul(x, table)
    x.data *= 2.0
    assert_close(sparseopt.csr_matmul(x, table), 2.0 * first)


def test_csr_unsorted_and_duplicate_columns(scipy_sparse, rng):
    data = np.array([1.0, 2.0, 3.0, 4.0])
    indices = np.array([3, 0, 3, 1], dtype=np.int64)  # row 0: columns 3, 0, 3 (repeat, unsorted)
    indptr = np.array([0, 3, 4], dtype=np.int64)
    x = scipy_sparse.csr_array((data, indices, indptr), shape=(2, 4))
    table = rand(rng, (4, 3), np.float64)
    assert_close(sparseopt.csr_matmul(x, table), x @ table)
    g = rand(rng, (2, 3), np.float64)
    rows, values = sparseopt.csr_matmul_backward(x, g)
    assert np.array_equal(rows, [0, 1, 3])
    assert_close(values, (x.T @ g)[[0, 1, 3]])


def test_csr_one_dimensional_table(scipy_sparse, rng):
    x = make_csr(scipy_sparse, rng, 6, 9, np.float32, np.int64)
    table = rand(rng, 9, np.float32)
    assert_close(sparseopt.csr_matmul(x, table), x @ table)
    rows, values = sparseopt.csr_matmul_backward(x, rand(rng, 6, np.float32))
    assert values.shape == rows.shape


def test_package_import_does_not_import_scipy():
    import subprocess
    import sys

    code = "import sys, sparseopt; print('scipy' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- #
# Hypothesis
# --------------------------------------------------------------------------- #
_MAGNITUDES = np.array([1.0, 1e-8, 1e8, 3.0, 0.5])


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_bags=st.integers(0, 25),
    num_rows=st.integers(1, 20),
    max_len=st.integers(0, 8),
    row_shape=st.sampled_from(ROW_SHAPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    case=st.sampled_from(["sum", "weighted", "mean"]),
    num_threads=st.sampled_from([0, 1, 2]),
    extra_rows=st.sampled_from([0, 0, 1, 100]),
)
def test_hypothesis_matches_reference(seed, num_bags, num_rows, max_len, row_shape, dtype,
                                      index_dtype, case, num_threads, extra_rows):
    rng = np.random.default_rng(seed)
    indptr, indices = make_bags(rng, num_bags, num_rows, max_len, index_dtype, empty_every=0)
    # mixed magnitudes and signs make the summation order visible in the bits
    mags = rng.choice(_MAGNITUDES, size=(num_rows, *row_shape))
    table = (mags * rng.choice([-1.0, 1.0], size=mags.shape) * rng.random(mags.shape)).astype(dtype)
    weights = rand(rng, len(indices), dtype) if case == "weighted" else None
    mode = "mean" if case == "mean" else "sum"
    out = sparseopt.gather_sum(table, indptr, indices, weights, mode=mode, num_threads=num_threads)
    ref = ref_gather(table, indptr, indices, weights, mode)
    grad_out = (rng.choice(_MAGNITUDES, size=(num_bags, *row_shape))
                * rng.standard_normal((num_bags, *row_shape))).astype(dtype)
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                 num_rows=num_rows + extra_rows,
                                                 num_threads=num_threads)
    ref_rows, ref_values = ref_backward(grad_out, indptr, indices, weights, mode)
    assert np.array_equal(rows, ref_rows)
    if weights is None:
        assert np.array_equal(out, ref) and np.array_equal(values, ref_values)
    else:
        assert_close(out, ref)
        assert_close(values, ref_values)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_bags=st.integers(0, 20),
    num_rows=st.integers(1, 30),
    width=st.integers(1, 5),
    dtype=st.sampled_from(FLOAT_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
)
def test_hypothesis_csr_matches_scipy(scipy_sparse, seed, num_bags, num_rows, width, dtype, index_dtype):
    rng = np.random.default_rng(seed)
    x = make_csr(scipy_sparse, rng, num_bags, num_rows, dtype, index_dtype)
    table = rand(rng, (num_rows, width), dtype)
    assert_close(sparseopt.csr_matmul(x, table), x @ table)
    grad_out = rand(rng, (num_bags, width), dtype)
    rows, values = sparseopt.csr_matmul_backward(x, grad_out)
    ref = x.T @ grad_out
    assert np.array_equal(rows, np.unique(x.indices))
    assert_close(values, ref[rows])
