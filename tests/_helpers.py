"""Plain helpers for the sparseopt tests (no pytest hooks, never calls sparseopt).

References here are NumPy only. conftest.py puts this folder on sys.path, so
test modules can ``from _helpers import ...`` under any pytest import mode;
conftest.py also hands the same helpers out as session-scoped fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HAVE_TORCH = importlib.util.find_spec("torch") is not None

# The real MNIST beside the repository (../shared/data/mnist), used by the example tests
# when it is there.
MNIST_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
HAVE_MNIST = (MNIST_DIR / "train-images.idx3-ubyte.gz").is_file()

RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

FLOAT_DTYPES = (np.float32, np.float64)
INDEX_DTYPES = (np.int32, np.int64)
ROW_SHAPES = ((), (4,), (3, 2))


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def seed_for_test(path: str, nodeid: str) -> int:
    """The rng fixture's seed for the test ``nodeid`` defined in the file ``path``: a hash of
    ``tests/<file relative to this folder>::<test name>``, which is the node id pytest gives
    when it runs from the repository root, whatever folder it actually runs from."""
    rel = os.path.relpath(os.path.abspath(path), TESTS_DIR).replace(os.sep, "/")
    name = nodeid.split("::", 1)[1] if "::" in nodeid else ""
    key = f"tests/{rel}::{name}"
    return sum(ord(c) * (i + 1) for i, c in enumerate(key)) % (2**32)


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def assert_close(actual, ref, dtype=None, rtol=None, err_msg=""):
    """assert_allclose with the suite's tolerance.

    float32: rtol 1e-6, float64: rtol 1e-12; atol = rtol * max(1, max|ref|).
    """
    actual = np.asarray(actual)
    ref = np.asarray(ref)
    if dtype is None:
        dtype = ref.dtype
    if rtol is None:
        rtol = rtol_for(dtype)
    assert actual.shape == ref.shape, (actual.shape, ref.shape, err_msg)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    atol = rtol * max(1.0, scale)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol, err_msg=err_msg)


def make_step(
    rng,
    num_rows,
    row_shape=(),
    dtype=np.float64,
    index_dtype=np.int64,
    nnz=None,
    touch_rows=None,
    dup=True,
    scale=1.0,
):
    """A random row-sparse gradient (indices, values) that contains duplicates.

    ``touch_rows``: the pool the indices are drawn from (default: all rows).
    With ``dup`` the sample is with replacement and at least one duplicate is
    forced whenever nnz >= 2.
    """
    pool = np.arange(num_rows) if touch_rows is None else np.asarray(touch_rows)
    if nnz is None:
        nnz = int(rng.integers(1, max(2, 2 * len(pool)) + 1))
    if dup:
        idx = rng.choice(pool, size=nnz, replace=True)
        if nnz >= 2:
            idx[-1] = idx[0]  # guarantee a repeat
    else:
        nnz = min(nnz, len(pool))
        idx = rng.choice(pool, size=nnz, replace=False)
    idx = np.ascontiguousarray(idx.astype(index_dtype))
    vals = np.ascontiguousarray(
        (scale * rng.standard_normal((nnz, *row_shape))).astype(dtype)
    )
    return idx, vals


def empty_step(row_shape=(), dtype=np.float64, index_dtype=np.int64):
    return (
        np.zeros((0,), dtype=index_dtype),
        np.zeros((0, *row_shape), dtype=dtype),
    )


def make_steps(
    rng,
    num_rows,
    n_steps,
    row_shape=(),
    dtype=np.float64,
    index_dtype=np.int64,
    empty_every=0,
    hot_rows=None,
):
    """A list of random steps with duplicates.

    Each step touches a random subset of rows (so some rows are skipped in
    some steps); ``empty_every`` > 0 makes every such step an empty gradient;
    ``hot_rows`` rows are never touched when given as an int (they stay
    untouched for the whole sequence, to check laziness).
    """
    steps = []
    allowed = np.arange(num_rows)
    if hot_rows is not None:
        allowed = allowed[hot_rows:]  # rows [0, hot_rows) are never touched
    for s in range(n_steps):
        if empty_every and (s % empty_every == empty_every - 1):
            steps.append(empty_step(row_shape, dtype, index_dtype))
            continue
        k = int(rng.integers(1, len(allowed) + 1))
        pool = rng.choice(allowed, size=k, replace=False)
        nnz = int(rng.integers(1, 2 * k + 2))
        steps.append(make_step(rng, num_rows, row_shape, dtype, index_dtype, nnz, pool))
    return steps


def random_param(rng, num_rows, row_shape, dtype):
    """A C-contiguous standard-normal table of shape (num_rows, *row_shape)."""
    return np.ascontiguousarray(rng.standard_normal((num_rows, *row_shape)).astype(dtype))


def coalesce_ref(indices, values):
    """Plain NumPy coalescing: unique ascending indices, duplicates summed in
    order of appearance (sequentially, in the values' dtype), counts int64."""
    indices = np.asarray(indices)
    values = np.asarray(values)
    uniq = np.unique(indices)
    pos = {int(u): k for k, u in enumerate(uniq)}
    out = np.zeros((len(uniq), *values.shape[1:]), dtype=values.dtype)
    seen = np.zeros(len(uniq), dtype=bool)
    counts = np.zeros(len(uniq), dtype=np.int64)
    for j, i in enumerate(indices.tolist()):
        k = pos[i]
        if seen[k]:
            out[k] = out[k] + values[j]
        else:
            out[k] = values[j]
            seen[k] = True
        counts[k] += 1
    return uniq.astype(indices.dtype), out, counts


def snapshot(opt, param):
    """(param copy, deep copy of state_dict) for 'nothing changed' checks."""
    sd = opt.state_dict()
    sd_copy = {
        "step": sd["step"],
        "hyperparams": dict(sd["hyperparams"]),
        "state": {k: np.array(v, copy=True) for k, v in sd["state"].items()},
    }
    return np.array(param, copy=True), sd_copy


def assert_unchanged(opt, param, snap):
    p0, sd0 = snap
    assert np.array_equal(param, p0, equal_nan=True), "param changed"
    assert opt.param is param
    sd = opt.state_dict()
    assert sd["step"] == sd0["step"], "step counter changed"
    assert set(sd["state"]) == set(sd0["state"])
    for k, v in sd0["state"].items():
        assert sd["state"][k].dtype == v.dtype, k
        assert np.array_equal(sd["state"][k], v, equal_nan=True), f"state {k!r} changed"
    assert set(sd["hyperparams"]) == set(sd0["hyperparams"])
    for k, v in sd0["hyperparams"].items():
        assert _same_value(sd["hyperparams"][k], v), f"hyperparam {k!r} changed"


def _same_value(a, b) -> bool:
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)) or a is None or b is None:
        return a == b
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # non-numeric content: fall back to ==
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def torch_sparse_grad(torch, indices, values, shape):
    """A torch sparse COO gradient, uncoalesced (torch.optim coalesces)."""
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64).reshape(1, -1).copy())
    val = torch.from_numpy(np.array(values, copy=True))
    return torch.sparse_coo_tensor(idx, val, tuple(shape), check_invariants=True)


