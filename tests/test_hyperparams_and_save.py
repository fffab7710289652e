"""Hyper-parameters settable between steps (every one, not only lr) and optimizers saved to
one .npz without pickle (sparseopt.save / sparseopt.load)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import sparseopt
from sparseopt.optim import FTRL, SGD, Adagrad, Adam, AdamW, RMSprop, RowWiseAdagrad

from _helpers import assert_unchanged, densify, make_steps, snapshot
from test_exact_adam import NumpyDenseAdam
from test_exact_sgd import NumpyDenseSGD

NUM_ROWS = 10


def _batches(seed, n, dtype=np.float64):
    return make_steps(np.random.default_rng(seed), NUM_ROWS, n, (3,), dtype, np.int64)


# (class, constructor kwargs, name, new value): each change must act exactly as an optimizer
# built with the new value from the start, once both have the same state.
CHANGES = [
    (SGD, dict(lr=0.1, momentum=0.9), "momentum", 0.5),
    (SGD, dict(lr=0.1, momentum=0.9), "dampening", 0.3),
    (SGD, dict(lr=0.1, momentum=0.9), "nesterov", True),
    (SGD, dict(lr=0.1, momentum=0.9), "weight_decay", 0.5),
    (Adagrad, dict(lr=0.1), "lr_decay", 0.2),
    (Adagrad, dict(lr=0.1), "eps", 1e-3),
    (RMSprop, dict(lr=0.01, momentum=0.9), "alpha", 0.5),
    (RMSprop, dict(lr=0.01, momentum=0.9), "momentum", 0.1),
    (RMSprop, dict(lr=0.01), "eps", 1e-2),
    (Adam, dict(lr=0.01), "betas", (0.5, 0.9)),
    (Adam, dict(lr=0.01), "eps", 1e-3),
    (Adam, dict(lr=0.01), "weight_decay", 0.1),
    (AdamW, dict(lr=0.01), "weight_decay", 0.3),
    (RowWiseAdagrad, dict(lr=0.1), "eps", 1e-2),
    (FTRL, dict(lr=0.1), "l1", 0.05),
    (FTRL, dict(lr=0.1), "l2", 0.05),
    (FTRL, dict(lr=0.1), "lr_power", -0.3),
]


@pytest.mark.parametrize("cls, kwargs, name, value", CHANGES,
                         ids=[f"{c.__name__}-{n}" for c, _, n, _ in CHANGES])
def test_setting_a_hyperparameter_takes_effect(cls, kwargs, name, value):
    """Set between steps: the next steps are those of an optimizer built with the new value
    (loaded with the same state), and state_dict() shows it. Silently ignored before."""
    first, then = _batches(1, 3), _batches(2, 3)
    param = np.random.default_rng(0).standard_normal((NUM_ROWS, 3))
    opt = cls(param, **kwargs)
    for idx, vals in first:
        opt.step(idx, vals)
    setattr(opt, name, value)
    assert opt.state_dict()["hyperparams"][name] == value
    assert getattr(opt, name) == value

    ref_param = param.copy()
    ref = cls(ref_param, **{**kwargs, name: value})
    ref.load_state_dict(opt.state_dict())
    for idx, vals in then:
        opt.step(idx, vals)
        ref.step(idx, vals)
    assert np.array_equal(param, ref_param)
    # ... and differs from not setting it (the test can fail).
    stale_param = np.random.default_rng(0).standard_normal((NUM_ROWS, 3))
    stale = cls(stale_param, **kwargs)
    for idx, vals in first + then:
        stale.step(idx, vals)
    assert not np.array_equal(stale_param, param)


REFUSED = [
    (SGD(np.zeros((4, 2)), lr=0.1, momentum=0.9), "momentum", 0.0, ValueError),  # state changes
    (SGD(np.zeros((4, 2)), lr=0.1), "momentum", 0.9, ValueError),
    (SGD(np.zeros((4, 2)), lr=0.1, momentum=0.9), "momentum", -1.0, ValueError),  # out of range
    (SGD(np.zeros((4, 2)), lr=0.1), "mode", "exact", AttributeError),
    (Adam(np.zeros((4, 2))), "amsgrad", True, ValueError),
    (Adam(np.zeros((4, 2))), "bias_correction", "row", ValueError),
    (Adam(np.zeros((4, 2)), mode="exact"), "betas", (0.9, 1.0), ValueError),
    (Adam(np.zeros((4, 2)), mode="exact"), "weight_decay", 0.1, ValueError),  # L2: no closed form
    (Adam(np.zeros((4, 2))), "betas", (0.9, 1.5), ValueError),
    (Adam(np.zeros((4, 2))), "betas", "0.9", ValueError),
    (RMSprop(np.zeros((4, 2))), "centered", True, ValueError),
    (Adagrad(np.zeros((4, 2))), "initial_accumulator_value", 0.5, AttributeError),
    (FTRL(np.zeros((4, 2)), lr=0.1), "initial_accumulator_value", 0.5, AttributeError),
]


@pytest.mark.parametrize("opt, name, value, error", REFUSED,
                         ids=[f"{type(o).__name__}-{n}-{v}" for o, n, v, _ in REFUSED])
def test_a_change_the_optimizer_cannot_make_is_refused(opt, name, value, error):
    opt.step(np.array([1, 2]), np.ones((2, 2)))
    before = snapshot(opt, opt.param)
    old = getattr(opt, name)
    with pytest.raises(error, match=name):
        setattr(opt, name, value)
    assert getattr(opt, name) == old
    assert_unchanged(opt, opt.param, before)


EXACT_CHANGES = [
    ("adam_betas", lambda p: Adam(p, lr=0.01, mode="exact"), "betas", (0.5, 0.9),
     lambda p0: NumpyDenseAdam(p0, lr=0.01), lambda ref, v: setattr(ref, "b1", v[0]) or setattr(ref, "b2", v[1])),
    ("adamw_eps", lambda p: AdamW(p, lr=0.01, mode="exact"), "eps", 1e-3,
     lambda p0: NumpyDenseAdam(p0, lr=0.01, weight_decay=1e-2, decoupled=True),
     lambda ref, v: setattr(ref, "eps", v)),
    ("adamw_decay", lambda p: AdamW(p, lr=0.01, mode="exact"), "weight_decay", 0.3,
     lambda p0: NumpyDenseAdam(p0, lr=0.01, weight_decay=1e-2, decoupled=True),
     lambda ref, v: setattr(ref, "wd", v)),
]


@pytest.mark.parametrize("case", EXACT_CHANGES, ids=[c[0] for c in EXACT_CHANGES])
def test_exact_mode_follows_a_change_as_the_dense_optimizer(case):
    """In exact mode a change catches every row up under the old value and restarts the
    record: the run equals the dense optimizer whose value changed at the same step."""
    _, make, name, value, make_ref, set_ref = case
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal((NUM_ROWS, 3))
    param = p0.copy()
    opt = make(param)
    ref = make_ref(p0)
    for t, (idx, vals) in enumerate(_batches(8, 30)):
        if t == 12:
            setattr(opt, name, value)
            set_ref(ref, value)
            assert int(opt.state["history_start"][0]) == 12
            assert (opt.state["last_step"] == 12).all()
        opt.step(idx, vals)
        ref.step(densify(idx, vals, ref.p.shape))
    opt.flush()
    np.testing.assert_allclose(param, ref.p, rtol=1e-10, atol=1e-12)


def test_exact_sgd_momentum_change_matches_dense():
    rng = np.random.default_rng(9)
    p0 = rng.standard_normal((NUM_ROWS, 3))
    param = p0.copy()
    opt = SGD(param, lr=0.05, momentum=0.9, weight_decay=0.01, mode="exact")
    ref = NumpyDenseSGD(p0, momentum=0.9, weight_decay=0.01)
    for t, (idx, vals) in enumerate(_batches(10, 30)):
        if t == 15:
            opt.momentum = 0.5
            ref.mu = 0.5
        opt.step(idx, vals)
        ref.step(0.05, idx, vals)
    opt.flush()
    np.testing.assert_allclose(param, ref.p, rtol=1e-10, atol=1e-12)


def test_exact_mode_still_follows_an_lr_schedule():
    opt = Adam(np.zeros((4, 2)), lr=0.1, mode="exact")
    opt.lr = 0.05
    assert opt.state_dict()["hyperparams"]["lr"] == 0.05


OPTIMIZERS = {
    "sgd_exact": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, mode="exact"),
    "adam_exact": lambda p: Adam(p, lr=0.01, mode="exact"),
    "adamw_row": lambda p: AdamW(p, lr=0.01, amsgrad=True, bias_correction="row"),
    "rmsprop_exact": lambda p: RMSprop(p, lr=0.01, momentum=0.5, centered=True, mode="exact"),
    "adagrad": lambda p: Adagrad(p, lr=0.1),
    "ftrl": lambda p: FTRL(p, lr=0.1, l1=0.01),
    "rowwise": lambda p: RowWiseAdagrad(p, lr=0.1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("how", ["npz", "pickle"])
def test_save_load_continue_gives_the_same_bits(tmp_path, name, dtype, how):
    first, then = _batches(3, 4, dtype), _batches(4, 5, dtype)
    start = np.random.default_rng(5).standard_normal((NUM_ROWS, 3)).astype(dtype)
    straight_param = start.copy()
    straight = OPTIMIZERS[name](straight_param)
    for idx, vals in first + then:
        straight.step(idx, vals)
    straight.flush()

    param = start.copy()
    opt = OPTIMIZERS[name](param)
    for idx, vals in first:
        opt.step(idx, vals)
    path = tmp_path / "opt.npz"
    if how == "npz":
        sparseopt.save(path, opt)
    else:
        path.write_bytes(pickle.dumps(opt.state_dict()))
    resumed_param = param.copy()  # the user saves the table beside
    resumed = OPTIMIZERS[name](resumed_param)
    if how == "npz":
        sparseopt.load(path, resumed)
        with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickle inside
            assert all(archive[k].dtype != object for k in archive.files)
    else:
        resumed.load_state_dict(pickle.loads(path.read_bytes()))
    for idx, vals in then:
        resumed.step(idx, vals)
    resumed.flush()
    assert np.array_equal(resumed_param, straight_param)
    for key, value in straight.state_dict()["state"].items():
        assert np.array_equal(resumed.state_dict()["state"][key], value), key


def test_load_refuses_another_optimizers_file(tmp_path):
    path = tmp_path / "opt.npz"
    sparseopt.save(path, Adagrad(np.zeros((4, 2))))
    opt = Adam(np.zeros((4, 2)))
    before = snapshot(opt, opt.param)
    with pytest.raises(ValueError, match="of class Adagrad; load it into Adagrad, not Adam$"):
        sparseopt.load(path, opt)
    assert_unchanged(opt, opt.param, before)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="sparseopt checkpoint"):
        sparseopt.load(tmp_path / "one.npy", opt)
    with pytest.raises(TypeError, match="optimizer"):
        sparseopt.save(path, "not an optimizer")
