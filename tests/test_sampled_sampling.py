"""sparseopt.sampled's samplers: NegativeSampler (alias table) and context_pairs.

Exact references re-implement the documented random stream (splitmix64) in Python integers;
statistical tests check the distributions without relying on it.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt import sampled

from _helpers import INDEX_DTYPES

DT_IDS = lambda d: np.dtype(d).name  # noqa: E731
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


# --------------------------------------------------------------------------------------------
# the random stream, in Python
# --------------------------------------------------------------------------------------------
def mix64(z):
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Stream:
    def __init__(self, seed):
        self.state = mix64(seed + GOLDEN)

    def next(self):
        self.state = (self.state + GOLDEN) & M64
        return mix64(self.state)

    def below(self, n):
        return (self.next() * n) >> 64

    def uniform(self):
        return (self.next() >> 11) * 2.0**-53


def item_stream(seed, item):
    return Stream(mix64(seed) ^ mix64(item + 0x632BE59BD9B4E019))


def ref_draw(prob, alias, stream):
    p = stream.next() * len(prob)
    column, fraction = p >> 64, p & M64
    return column if (fraction >> 11) * 2.0**-53 < prob[column] else int(alias[column])


def ref_negatives(sampler, positives, k, seed, exclude=True):
    prob, alias = sampler.probabilities, sampler.aliases
    out = np.zeros((len(positives), 1 + k), np.int64)
    for b, pos in enumerate(positives.tolist()):
        rs = item_stream(seed, b)
        out[b, 0] = pos
        for j in range(1, k + 1):
            r = ref_draw(prob, alias, rs)
            t = 0
            while exclude and r == pos and t < 64:
                r = ref_draw(prob, alias, rs)
                t += 1
            out[b, j] = r
    return out


def ref_pairs(tokens, window, offsets=None, keep=None, seed=0, shrink=True):
    rs = Stream(seed)
    offsets = [0, len(tokens)] if offsets is None else list(offsets)
    kept = []
    for s in range(len(offsets) - 1):
        sent = [int(t) for t in tokens[offsets[s]:offsets[s + 1]]
                if keep is None or rs.uniform() < keep[t]]
        kept.append(sent)
    centers, contexts = [], []
    if window == 0:
        return centers, contexts
    for sent in kept:
        for i in range(len(sent)):
            reach = window - rs.below(window) if shrink else window
            for j in range(max(0, i - reach), min(len(sent), i + reach + 1)):
                if j != i:
                    centers.append(sent[i])
                    contexts.append(sent[j])
    return centers, contexts


def test_stream_reference_matches_known_splitmix_values():
    # splitmix64 from state 0: the published first outputs
    s = Stream(0)
    s.state = 0
    assert s.next() == 0xE220A8397B1DCDAF
    assert s.next() == 0x6E789E6AA1B965F4


# --------------------------------------------------------------------------------------------
# NegativeSampler
# --------------------------------------------------------------------------------------------
def alias_distribution(sampler):
    prob, alias = sampler.probabilities, sampler.aliases
    n = len(prob)
    p = prob / n
    np.add.at(p, alias, (1.0 - prob) / n)
    return p


@pytest.mark.parametrize("weights", [
    [1.0], [1.0, 1.0], [3.0, 1.0], [0.0, 2.0, 0.0, 5.0], [1e-300, 1.0],
    list(np.arange(1, 101) ** -0.75), list(np.random.default_rng(0).random(1000) ** 4)],
    ids=["one", "two_equal", "skewed", "zeros", "tiny", "zipf", "random"])
def test_alias_table_represents_the_weights(weights):
    w = np.array(weights, np.float64)
    sampler = sampled.NegativeSampler(w)
    assert sampler.size == len(w)
    np.testing.assert_allclose(alias_distribution(sampler), w / w.sum(), rtol=1e-10, atol=1e-15)
    assert np.all((sampler.probabilities >= 0) & (sampler.probabilities <= 1))
    assert np.array_equal(sampler.weights, w)
    # a zero-weight row is never its own column's outcome and never an alias
    zero = np.flatnonzero(w == 0)
    assert np.all(sampler.probabilities[zero] == 0)
    assert not np.isin(sampler.aliases, zero).any()


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
def test_draw_matches_reference_stream(index_dtype):
    rng = np.random.default_rng(5)
    sampler = sampled.NegativeSampler(rng.random(50) ** 3)
    positives = rng.integers(0, 50, 40).astype(index_dtype)
    for exclude in (True, False):
        got = sampler.draw(positives, 5, seed=123, exclude_positive=exclude)
        assert got.dtype == index_dtype and got.shape == (40, 6)
        np.testing.assert_array_equal(got, ref_negatives(sampler, positives, 5, 123, exclude))


def test_draw_layout_and_exclusion():
    rng = np.random.default_rng(1)
    sampler = sampled.NegativeSampler(np.array([10.0, 1.0, 1.0]))  # row 0 is drawn 83% of the time
    positives = np.zeros(500, np.int64)
    c = sampler.draw(positives, 4, seed=9)
    assert np.all(c[:, 0] == 0) and np.all(c[:, 1:] != 0)
    c2 = sampler.draw(positives, 4, seed=9, exclude_positive=False)
    assert np.all(c2[:, 0] == 0) and (c2[:, 1:] == 0).mean() > 0.7
    # only the positive has weight: after the bounded redraws it stays
    only = sampled.NegativeSampler(np.array([0.0, 1.0]))
    assert np.all(only.draw(np.array([1, 1]), 3, seed=0) == 1)
    del rng


def test_draw_frequencies_follow_the_weights():
    w = np.arange(1, 21, dtype=np.float64) ** 0.75
    sampler = sampled.NegativeSampler(w)
    c = sampler.draw(np.zeros(20000, np.int64), 10, seed=4, exclude_positive=False)[:, 1:]
    counts = np.bincount(c.ravel(), minlength=20)
    expected = w / w.sum() * c.size
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60  # 19 degrees of freedom: p < 1e-5 beyond ~50


def test_draw_seeds_and_threads():
    rng = np.random.default_rng(2)
    sampler = sampled.NegativeSampler(rng.random(1000))
    positives = rng.integers(0, 1000, 20000)
    a = sampler.draw(positives, 5, seed=7, num_threads=1)
    for nt in (2, 0):
        assert np.array_equal(a, sampler.draw(positives, 5, seed=7, num_threads=nt))
    assert not np.array_equal(a, sampler.draw(positives, 5, seed=8))
    # an item's draws depend on (seed, position) only
    assert np.array_equal(a[:100], sampler.draw(positives[:100], 5, seed=7))
    assert sampler.draw(positives, 0, seed=1).shape == (20000, 1)
    assert sampler.draw(positives[:0], 5, seed=1).shape == (0, 6)
    big = sampler.draw(positives[:10], 3, seed=2**64 - 1)
    assert big.shape == (10, 4)


def test_sampler_pickles():
    sampler = sampled.NegativeSampler(np.array([1.0, 2.0, 3.0, 0.5]))
    clone = pickle.loads(pickle.dumps(sampler))
    assert np.array_equal(clone.weights, sampler.weights)
    assert np.array_equal(clone.probabilities, sampler.probabilities)
    p = np.array([0, 1, 2, 3] * 10)
    assert np.array_equal(clone.draw(p, 4, seed=3), sampler.draw(p, 4, seed=3))
    assert "size=4" in repr(sampler)


@pytest.mark.parametrize("weights, exc, match", [
    (np.array([], np.float64), ValueError, "at least one"),
    (np.array([1.0, -1.0]), ValueError, r"weights\[1\]"),
    (np.array([1.0, np.nan]), ValueError, r"weights\[1\]"),
    (np.array([1.0, np.inf]), ValueError, r"weights\[1\]"),
    (np.zeros(3), ValueError, "positive"),
    (np.array([1e308, 1e308]), ValueError, "finite sum"),
    (np.ones(3, np.float32), TypeError, "float64"),
    (np.ones((2, 2)), ValueError, "1-D"),
    ([1.0, 2.0], TypeError, "numpy.ndarray"),
    (np.ones(6)[::2], TypeError, "C-contiguous"),
])
def test_sampler_bad_weights(weights, exc, match):
    with pytest.raises(exc, match=match):
        sampled.NegativeSampler(weights)


def test_draw_bad_input():
    sampler = sampled.NegativeSampler(np.ones(5))
    with pytest.raises(IndexError, match=r"positives\[2\] = 5"):
        sampler.draw(np.array([0, 1, 5]), 3, seed=0)
    with pytest.raises(IndexError, match="positives"):
        sampler.draw(np.array([-1]), 3, seed=0)
    with pytest.raises(TypeError, match="positives"):
        sampler.draw(np.array([0.0, 1.0]), 3, seed=0)
    with pytest.raises(ValueError, match="positives must be 1-D"):
        sampler.draw(np.zeros((2, 2), np.int64), 3, seed=0)
    with pytest.raises(ValueError, match="num_negatives"):
        sampler.draw(np.array([0]), -1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sampler.draw(np.array([0]), 1, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        sampler.draw(np.array([0]), 1, seed=2**64)
    with pytest.raises(TypeError, match="seed"):
        sampler.draw(np.array([0]), 1, seed=1.5)
    with pytest.raises(ValueError, match="num_threads"):
        sampler.draw(np.array([0]), 1, seed=0, num_threads=-1)


# --------------------------------------------------------------------------------------------
# context_pairs
# --------------------------------------------------------------------------------------------
def test_pairs_by_hand():
    tokens = np.array([10, 11, 12, 13])
    c, x = sampled.context_pairs(tokens, 1, shrink_window=False)
    assert c.tolist() == [10, 11, 11, 12, 12, 13]
    assert x.tolist() == [11, 10, 12, 11, 13, 12]
    c, x = sampled.context_pairs(tokens, 2, offsets=np.array([0, 2, 4]), shrink_window=False)
    assert c.tolist() == [10, 11, 12, 13] and x.tolist() == [11, 10, 13, 12]
    c, x = sampled.context_pairs(tokens, 0)
    assert c.shape == (0,) and x.shape == (0,)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shrink", [True, False], ids=["shrink", "fixed"])
@pytest.mark.parametrize("subsample", [True, False], ids=["subsample", "all"])
def test_pairs_match_reference(index_dtype, shrink, subsample):
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, 30, 400).astype(index_dtype)
    offsets = np.array([0, 5, 5, 6, 120, 300, 400], np.int64)  # an empty and a one-token sentence
    keep = rng.random(30) * 1.5 - 0.2 if subsample else None   # some >= 1, some <= 0
    c, x = sampled.context_pairs(tokens, 4, offsets=offsets, keep_probability=keep, seed=77,
                                 shrink_window=shrink)
    rc, rx = ref_pairs(tokens, 4, offsets, keep, 77, shrink)
    assert c.dtype == index_dtype and x.dtype == index_dtype
    assert c.tolist() == rc and x.tolist() == rx
    if subsample:
        assert not np.isin(c, np.flatnonzero(keep <= 0)).any()


def test_pairs_properties_and_seeds():
    tokens = np.arange(1000, dtype=np.int64)  # token == position: distances are visible
    c, x = sampled.context_pairs(tokens, 5, seed=3)
    d = np.abs(c - x)
    assert d.min() >= 1 and d.max() <= 5
    # the shrunk window: each center pairs with 2..10 contexts, 6 on average (2 * mean(1..5))
    per_center = np.bincount(c, minlength=1000)[5:-5]
    assert per_center.min() >= 2 and per_center.max() <= 10
    assert abs(per_center.mean() - 6.0) < 0.3
    c2, x2 = sampled.context_pairs(tokens, 5, seed=3)
    assert np.array_equal(c, c2) and np.array_equal(x, x2)
    c3, _ = sampled.context_pairs(tokens, 5, seed=4)
    assert not np.array_equal(np.bincount(c, minlength=1000), np.bincount(c3, minlength=1000))


def test_pairs_keep_probability_frequencies():
    tokens = np.tile(np.arange(4), 5000)
    keep = np.array([1.0, 0.5, 0.1, 0.0])
    c, _ = sampled.context_pairs(tokens, 1, keep_probability=keep, shrink_window=False)
    kept = np.bincount(c, minlength=4) / 5000
    # a kept token pairs with ~2 neighbours
    assert kept[3] == 0 and abs(kept[0] / kept[1] - 2.0) < 0.15 and abs(kept[1] / kept[2] - 5) < 1


@pytest.mark.parametrize("call, exc, match", [
    (lambda: sampled.context_pairs(np.array([0, -1]), 2), IndexError, r"tokens\[1\] = -1"),
    (lambda: sampled.context_pairs(np.array([0, 3]), 2, keep_probability=np.ones(3)), IndexError,
     r"tokens\[1\] = 3"),
    (lambda: sampled.context_pairs(np.array([0.0]), 2), TypeError, "tokens"),
    (lambda: sampled.context_pairs(np.zeros((2, 2), np.int64), 2), ValueError, "1-D"),
    (lambda: sampled.context_pairs(np.arange(4), -1), ValueError, "window"),
    (lambda: sampled.context_pairs(np.arange(4), 2, offsets=np.array([0, 3])), ValueError,
     "end at len"),
    (lambda: sampled.context_pairs(np.arange(4), 2, offsets=np.array([1, 4])), ValueError,
     "start at 0"),
    (lambda: sampled.context_pairs(np.arange(4), 2, offsets=np.array([0, 3, 2, 4])), ValueError,
     "non-decreasing"),
    (lambda: sampled.context_pairs(np.arange(4), 2, offsets=np.array([0, 4], np.int32)),
     TypeError, "offsets"),
    (lambda: sampled.context_pairs(np.arange(4), 2, offsets=np.zeros(0, np.int64)), ValueError,
     "offsets"),
    (lambda: sampled.context_pairs(np.arange(4), 2, keep_probability=np.ones(4, np.float32)),
     TypeError, "keep_probability"),
    (lambda: sampled.context_pairs(np.arange(4), 2, seed=-3), ValueError, "seed"),
])
def test_pairs_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@settings(max_examples=30)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(0, 60), window=st.integers(0, 6),
       cuts=st.lists(st.integers(0, 60), max_size=5), subsample=st.booleans(),
       shrink=st.booleans())
def test_hypothesis_pairs(seed, n, window, cuts, subsample, shrink):
    rng = np.random.default_rng(seed % 2**32)
    tokens = rng.integers(0, 8, n)
    offsets = np.array(sorted({0, n, *[c for c in cuts if c <= n]}), np.int64)
    keep = rng.random(8) if subsample else None
    c, x = sampled.context_pairs(tokens, window, offsets=offsets, keep_probability=keep,
                                 seed=seed, shrink_window=shrink)
    rc, rx = ref_pairs(tokens, window, offsets, keep, seed, shrink)
    assert c.tolist() == rc and x.tolist() == rx
