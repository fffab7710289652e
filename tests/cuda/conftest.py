"""GPU tests: every CUDA kernel against the CPU kernels on the same inputs. They need a CUDA
device, sparseopt built with SPARSEOPT_CUDA=ON and torch with CUDA (the device arrays are torch
tensors); without any of these every test here is skipped with the reason."""

from __future__ import annotations

import pytest

from sparseopt import _device

_REASON = _device.why_not_runnable()


@pytest.fixture(autouse=True)
def _needs_a_gpu():
    if _REASON is not None:
        pytest.skip(_REASON)
