"""Fuzzing the library's untrusted inputs with Hypothesis: checkpoints (every field mutated,
truncated, retyped, extra or missing), hyper-parameter setters, and the kernels' argument
checks. The property is always the same: a call either succeeds or raises one of the
documented exception types (ValueError, TypeError, IndexError, AttributeError), a rejected call
changes nothing, and the optimizer keeps working afterwards (no crash, no silent NaN from a
corrupt record)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparseopt
from sparseopt.optim import FTRL, SGD, Adagrad, Adam, AdamW, RMSprop, RowWiseAdagrad

from _helpers import assert_unchanged, make_steps, snapshot

NUM_ROWS = 8
EXPECTED = (ValueError, TypeError, IndexError, AttributeError)

MAKERS = {
    "sgd_exact": lambda p: SGD(p, lr=0.1, momentum=0.9, mode="exact"),
    "sgd_wd_exact": lambda p: SGD(p, lr=0.1, momentum=0.5, weight_decay=0.1, mode="exact"),
    "sgd_lazy": lambda p: SGD(p, lr=0.1, momentum=0.9),
    "adam_exact": lambda p: Adam(p, lr=0.01, mode="exact"),
    "adamw_lazy_row": lambda p: AdamW(p, lr=0.01, amsgrad=True, bias_correction="row"),
    "rmsprop_exact": lambda p: RMSprop(p, lr=0.01, momentum=0.9, centered=True, mode="exact"),
    "adagrad": lambda p: Adagrad(p, lr=0.1),
    "rowwise": lambda p: RowWiseAdagrad(p, lr=0.1),
    "ftrl": lambda p: FTRL(p, lr=0.1, l1=0.01, l2=0.01),
}

FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def _trained(name, dtype=np.float64, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal((NUM_ROWS, 3)).astype(dtype)
    opt = MAKERS[name](param)
    for idx, vals in make_steps(rng, NUM_ROWS, steps, (3,), dtype, np.int64):
        opt.step(idx, vals)
    return opt, param


def _still_works(opt, param):
    """After any load, accepted or not, stepping and flushing must not crash; a snapshot that
    loaded must leave finite numbers (every accepted value was checked)."""
    opt.step(np.array([0, 1, 1]), np.ones((3, 3), param.dtype))
    opt.flush()


# Values a mutated field may take: every kind of wrong.
WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=5), st.just(np.array(3)), st.just(np.zeros((2, 2))),
    st.just(np.array([np.nan])), st.lists(st.integers(-5, 5), max_size=3), st.just({}),
    st.just(np.array(["x"])), st.just(np.zeros(0, np.int64)),
)


def _array_mutation(array, data):
    """A mutated copy of a state array: a value changed, truncated, retyped or reshaped."""
    kind = data.draw(st.sampled_from(["value", "truncate", "retype", "reshape", "noncontig"]))
    a = array.copy()
    if kind == "value" and a.size:
        pos = data.draw(st.integers(0, a.size - 1))
        if a.dtype == np.int64:
            a.flat[pos] = data.draw(st.integers(-2**63, 2**63 - 1))
        else:
            a.flat[pos] = data.draw(st.floats(allow_nan=True, allow_infinity=True, width=64))
        return a
    if kind == "truncate":
        return a[: data.draw(st.integers(0, max(0, a.shape[0] - 1)))] if a.ndim else a
    if kind == "retype":
        return a.astype(data.draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_])))
    if kind == "reshape":
        return a.reshape(-1)
    return np.asfortranarray(np.stack([a, a], axis=-1))[..., 0]


@pytest.mark.parametrize("name", sorted(MAKERS))
@FUZZ
@given(data=st.data())
def test_load_state_dict_fuzz(name, data):
    opt, param = _trained(name)
    sd = opt.state_dict()
    corrupt = {"step": sd["step"], "hyperparams": dict(sd["hyperparams"]),
               "state": {k: v.copy() for k, v in sd["state"].items()}}
    target = data.draw(st.sampled_from(["step", "hyperparam", "state", "drop", "extra", "top"]))
    if target == "step":
        corrupt["step"] = data.draw(st.one_of(WEIRD, st.integers(-3, sd["step"] + 3)))
    elif target == "hyperparam":
        key = data.draw(st.sampled_from(sorted(corrupt["hyperparams"])))
        corrupt["hyperparams"][key] = data.draw(WEIRD)
    elif target == "state":
        key = data.draw(st.sampled_from(sorted(corrupt["state"])))
        corrupt["state"][key] = data.draw(st.one_of(
            st.just(None), st.builds(lambda: _array_mutation(sd["state"][key], data))))
    elif target == "drop":
        group = data.draw(st.sampled_from(["hyperparams", "state"]))
        key = data.draw(st.sampled_from(sorted(corrupt[group])))
        del corrupt[group][key]
    elif target == "extra":
        group = data.draw(st.sampled_from(["hyperparams", "state"]))
        corrupt[group]["surplus"] = data.draw(WEIRD)
    else:
        corrupt = data.draw(st.one_of(WEIRD, st.just({"step": 1}),
                                      st.just({**corrupt, "more": 1})))
    before = snapshot(opt, param)
    try:
        opt.load_state_dict(corrupt)
    except EXPECTED:
        assert_unchanged(opt, param, before)
    _still_works(opt, param)


@pytest.mark.parametrize("name", sorted(MAKERS))
@FUZZ
@given(data=st.data())
def test_hyperparameter_setter_fuzz(name, data):
    opt, param = _trained(name)
    names = sorted(opt.state_dict()["hyperparams"])
    key = data.draw(st.sampled_from(names))
    value = data.draw(st.one_of(WEIRD, st.floats(-1, 2), st.tuples(st.floats(0, 1), st.floats(0, 1)),
                                st.sampled_from(["lazy", "exact", "global", "row", "none"])))
    before = snapshot(opt, param)
    try:
        setattr(opt, key, value)
    except EXPECTED:
        assert_unchanged(opt, param, before)
    else:
        # Accepted: the snapshot shows the value the next step uses.
        assert opt.state_dict()["hyperparams"][key] == getattr(opt, key)
    _still_works(opt, param)


GRADIENT_PART = st.one_of(
    st.none(), st.integers(), st.lists(st.integers(-2, 10), max_size=4),
    st.builds(lambda n, dt: np.arange(n).astype(dt), st.integers(0, 5),
              st.sampled_from([np.int8, np.int32, np.int64, np.uint64, np.float32, np.float64])),
    st.builds(lambda n, w, dt: np.ones((n, w), dt), st.integers(0, 5), st.integers(0, 4),
              st.sampled_from([np.float16, np.float32, np.float64, np.int64])),
    st.builds(lambda n: np.ones((n, 3, 2))[:, :, 0], st.integers(1, 4)),  # not contiguous
    st.builds(lambda v: np.array([v]), st.integers(-2**63, 2**63 - 1)),
)


@pytest.mark.parametrize("name", sorted(MAKERS))
@FUZZ
@given(indices=GRADIENT_PART, values=GRADIENT_PART, threads=st.integers(-3, 3000))
def test_step_argument_fuzz(name, indices, values, threads):
    opt, param = _trained(name)
    before = snapshot(opt, param)
    try:
        opt.num_threads = threads
        opt.step(indices, values)
    except EXPECTED:
        assert_unchanged(opt, param, before)
    _still_works(opt, param)


@FUZZ
@given(indptr=GRADIENT_PART, indices=GRADIENT_PART, k=st.integers(-2, 2**63 + 2),
       threads=st.integers(-2, 2000))
def test_kernel_argument_fuzz(indptr, indices, k, threads):
    table = np.arange(24, dtype=np.float64).reshape(8, 3)
    copy = table.copy()
    calls = [
        lambda: sparseopt.gather_sum(table, indptr, indices, num_threads=threads),
        lambda: sparseopt.gather_sum_backward(table[:2], indptr, indices, num_rows=k,
                                              num_threads=threads),
        lambda: sparseopt.topk(table, k, num_threads=threads),
        lambda: sparseopt.coalesce(indices, indptr, num_rows=k, num_threads=threads),
    ]
    for call in calls:
        try:
            call()
        except EXPECTED:
            pass
    assert np.array_equal(table, copy)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_save_load_file_fuzz(tmp_path, name):
    """sparseopt.load on damaged files: truncated, bit-flipped, wrong entries."""
    opt, param = _trained(name)
    path = tmp_path / "opt.npz"
    sparseopt.save(path, opt)
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(30):
        damaged = bytearray(raw)
        if trial % 3 == 0:
            damaged = damaged[: int(rng.integers(0, len(raw)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                damaged[int(rng.integers(0, len(raw)))] ^= 1 << int(rng.integers(0, 8))
        bad = tmp_path / f"bad{trial}.npz"
        bad.write_bytes(bytes(damaged))
        before = snapshot(opt, param)
        try:
            sparseopt.load(bad, opt)
        except EXPECTED:
            assert_unchanged(opt, param, before)
        except Exception as exc:  # zip/npy parsing errors must come out as ValueError
            pytest.fail(f"sparseopt.load raised {type(exc).__name__}: {exc}")
        _still_works(opt, param)
