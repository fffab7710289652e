"""pytest configuration for the sparseopt test suite.

Plain helpers live in _helpers.py (importable from test modules under any
import mode, because this file puts the tests folder on sys.path). The same
helpers are handed out here as *session-scoped* fixtures returning plain
functions, so they also work inside Hypothesis tests (which must not use
function-scoped fixtures). Nothing here calls sparseopt.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _helpers as H  # noqa: E402

try:  # Hypothesis: never write a database into the repository; no deadlines.
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile(
        "sparseopt", database=None, deadline=None, max_examples=40, derandomize=True
    )
    _hyp_settings.load_profile("sparseopt")
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires_torch: compares against PyTorch; skipped when torch is absent"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # When a Hypothesis test fails, Hypothesis's pytest plugin imports
    # hypothesis.extra._patching (libcst, which imports mypy_extensions and
    # emits a DeprecationWarning). Under filterwarnings=error that warning
    # turns a test failure into an INTERNALERROR that aborts the session.
    # Import it first, with that third-party warning silenced, so the
    # failure is reported normally.
    if getattr(item, "_hypothesis_failing_examples", None):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import hypothesis.extra._patching  # noqa: F401
            except ImportError:
                pass
    return (yield)


def pytest_collection_modifyitems(config, items):
    if H.HAVE_TORCH:
        return
    skip = pytest.mark.skip(reason="PyTorch is not installed")
    for item in items:
        if "requires_torch" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def torch():
    """The torch module, or a clean skip when it is absent."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng(request):
    """A fresh, reproducible Generator per test (seeded from the test's id as seen from the
    repository root, so the data do not depend on the folder pytest runs from)."""
    return np.random.default_rng(H.seed_for_test(str(request.node.path), request.node.nodeid))


@pytest.fixture(scope="session")
def assert_close():
    """assert_close(actual, ref, dtype=None): float32 rtol 1e-6, float64 rtol 1e-12,
    atol = rtol * max(1, max|ref|)."""
    return H.assert_close


@pytest.fixture(scope="session")
def make_step():
    """make_step(rng, num_rows, row_shape, dtype, index_dtype, nnz=None, touch_rows=None)
    -> (indices, values) with duplicate indices."""
    return H.make_step


@pytest.fixture(scope="session")
def make_steps():
    """make_steps(rng, num_rows, n_steps, row_shape, dtype, index_dtype, empty_every=0,
    hot_rows=None) -> list of (indices, values)."""
    return H.make_steps


@pytest.fixture(scope="session")
def empty_step():
    """empty_step(row_shape, dtype, index_dtype) -> (indices[0], values[0, *row_shape])."""
    return H.empty_step


@pytest.fixture(scope="session")
def coalesce_ref():
    return H.coalesce_ref


@pytest.fixture(scope="session")
def snapshot():
    return H.snapshot


@pytest.fixture(scope="session")
def assert_unchanged():
    return H.assert_unchanged


@pytest.fixture(scope="session")
def torch_sparse_grad(torch):
    """torch_sparse_grad(indices, values, shape) -> uncoalesced torch sparse COO tensor."""

    def f(indices, values, shape):
        return H.torch_sparse_grad(torch, indices, values, shape)

    return f
