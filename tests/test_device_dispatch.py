"""sparseopt._device on the CPU: the optimizer classes and functions hand a device table's
arrays to the CUDA bindings in the bindings' order. A stand-in module records the calls (no
device is needed, nor the CUDA build), and stand-in device arrays wrap NumPy arrays, so what
each optimizer passes -- state arrays by name, options, step count -- is checked against what
the class holds. This catches a _core signature that changes under the dispatch layer."""

from __future__ import annotations

import numpy as np
import pytest

import sparseopt
from _helpers import DeviceStandIn as StandIn
from sparseopt import _core, _device, optim


class Recorder:
    """Stands in for sparseopt._cuda: every call is recorded as (name, args)."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args))
            return 0

        return call


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(_device, "module", lambda: rec)
    monkeypatch.setattr(_device, "full", lambda like, shape, dtype, fill: StandIn(
        np.full(shape, fill, dtype=np.dtype(like.dtype) if dtype is None else np.dtype(dtype))))
    return rec


# optimizer, hyper-parameters, the state names in the binding's order, options type, counted
CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9), ["momentum_buffer", "row_steps"], _core.SgdOptions, True),
    ("SGD", dict(lr=0.1), [None, None], _core.SgdOptions, True),
    ("Adam", dict(lr=0.1, amsgrad=True, bias_correction="row"),
     ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "row_steps"], _core.AdamOptions, True),
    ("AdamW", dict(lr=0.1), ["exp_avg", "exp_avg_sq", None, None], _core.AdamOptions, True),
    ("Adagrad", dict(lr=0.1), ["sum"], _core.AdagradOptions, True),
    ("RMSprop", dict(lr=0.1, centered=True, momentum=0.5),
     ["square_avg", "momentum_buffer", "grad_avg"], _core.RmspropOptions, True),
    ("RowWiseAdagrad", dict(lr=0.1), ["sum"], _core.RowWiseAdagradOptions, False),
    ("FTRL", dict(lr=0.1), ["accumulator", "linear"], _core.FtrlOptions, False),
]


@pytest.mark.parametrize("name,hyper,states,options_type,counted", CASES)
def test_steps_pass_the_bindings_arguments(recorder, name, hyper, states, options_type, counted):
    table = StandIn(np.zeros((5, 3), np.float32))
    opt = getattr(optim, name)(table, **hyper)
    indices, values = StandIn(np.array([1, 1, 4])), StandIn(np.ones((3, 3), np.float32))
    opt.step(indices, values)
    opt.step(indices, values)
    steps = [c for c in recorder.calls if c[0].endswith("_step")]
    binding = {"AdamW": "adam", "RowWiseAdagrad": "rowwise_adagrad"}.get(name, name.lower())
    assert [c[0] for c in steps] == [f"{binding}_step"] * 2
    for count, (_, args) in enumerate(steps, start=1):
        assert args[0] is table and args[1] is indices and args[2] is values and args[3] is None
        passed = args[4:4 + len(states)]
        for state_name, array in zip(states, passed):
            assert (array is None) if state_name is None else (array is opt._state[state_name])
        rest = args[4 + len(states):]
        assert isinstance(rest[0], options_type)
        assert list(rest[1:]) == ([count, 0] if counted else [0])  # step count, stream 0
    assert opt.step_count == 2


def test_functions_pass_the_bindings_arguments(recorder):
    table = StandIn(np.zeros((5, 3), np.float32))
    indptr, indices = StandIn(np.array([0, 2, 3])), StandIn(np.array([1, 4, 4]))
    out = sparseopt.gather_sum(table, indptr, indices, mode="mean")
    name, args = recorder.calls[-1]
    assert name == "gather_sum" and args[:5] == (table, indptr, indices, None, True)
    assert args[5] is out and out.shape == (2, 3) and args[6] == 0

    grad_out = StandIn(np.ones((2, 3), np.float32))
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=5)
    name, args = recorder.calls[-1]
    assert name == "gather_sum_backward" and args[:6] == (grad_out, indptr, indices, None, False, 5)
    assert args[6].shape == (3,) and args[7].shape == (3, 3)  # capacity min(3, 5)
    assert rows.shape == (0,) and values.shape == (0, 3)  # the stand-in reports 0 rows

    x = StandIn(np.zeros((4, 9), np.float64))
    values, indices = sparseopt.topk(x, 3, largest=False, magnitude=True)
    name, args = recorder.calls[-1]
    assert name == "topk" and args[:4] == (x, 3, False, True)
    assert args[4] is values and args[5] is indices and values.shape == indices.shape == (4, 3)
    assert indices.dtype == np.int64


def test_coalesce_passes_the_bindings_arguments(recorder):
    indices, values = StandIn(np.array([3, 1, 3], np.int32)), StandIn(np.ones((3, 2), np.float64))
    unique, summed, counts = sparseopt.coalesce(indices, values)
    name, args = recorder.calls[-1]
    assert name == "coalesce" and args[:3] == (indices, values, -1)  # -1: no num_rows
    assert args[3].shape == (3,) and args[3].dtype == np.int32
    assert args[4].shape == (3, 2) and args[5].dtype == np.int64 and args[6] == 0
    sparseopt.coalesce(indices, values, num_rows=2)
    assert recorder.calls[-1][1][2] == 2 and recorder.calls[-1][1][3].shape == (2,)  # min(n, rows)
    with pytest.raises(TypeError, match="indices is in host memory"):
        sparseopt.coalesce(np.array([0]), values)
