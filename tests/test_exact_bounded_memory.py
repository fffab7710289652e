"""Exact mode's memory does not grow with the number of steps: every exact_record_span steps a
step catches every row up and restarts the per-step record (issue 15). Checked over several
restarts against the NumPy transcriptions of torch's dense optimizers, for the three record
kinds (Adam's series sums, a momentum window, SGD's products of step matrices), and across a
save and load in the middle of a record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sparseopt
from sparseopt.optim import SGD, Adam, AdamW, RMSprop

from _helpers import (assert_close, densify, lr_schedule, make_exact_steps, random_param,
                      run_cpp)
from test_exact_adam import NumpyDenseAdam
from test_exact_sgd import NumpyDenseSGD

SPAN = 4096  # sparseopt::exact_record_span
NUM_ROWS = 5
STEPS = 2 * SPAN + 700  # two restarts, then part of a third record

class _DenseAdam(NumpyDenseAdam):
    def take(self, lr, idx, vals):
        self.lr = lr
        self.step(densify(idx, vals, self.p.shape))


class _DenseSGD(NumpyDenseSGD):
    def take(self, lr, idx, vals):
        self.step(lr, idx, vals)


CASES = {
    "adam": (lambda p: Adam(p, lr=0.01, mode="exact"),
             lambda p0: _DenseAdam(p0, lr=0.01)),
    "adamw_amsgrad": (lambda p: AdamW(p, lr=0.01, amsgrad=True, mode="exact"),
                      lambda p0: _DenseAdam(p0, lr=0.01, weight_decay=1e-2, decoupled=True,
                                            amsgrad=True)),
    "sgd_momentum_wd": (lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3, mode="exact"),
                        lambda p0: _DenseSGD(p0, momentum=0.9, weight_decay=1e-3)),
    "sgd_momentum": (lambda p: SGD(p, lr=0.05, momentum=0.9, mode="exact"),
                     lambda p0: _DenseSGD(p0, momentum=0.9)),
}


def _state_bytes(opt):
    return sum(a.nbytes for a in opt.state_dict()["state"].values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_stays_flat_and_matches_the_dense_optimizer(rng, name):
    make, make_ref = CASES[name]
    p0 = random_param(rng, NUM_ROWS, (3,), np.float64)
    param = p0.copy()
    opt = make(param)
    ref = make_ref(p0)
    steps = make_exact_steps(rng, NUM_ROWS, STEPS, (3,), np.float64, never=1, cold=2, p_touch=0.1)
    lrs = lr_schedule(rng, STEPS, 0.01 if "adam" in name else 0.05)
    most_rows, sizes = 0, []
    for t, ((idx, vals), lr) in enumerate(zip(steps, lrs), start=1):
        opt.lr = lr
        opt.step(idx, vals)
        ref.take(lr, idx, vals)
        most_rows = max(most_rows, opt.state["history"].shape[0])
        if t % 512 == 0:
            sizes.append(_state_bytes(opt))
    start = int(opt.state["history_start"][0])
    assert start == 2 * SPAN  # restarted at steps 4096 and 8192
    assert opt.state_dict()["state"]["history"].shape[0] == STEPS - start + 1
    assert most_rows <= 2 * (SPAN + 1)  # the array doubles while it fills, never past that
    # The snapshot grows with the record and shrinks at each restart: never past its size at
    # the end of the first record (it grew without bound before).
    first_record = sizes[: SPAN // 512]
    assert max(sizes) == max(first_record) and sizes[-1] < max(first_record)
    opt.flush()
    assert_close(param, ref.p, np.float64, rtol=1e-9)


def test_unbounded_growth_is_gone():
    """The audit's numbers: 22 MB per 100,000 steps of exact Adam, copied by every
    state_dict(). Now the snapshot's size after 3 restarts equals its size after 1."""
    opt = Adam(np.zeros((4, 2)), lr=1e-3, mode="exact")
    empty_i, empty_v = np.zeros(0, np.int64), np.zeros((0, 2))
    sizes = []
    for t in range(1, 3 * SPAN + 2):
        opt.step(empty_i, empty_v)
        if t % SPAN == 1 and t > 1:
            sizes.append(_state_bytes(opt))
    assert len(sizes) == 3 and sizes[0] == sizes[1] == sizes[2]


@pytest.mark.parametrize("name", ["adam", "sgd_momentum_wd"])
def test_save_load_across_a_restart_gives_the_same_bits(tmp_path, rng, name):
    make, _ = CASES[name]
    p0 = random_param(rng, NUM_ROWS, (3,), np.float64)
    steps = make_exact_steps(rng, NUM_ROWS, SPAN + 300, (3,), np.float64, never=1, cold=2,
                             p_touch=0.2)
    straight_param = p0.copy()
    straight = make(straight_param)
    for idx, vals in steps:
        straight.step(idx, vals)
    straight.flush()

    param = p0.copy()
    opt = make(param)
    cut = SPAN + 100  # after the restart at SPAN, inside the second record
    for idx, vals in steps[:cut]:
        opt.step(idx, vals)
    assert int(opt.state["history_start"][0]) == SPAN
    sparseopt.save(tmp_path / "opt.npz", opt)
    resumed_param = param.copy()
    resumed = make(resumed_param)
    sparseopt.load(tmp_path / "opt.npz", resumed)
    for idx, vals in steps[cut:]:
        resumed.step(idx, vals)
    resumed.flush()
    assert np.array_equal(resumed_param, straight_param)


def test_a_snapshot_whose_rows_predate_its_record_is_refused(rng):
    opt = SGD(np.zeros((NUM_ROWS, 3)), lr=0.1, momentum=0.9, mode="exact")
    for t in range(SPAN + 10):
        opt.step(np.array([t % NUM_ROWS]), np.ones((1, 3)))
    sd = opt.state_dict()
    sd["state"]["last_step"][0] = SPAN - 1  # older than history_start: nothing to catch it up
    with pytest.raises(ValueError, match="history_start"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["state"]["history_start"][0] = sd["step"] + 1
    with pytest.raises(ValueError, match="history_start"):
        opt.load_state_dict(sd)


CPP_TEST = Path(__file__).parent / "cpp" / "exact_bounded.cpp"


def test_a_million_steps_from_cpp_with_a_fixed_record(tmp_path):
    """10^6 exact SGD steps (a momentum window; products of step matrices) with a history
    array of exact_record_span + 1 rows, against the dense formula (tests/cpp/exact_bounded.cpp)."""
    out = run_cpp(CPP_TEST, tmp_path / "exact_bounded", sparseopt.get_include(),
                  sparseopt.info()["openmp"], timeout=600)
    assert "exact bounded ok" in out