# --------------------------------------------------------------------------- #
# mode="exact": dense references (appended for tests/test_exact_*.py)
# --------------------------------------------------------------------------- #
# exact mode is compared with the *dense* optimizer after flush(): a looser
# tolerance than the lazy tests, since a closed-form catch-up rounds differently
# from thousands of dense steps.
EXACT_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}


def assert_close_exact(actual, ref, dtype=None, err_msg=""):
    """assert_close with the exact-mode tolerance: float32 rtol 1e-5, float64 rtol 1e-9,
    atol = rtol * max(1, max|ref|)."""
    ref = np.asarray(ref)
    dtype = ref.dtype if dtype is None else np.dtype(dtype)
    assert_close(actual, ref, dtype, rtol=EXACT_RTOL[np.dtype(dtype)], err_msg=err_msg)


def densify(indices, values, shape):
    """The dense gradient of a row-sparse step: zeros for untouched rows, repeats summed."""
    values = np.asarray(values)
    g = np.zeros(shape, dtype=values.dtype)
    np.add.at(g, np.asarray(indices, dtype=np.int64), values)
    return g


def make_exact_steps(
    rng,
    num_rows,
    n_steps,
    row_shape=(),
    dtype=np.float64,
    index_dtype=np.int64,
    *,
    never=1,
    cold=2,
    p_touch=0.4,
    empty_every=0,
    first_empty=False,
    scale=1.0,
    row_scale=None,
):
    """Steps for exact-mode tests (every non-empty step holds a repeated index).

    rows [0, never): never touched.
    rows [never, never + cold): "cold" rows. Cold row c is touched at step c + 1 only,
    and, for odd c, once more at step n_steps - 2 - c: it stays untouched for almost
    the whole run and is then caught up by a step (odd c) or only by flush() (even c).
    other rows: each touched with probability p_touch at every step.
    ``empty_every`` > 0: every such step leaves out the other rows (an empty step
    unless a cold row is due); ``first_empty``: step 0 is empty.
    Values are standard normal * scale * row_scale[row].
    """
    if row_scale is None:
        row_scale = np.ones(num_rows)
    row_scale = np.asarray(row_scale, dtype=np.float64)
    warm = np.arange(never + cold, num_rows)
    due = {}
    for c in range(cold):
        row = never + c
        due.setdefault(c + 1, []).append(row)
        late = n_steps - 2 - c
        if c % 2 == 1 and late > c + 1:
            due.setdefault(late, []).append(row)
    steps = []
    for s in range(n_steps):
        rows = list(due.get(s, []))
        skip_warm = (first_empty and s == 0) or (
            empty_every and s % empty_every == empty_every - 1
        )
        if first_empty and s == 0:
            rows = []
        if not skip_warm and len(warm):
            rows += [int(r) for r in warm[rng.random(len(warm)) < p_touch]]
        if not rows:
            steps.append(empty_step(row_shape, dtype, index_dtype))
            continue
        rows = np.array(rows, dtype=np.int64)
        extra = rng.choice(rows, size=int(rng.integers(1, len(rows) + 1)), replace=True)
        idx = np.concatenate([rows, extra])
        rng.shuffle(idx)
        vals = rng.standard_normal((len(idx), *row_shape))
        vals *= (scale * row_scale[idx]).reshape((-1,) + (1,) * len(row_shape))
        steps.append(
            (
                np.ascontiguousarray(idx.astype(index_dtype)),
                np.ascontiguousarray(vals.astype(dtype)),
            )
        )
    return steps


