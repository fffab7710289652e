"""Exact mode of a device table, on the CPU: a stand-in _cuda module records what Adam, AdamW,
SGD and RMSprop hand the CUDA bindings (test_device_dispatch.py's Recorder). The record's arrays (history,
window, history_start) must be host NumPy arrays, last_step and the record's device copy device
arrays, in the bindings' order; flush and a hyper-parameter change must reach the device too.
tests/cuda/test_cuda_exact.py runs the kernels themselves where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import DeviceStandIn as StandIn
from sparseopt import _core, optim
from test_device_dispatch import recorder  # noqa: F401 - the fixture

ROWS = 4097  # _cuda.device_record_rows(): exact_record_span + 1


@pytest.fixture
def rec(recorder):  # noqa: F811 - the fixture imported above
    recorder.device_record_rows = lambda: ROWS
    return recorder


# optimizer, hyper-parameters, the binding, the state arrays exact mode passes (None: absent)
CASES = [
    ("Adam", dict(lr=0.1), "adam", ["exp_avg", "exp_avg_sq", None]),
    ("AdamW", dict(lr=0.1, weight_decay=0.1, amsgrad=True), "adam", ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    ("SGD", dict(lr=0.1), "sgd", [None]),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01), "sgd", ["momentum_buffer"]),
    ("RMSprop", dict(lr=0.1, centered=True, momentum=0.5), "rmsprop",
     ["square_avg", "momentum_buffer", "grad_avg"]),
    ("RMSprop", dict(lr=0.1), "rmsprop", ["square_avg", None, None]),
]


@pytest.mark.parametrize("name,hyper,binding,states", CASES)
def test_exact_steps_and_flushes_pass_the_bindings_arguments(rec, name, hyper, binding, states):
    table = StandIn(np.zeros((5, 3), np.float32))
    opt = getattr(optim, name)(table, mode="exact", **hyper)
    state = opt._state
    assert isinstance(state["last_step"], StandIn) and state["last_step"].shape == (5,)
    for host in ("history", "window", "history_start"):
        assert isinstance(state[host], np.ndarray), host
    record = opt._device_record
    assert isinstance(record, StandIn) and record.shape == (ROWS, 4) and record.dtype == np.float64
    indices, values = StandIn(np.array([1, 1, 4])), StandIn(np.ones((3, 3), np.float32))
    for _ in range(20):  # past the host record's first 16 rows: it grows on the host
        opt.step(indices, values)
    steps = [args for name_, args in rec.calls if name_ == f"{binding}_exact_step"]
    assert len(steps) == 20 and not [c for c in rec.calls if c[0] == f"{binding}_step"]

    def check_state(passed):
        assert isinstance(passed, tuple) and len(passed) == len(states)
        for state_name, array in zip(states, passed):
            assert (array is None) if state_name is None else (array is state[state_name]), state_name

    for count, args in enumerate(steps, start=1):
        assert args[:4] == (table, indices, values, None)
        check_state(args[4])
        assert args[5] is state["last_step"] and args[7] is state["window"]
        assert isinstance(args[6], np.ndarray) and args[6].shape[1] == state["history"].shape[1]
        assert args[8] is state["history_start"] and args[9] is record
        assert args[10].mode == _core.Mode.exact and args[11:] == (count, 0)  # step count, stream 0
    assert state["history"].shape[0] >= 21

    rows = StandIn(np.array([4, 0]))
    opt.flush(rows)
    opt.flush()
    flushes = [args for name_, args in rec.calls if name_ == f"{binding}_exact_flush"]
    assert [f[1] for f in flushes] == [rows, None]
    for args in flushes:
        assert args[0] is table
        check_state(args[2])
        assert args[3] is state["last_step"] and args[4] is state["history"]
        assert args[5] is state["window"] and args[6] is state["history_start"] and args[7] is record
        assert args[8].mode == _core.Mode.exact and args[9:] == (20, 0)


def test_host_indices_for_a_device_flush_are_refused_before_any_call(rec):
    opt = optim.Adam(StandIn(np.zeros((5, 3), np.float32)), mode="exact")
    with pytest.raises(TypeError, match="indices is in host memory"):
        opt.flush(np.array([1]))
    assert rec.calls == []


def test_a_new_record_after_a_hyperparameter_change_is_a_new_device_copy(rec):
    opt = optim.Adam(StandIn(np.zeros((5, 3), np.float32)), mode="exact")
    opt.step(StandIn(np.array([1])), StandIn(np.ones((1, 3), np.float32)))
    old = opt._device_record
    opt.betas = (0.8, 0.99)
    # every row caught up under the old betas first, then a new record (zeros) from this step
    assert rec.calls[-1][0] == "adam_exact_flush" and rec.calls[-1][1][7] is old
    assert opt._device_record is not old and not opt._device_record.array.any()
    assert int(opt._state["history_start"][0]) == 1


@pytest.fixture
def copies(monkeypatch):
    """Device copies of the stand-ins: their NumPy arrays."""
    from sparseopt import _device

    monkeypatch.setattr(_device, "to_host", lambda a: a.array.copy())
    monkeypatch.setattr(_device, "copy_in", lambda a, values: np.copyto(a.array, values))


@pytest.mark.parametrize("name,hyper", [("Adam", dict(lr=0.1, mode="exact")),
                                        ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1, mode="exact")),
                                        ("RMSprop", dict(lr=0.1, mode="lazy"))])
def test_state_dict_of_a_device_optimizer_round_trips_through_numpy(rec, copies, name, hyper):
    rng = np.random.default_rng(3)
    opt = getattr(optim, name)(StandIn(np.zeros((5, 3), np.float32)), **hyper)
    for _ in range(20):
        opt.step(StandIn(np.array([1, 4])), StandIn(np.ones((2, 3), np.float32)))
    for a in opt._state.values():  # what the kernels would have written
        target = a if isinstance(a, np.ndarray) else a.array
        if target.dtype == np.int64 and target.shape != (1,):
            target[...] = rng.integers(0, 21, target.shape)
        elif target.dtype != np.int64:
            target[...] = np.abs(rng.standard_normal(target.shape))  # lr >= 0 in the record
    snapshot = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for v in snapshot["state"].values())
    other = getattr(optim, name)(StandIn(np.zeros((5, 3), np.float32)), **hyper)
    other.load_state_dict(snapshot)
    assert other.step_count == 20
    for key, value in other.state_dict()["state"].items():
        assert value.tobytes() == snapshot["state"][key].tobytes(), key
    if opt.exact:  # the device copy of the record: the host record's first 4 columns
        kept = snapshot["state"]["history"]
        columns = min(4, kept.shape[1])
        assert np.array_equal(other._device_record.array[:len(kept), :columns], kept[:, :columns])
        assert not other._device_record.array[len(kept):].any()
    bad = dict(snapshot, state=dict(snapshot["state"]))
    name0 = "last_step" if opt.exact else next(iter(bad["state"]))
    bad["state"][name0] = bad["state"][name0].astype(np.float64)
    before = other.state_dict()
    with pytest.raises(TypeError):
        other.load_state_dict(bad)
    after = other.state_dict()
    assert all(before["state"][k].tobytes() == after["state"][k].tobytes() for k in before["state"])
