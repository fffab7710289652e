"""Adagrad, RowWiseAdagrad and FTRL take mode="lazy" / "exact" (issue 15): their sparse update
already is the dense optimizer's state update, so the two modes give the same bits; anything
else is a ValueError naming mode, and snapshots saved without a mode still load."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sparseopt.optim import FTRL, Adagrad, RowWiseAdagrad

from _helpers import densify, make_steps, random_param

MAKERS = {
    "adagrad": lambda p, mode: Adagrad(p, lr=0.1, lr_decay=0.01, eps=1e-8,
                                       initial_accumulator_value=0.1, mode=mode),
    "rowwise_adagrad": lambda p, mode: RowWiseAdagrad(p, lr=0.1, eps=1e-8, mode=mode),
    "ftrl": lambda p, mode: FTRL(p, lr=0.1, l1=0.01, l2=0.01, mode=mode),
}
CASES = [(np.float32, np.int32), (np.float64, np.int64), (np.float32, np.int64)]


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("dtype,index_dtype", CASES, ids=lambda x: np.dtype(x).name)
def test_lazy_and_exact_give_the_same_bits(rng, name, dtype, index_dtype):
    p0 = random_param(rng, 12, (3,), dtype)
    steps = make_steps(rng, 12, 40, (3,), dtype, index_dtype, empty_every=7, hot_rows=2)
    runs = {}
    for mode in ("lazy", "exact"):
        p = p0.copy()
        opt = MAKERS[name](p, mode)
        assert opt.mode == mode and not opt.exact  # no exact-mode record: nothing to catch up
        for indices, values in steps:
            opt.step(indices, values)
        opt.flush()
        runs[mode] = (p, opt.state_dict())
    (p_lazy, sd_lazy), (p_exact, sd_exact) = runs["lazy"], runs["exact"]
    assert np.array_equal(p_lazy, p_exact)
    assert sd_lazy["hyperparams"] == sd_exact["hyperparams"]  # mode is not a hyper-parameter
    for key, value in sd_lazy["state"].items():
        assert np.array_equal(value, sd_exact["state"][key]), key
    assert np.array_equal(p_exact[:2], p0[:2])  # rows never touched keep their values


@pytest.mark.parametrize("dtype,index_dtype", CASES, ids=lambda x: np.dtype(x).name)
def test_exact_adagrad_is_dense_adagrad_fed_zeros(rng, dtype, index_dtype):
    """The claim behind accepting mode="exact": torch.optim.Adagrad's formula over the whole
    table, with a zero gradient for untouched rows, written plainly in NumPy."""
    p0 = random_param(rng, 10, (4,), dtype)
    steps = make_steps(rng, 10, 60, (4,), dtype, index_dtype, empty_every=9)
    p = p0.copy()
    opt = MAKERS["adagrad"](p, "exact")
    ref = p0.astype(np.float64)
    total = np.full_like(ref, 0.1)
    for t, (indices, values) in enumerate(steps, start=1):
        opt.step(indices, values)
        g = densify(indices, values.astype(np.float64), ref.shape)
        total += g * g
        ref -= 0.1 / (1 + (t - 1) * 0.01) * g / (np.sqrt(total) + 1e-8)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("mode", ["dense", "Lazy", "", None, 1])
def test_other_modes_are_refused(name, mode):
    p = np.ones((4, 2))
    with pytest.raises(ValueError, match="mode must be one of 'lazy', 'exact'"):
        MAKERS[name](p, mode)
    assert np.array_equal(p, np.ones((4, 2)))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_mode_is_fixed_and_survives_copies(name):
    p = np.ones((4, 2))
    opt = MAKERS[name](p, "exact")
    with pytest.raises(AttributeError, match="mode is fixed"):
        opt.mode = "lazy"
    assert opt.mode == "exact"
    assert pickle.loads(pickle.dumps(opt)).mode == "exact"
    assert opt.replica().mode == "exact"


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_snapshots_load_across_modes(rng, name):
    """A snapshot holds no mode (as those saved before mode= existed): it loads into either."""
    p = random_param(rng, 6, (2,), np.float64)
    lazy = MAKERS[name](p, "lazy")
    for indices, values in make_steps(rng, 6, 5, (2,)):
        lazy.step(indices, values)
    snap = lazy.state_dict()
    assert "mode" not in snap["hyperparams"]
    exact = MAKERS[name](p.copy(), "exact")
    exact.load_state_dict(snap)
    assert exact.mode == "exact" and exact.step_count == lazy.step_count