def lr_schedule(rng, n_steps, lr0, kind="cosine"):
    """A learning rate for every step. "cosine": cosine decay from lr0 towards lr0/20
    with +-50 % noise on every step; "random": lr0 * U(0.1, 2) every step;
    "zeros": "random" with lr exactly 0 at every 7th step."""
    if kind == "cosine":
        s = np.arange(n_steps)
        base = 0.05 + 0.95 * 0.5 * (1.0 + np.cos(np.pi * s / max(1, n_steps)))
        lrs = lr0 * base * rng.uniform(0.5, 1.5, n_steps)
    elif kind in ("random", "zeros"):
        lrs = lr0 * rng.uniform(0.1, 2.0, n_steps)
        if kind == "zeros":
            lrs[6::7] = 0.0
    else:
        raise ValueError(kind)
    return [float(x) for x in lrs]


def run_torch_dense(torch, name, p0, steps, lrs=None, checkpoints=(), **kw):
    """The dense torch.optim.<name> (default implementation) fed densified gradients.

    Returns {steps_done: (param, {state name: array})} for every checkpoint and for
    the end of the run; the state holds torch's tensors except "step".
    """
    p = torch.nn.Parameter(torch.from_numpy(np.array(p0, copy=True)))
    opt = getattr(torch.optim, name)([p], **kw)
    out = {}

    def record(n):
        st = {
            k: v.detach().numpy().copy()
            for k, v in opt.state[p].items()
            if k != "step" and hasattr(v, "detach")
        }
        out[n] = (p.detach().numpy().copy(), st)

    for s, (idx, vals) in enumerate(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = float(lrs[s])
        p.grad = torch.from_numpy(densify(idx, vals, p0.shape))
        opt.step()
        if s + 1 in checkpoints:
            record(s + 1)
    record(len(steps))
    return out


def run_sparse(opt, steps, lrs=None, checkpoints=(), state_names=None):
    """Feed ``steps`` to a sparseopt optimizer (setting opt.lr from ``lrs``); at every
    checkpoint and at the end: flush() and record (param copy, {name: state copy})."""
    out = {}

    def record(n):
        opt.flush()
        sd = opt.state_dict()["state"]
        names = sd.keys() if state_names is None else state_names
        out[n] = (np.array(opt.param, copy=True), {k: np.array(sd[k], copy=True) for k in names})

    for s, (idx, vals) in enumerate(steps):
        if lrs is not None:
            opt.lr = lrs[s]
        opt.step(idx, vals)
        if s + 1 in checkpoints:
            record(s + 1)
    record(len(steps))
    return out


def assert_runs_close(actual, ref, dtype, names, what=""):
    """Compare run_sparse output with run_torch_dense output (or another run) at every
    recorded point: param and the named state arrays, exact-mode tolerance."""
    assert set(actual) == set(ref), (sorted(actual), sorted(ref))
    for n in sorted(ref):
        p_ref, st_ref = ref[n]
        p_act, st_act = actual[n]
        assert p_act.dtype == np.dtype(dtype)
        assert_close_exact(p_act, p_ref, dtype, err_msg=f"{what} param after {n} steps")
        for name in names:
            assert name in st_act, f"{what}: state {name!r} missing"
            assert name in st_ref, f"{what}: reference has no state {name!r}"
            assert st_act[name].dtype == np.dtype(dtype), name
            assert_close_exact(
                st_act[name], st_ref[name], dtype, err_msg=f"{what} {name} after {n} steps"
            )


def build_cpp(source, exe, include: str, openmp: bool) -> None:
    """Compiles the C++17 program `source` into `exe` against the headers in `include`
    (-Wall -Wextra -Werror; with -fopenmp when the package was built with OpenMP and the
    compiler takes it, else the serial build). Skips the test without a C++ compiler."""
    import pytest

    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None or sys.platform == "win32":
        pytest.skip("needs a C++ compiler")
    # SPARSEOPT_TEST_CXXFLAGS: extra flags, e.g. the sanitizer job's -fsanitize=... (.ci/sanitize)
    extra = os.environ.get("SPARSEOPT_TEST_CXXFLAGS", "").split()
    base = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", *extra, "-I", include,
            str(source), "-o", str(exe)]
    flags = ["-fopenmp"] if openmp else []
    done = subprocess.run(base + flags, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and flags:  # a compiler without OpenMP: the serial build
        done = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def run_cpp(source, exe, include: str, openmp: bool, args=(), timeout: int = 120) -> str:
    """Builds `source` into `exe` (as build_cpp) and runs it with `args`; asserts that it exits
    with 0 and returns what it printed."""
    build_cpp(source, exe, include, openmp)
    run = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def load_bench(name: str):
    """The module bench/<name>.py (importing bench/harness.py as it does), or a pytest skip
    when bench/ is not next to the tests."""
    import pytest

    bench = Path(TESTS_DIR).parent / "bench"
    if not (bench / f"{name}.py").exists():
        pytest.skip("bench/ is not next to the tests")
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(f"_{name}", bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module


class DeviceStandIn:
    """Claims to be a device array (as CuPy's arrays do, through __cuda_array_interface__) but
    wraps a NumPy array in host memory: for the dispatch to the CUDA kernels on machines
    without a device (the binding itself refuses it: host memory)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.array.shape, "typestr": self.array.dtype.str,
                "data": (self.array.ctypes.data, False), "version": 3, "strides": None}

    def __getitem__(self, key):
        return DeviceStandIn(self.array[key])
