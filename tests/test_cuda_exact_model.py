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


def momentum_drift(record: np.ndarray, first: int, s: int, e: int, window: int, mu: float,
                   scale: float) -> float:
    """momentum_drift in exact.cu: sum_{i=1}^{min(e-s, H)} scale lr_{s+i} mu^i."""
    i = np.arange(1, min(e - s, window) + 1)
    return float(np.sum(record[s + i - first, 0] * scale * mu ** i.astype(np.float64)))


def sgd_step_matrix(o, lr: float, first: bool) -> np.ndarray:
    """SgdRows::step_matrix in exact.cu (the CPU's sgd_step_matrix)."""
    k, mu_b = (1.0, 0.0) if first else (1.0 - o.dampening, o.momentum)
    if o.nesterov:
        a, b = 1.0 - lr * o.weight_decay * (1.0 + o.momentum * k), -lr * o.momentum * mu_b
    else:
        a, b = 1.0 - lr * k * o.weight_decay, -lr * mu_b
    return np.array([[a, b], [k * o.weight_decay, mu_b]])


def catch_up_sgd(state: dict, param: np.ndarray, o, window: int, pairs: bool, e: int) -> None:
    record, first, last = state["history"], int(state["history_start"][0]), state["last_step"]
    buffer = state.get("momentum_buffer")
    for r in range(param.shape[0]):
        s = int(last[r])
        if e <= s:
            continue
        if o.momentum and pairs:
            m = np.eye(2)
            for t in range(s + 1, e + 1):
                m = sgd_step_matrix(o, record[t - first, 0], t == 1) @ m
            p, b = param[r].astype(np.float64), buffer[r].astype(np.float64)
            param[r] = (m[0, 0] * p + m[0, 1] * b).astype(param.dtype)
            buffer[r] = (m[1, 0] * p + m[1, 1] * b).astype(param.dtype)
        elif o.momentum:
            drift = momentum_drift(record, first, s, e, window, o.momentum, o.momentum if o.nesterov else 1.0)
            b = buffer[r].astype(np.float64)
            param[r] = (param[r].astype(np.float64) - b * drift).astype(param.dtype)
            buffer[r] = (b * o.momentum ** (e - s)).astype(param.dtype)
        else:
            decay = np.exp(record[e - first, 1] - record[s - first, 1])
            param[r] = (param[r].astype(np.float64) * decay).astype(param.dtype)
        last[r] = e


def catch_up_rmsprop(state: dict, param: np.ndarray, o, window: int, e: int) -> None:
    record, first, last = state["history"], int(state["history_start"][0]), state["last_step"]
    for r in range(param.shape[0]):
        s = int(last[r])
        if e <= s:
            continue
        fade = o.alpha ** (e - s)
        for name in ("square_avg", "grad_avg") if o.centered else ("square_avg",):
            state[name][r] = (state[name][r].astype(np.float64) * fade).astype(param.dtype)
        if o.momentum:
            drift = momentum_drift(record, first, s, e, window, o.momentum, 1.0)
            b = state["momentum_buffer"][r].astype(np.float64)
            param[r] = (param[r].astype(np.float64) - b * drift).astype(param.dtype)
            state["momentum_buffer"][r] = (b * o.momentum ** (e - s)).astype(param.dtype)
        last[r] = e


@pytest.mark.parametrize("name,hyper", [
    ("SGD", dict(lr=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("RMSprop", dict(lr=0.01)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_device_momentum_catch_ups_equal_the_cpu_flush(name, hyper, dtype):
    rng = np.random.default_rng(2)
    host = rng.standard_normal((48, 9)).astype(dtype)
    opt = getattr(optim, name)(host, mode="exact", **hyper)
    for step in range(480):
        n = (0, 1, 6, 30)[step % 4]
        indices = rng.integers(0, 48 if step == 3 else 36, n)
        opt.step(indices, rng.standard_normal((n, 9)).astype(dtype))
        if step % 50 == 0:
            opt.lr = opt.lr * 0.9  # lr changes: the record's per-step lr is what counts
    state = {name_: a.copy() for name_, a in opt._state.items()}
    param = host.copy()
    window, o = opt._options.exact_layout()[0], opt._options
    if name == "SGD":
        catch_up_sgd(state, param, o, window, bool(o.momentum and o.weight_decay), opt.step_count)
    else:
        catch_up_rmsprop(state, param, o, window, opt.step_count)
    opt.flush()
    rtol = 1e-6 if dtype == np.float32 else 1e-11
    for key in ("param", *(k for k in ("momentum_buffer", "square_avg", "grad_avg") if k in state)):
        got, expected = (param, host) if key == "param" else (state[key], opt._state[key])
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=key)
    assert np.array_equal(state["last_step"], opt._state["last_step"])
