"""The device's exact-mode catch-up (cpp/cuda/src/exact.cu, adam_catch_up_element), written
plainly in NumPy from its formula, against the CPU optimizer's flush: the host record's columns
mean what the kernel reads (lr, L, c, q at row t - history_start), the truncation at the window
is harmless, and AdamW's decay is folded in as the kernel folds it. Runs without a GPU; the
kernel itself is compared with the CPU in tests/cuda/test_cuda_exact.py where a GPU exists.
Keep this transcription in step with exact.cu."""

from __future__ import annotations

import numpy as np
import pytest

from sparseopt import optim


def catch_up(state: dict, param: np.ndarray, window: int, e: int, beta1: float, beta2: float,
             amsgrad: bool, decays: bool) -> None:
    """Every row of `param` and its state from last_step to step e with zero gradients, as the
    kernel does: the per-step recurrence in float64 over at most `window` steps."""
    m, v, last = state["exp_avg"], state["exp_avg_sq"], state["last_step"]
    v_hat = state["max_exp_avg_sq"] if amsgrad else v
    record, first = state["history"], int(state["history_start"][0])
    root_beta2 = 1.0 if amsgrad else np.sqrt(beta2)
    for r in range(param.shape[0]):
        s = int(last[r])
        k = e - s
        if k <= 0:
            continue
        mi, ui = m[r].astype(np.float64), np.sqrt(v_hat[r].astype(np.float64))
        drift = np.zeros_like(mi)
        log_end = record[e - first, 1]
        for t in range(s + 1, s + min(k, window) + 1):
            lr_c, q = record[t - first, 2], record[t - first, 3]
            mi = mi * beta1
            ui = ui * root_beta2
            term = lr_c * mi / (ui + q)
            drift += term * np.exp(log_end - record[t - first, 1]) if decays else term
        decay = np.exp(log_end - record[s - first, 1]) if decays else 1.0
        param[r] = (param[r].astype(np.float64) * decay - drift).astype(param.dtype)
        m[r] = (m[r].astype(np.float64) * beta1 ** k).astype(m.dtype)
        v[r] = (v[r].astype(np.float64) * beta2 ** k).astype(v.dtype)
        last[r] = e


@pytest.mark.parametrize("name,hyper", [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, bias_correction="none")),
    ("Adam", dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_device_catch_up_formula_equals_the_cpu_flush(name, hyper, dtype):
    rng = np.random.default_rng(1)
    host = rng.standard_normal((48, 33)).astype(dtype)
    opt = getattr(optim, name)(host, mode="exact", **hyper)
    for step in range(480):  # rows 36..47 only at step 4 (30 indices): gaps past the window (~400)
        n = (0, 1, 6, 30)[step % 4]
        indices = rng.integers(0, 48 if step == 3 else 36, n)
        opt.step(indices, rng.standard_normal((n, 33)).astype(dtype))
    state = {name_: a.copy() for name_, a in opt._state.items()}
    param = host.copy()
    o = opt._options
    catch_up(state, param, opt._options.exact_layout()[0], opt.step_count, o.beta1, o.beta2, o.amsgrad,
             o.weight_decay != 0.0)
    opt.flush()
    rtol = 1e-6 if dtype == np.float32 else 1e-11  # the CPU cuts its float64 series at 1e-12
    for got, expected in ((param, host), (state["exp_avg"], opt._state["exp_avg"]),
                          (state["exp_avg_sq"], opt._state["exp_avg_sq"])):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    assert np.array_equal(state["last_step"], opt._state["last_step"])
