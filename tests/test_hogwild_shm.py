"""hogwild's shared memory: the allocator (zeros/empty/share, zero-copy into the kernels and into
spawned workers), optimizers over it (share_memory, replica), what run() refuses, and that no
segment outlives its process: after a normal exit, a worker exception, a worker that dies, an
interrupted parent (a real SIGINT) and a parent killed outright.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sparseopt import hogwild
from sparseopt.optim import SGD, Adagrad, Adam, AdamW

import _hogwild_helpers as W

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_DEV_SHM = os.path.isdir("/dev/shm")
TIMEOUT = 300  # seconds, for subprocesses on a busy machine
needs_dev_shm = pytest.mark.skipif(not HAVE_DEV_SHM, reason="segments are checked in /dev/shm")
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def own_segments() -> set[str]:
    return set(glob.glob(f"/dev/shm/sparseopt_{os.getpid()}_*"))


# -- the allocator ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_zeros_empty_share(rng, dtype):
    z = hogwild.zeros((5, 3), dtype)
    assert z.dtype == dtype and z.shape == (5, 3) and not z.any()
    assert z.flags.c_contiguous and z.flags.writeable and z.flags.aligned
    e = hogwild.empty(7, dtype)
    assert e.shape == (7,) and e.dtype == dtype
    src = (100 * rng.standard_normal((4, 2, 3))).astype(dtype)
    s = hogwild.share(src[:, :, ::-1])  # a non-contiguous source: a contiguous copy
    assert s.flags.c_contiguous and np.array_equal(s, src[:, :, ::-1])
    for a in (z, e, s, s[1:], s[:, 1, ::2], s.T):
        assert hogwild.is_shared(a)
    assert not hogwild.is_shared(src) and not hogwild.is_shared(np.zeros(3))
    assert hogwild.zeros((0, 4)).shape == (0, 4)


def test_allocator_rejects(rng):
    with pytest.raises(TypeError, match="Python objects"):
        hogwild.zeros(3, object)
    with pytest.raises(ValueError, match="shape"):
        hogwild.zeros((2, -1))
    with pytest.raises(TypeError, match="shape"):
        hogwild.empty("3")
    with pytest.raises(TypeError, match="is_shared"):
        hogwild.is_shared([1, 2])
    with pytest.raises(ValueError, match="shared memory"):
        hogwild.release(np.zeros(3))


def test_kernels_update_shared_memory_in_place(rng):
    table = hogwild.share(rng.standard_normal((10, 4)))
    ref = table.copy()
    SGD(table, lr=0.5).step(np.array([1, 1, 7]), np.ones((3, 4)))
    SGD(ref, lr=0.5).step(np.array([1, 1, 7]), np.ones((3, 4)))
    assert np.array_equal(table, ref)


@needs_dev_shm
def test_segment_lives_as_long_as_its_arrays():
    before = own_segments()
    a = hogwild.zeros((100, 8))
    (name,) = own_segments() - before
    view = a[10:20]
    del a
    gc.collect()
    assert os.path.exists(name)  # the view keeps it
    view[:] = 1.0
    del view
    gc.collect()
    assert not os.path.exists(name)


@needs_dev_shm
def test_release_unlinks_now_and_keeps_the_array(rng):
    before = own_segments()
    table = hogwild.share(rng.standard_normal((6, 2)))
    (name,) = own_segments() - before
    hogwild.release(table)
    assert not os.path.exists(name)
    hogwild.release(table)  # twice is fine
    table[0] = 3.0
    assert hogwild.is_shared(table) and table[0, 0] == 3.0
    opt = SGD(table, lr=1.0).share_memory()
    with pytest.raises(ValueError, match="released"):
        hogwild.run(W.info, 1, backend="spawn", args=(opt,), progress=False)
    if hasattr(os, "fork"):  # forked workers inherit the mapping
        expected = table.copy()
        expected[5] -= 1.0
        steps = [((np.array([5]), np.ones((1, 2))),)]
        hogwild.run(W.apply_steps, 1, backend="fork", args=((opt,),), worker_args=[(steps,)],
                    progress=False)
        assert np.array_equal(table, expected)


def test_shared_pickler_is_zero_copy_and_plain_pickle_copies(rng):
    table = hogwild.share(rng.standard_normal((5, 3)))
    view = table[1:4, ::2]
    data = hogwild._SharedPickler.dumps((table, view, np.arange(3)))
    t2, v2, plain = pickle.loads(data)
    assert np.array_equal(plain, np.arange(3))
    t2[0, 0] = 42.0
    v2[0, 1] = -7.0
    assert table[0, 0] == 42.0 and table[1, 2] == -7.0  # the same memory
    assert np.array_equal(v2, view)
    copy = pickle.loads(pickle.dumps(table))
    copy[0, 0] = 0.0
    assert table[0, 0] == 42.0 and not hogwild.is_shared(copy)


# -- optimizers over shared memory ----------------------------------------------------------
def test_share_memory_moves_the_state(rng):
    table = hogwild.share(rng.standard_normal((8, 3)))
    opt = Adam(table, lr=0.1, amsgrad=True, bias_correction="row")
    opt.step(np.array([1, 2, 2]), np.ones((3, 3)))
    before = opt.state_dict()
    assert not hogwild.is_shared(opt)
    assert opt.share_memory() is opt
    assert hogwild.is_shared(opt)
    after = opt.state_dict()
    assert after["step"] == before["step"] == 1
    for name, a in before["state"].items():
        assert np.array_equal(after["state"][name], a), name
        assert hogwild.is_shared(opt.state[name])
    opt.load_state_dict(before)  # copies into the shared arrays, which stay shared
    assert hogwild.is_shared(opt)


def test_share_memory_and_replica_refuse(rng):
    private = Adagrad(rng.standard_normal((4, 2)))
    before = private.state
    with pytest.raises(ValueError, match=r"hogwild\.share"):
        private.share_memory()
    assert all(private.state[k] is v for k, v in before.items())  # nothing moved
    table = hogwild.share(rng.standard_normal((4, 2)))
    exact = AdamW(table, mode="exact")
    exact.step(np.array([1]), np.ones((1, 2)))
    snap = exact.state_dict()
    for call in (exact.share_memory, exact.replica):
        with pytest.raises(ValueError, match="mode='exact'"):
            call()
    assert not any(hogwild.is_shared(a) for a in exact.state.values())
    after = exact.state_dict()
    assert after["step"] == snap["step"]
    assert all(np.array_equal(after["state"][k], v) for k, v in snap["state"].items())


def test_optimizer_pickles(rng):
    table = rng.standard_normal((6, 2))
    opt = Adagrad(table, lr=0.3, lr_decay=0.1)
    opt.step(np.array([0, 5]), np.ones((2, 2)))
    copy = pickle.loads(pickle.dumps(opt))
    assert type(copy) is Adagrad and copy.step_count == 1 and copy.lr == 0.3
    assert copy.param is not table and np.array_equal(copy.param, table)
    copy.step(np.array([0]), np.ones((1, 2)))
    opt.step(np.array([0]), np.ones((1, 2)))
    assert np.array_equal(copy.param, table)


@pytest.mark.parametrize("backend", ["thread", "fork", "spawn"])
def test_run_refuses_exact_mode_before_starting(rng, backend):
    table = hogwild.share(rng.standard_normal((4, 2)))
    lazy = SGD(table, lr=0.1).share_memory()
    exact = SGD(hogwild.share(rng.standard_normal((4, 2))), lr=0.1, momentum=0.9, mode="exact")
    before = table.copy()
    steps = [((np.array([1]), np.ones((1, 2))),)]
    with pytest.raises(ValueError, match=r"kwargs\['unused'\].*mode='exact'"):
        hogwild.run(W.apply_steps, 1, backend=backend, args=((lazy,), steps),
                    kwargs={"unused": exact}, progress=False)
    assert np.array_equal(table, before)  # no worker ran


@pytest.mark.parametrize("backend", ["fork", "spawn"])
def test_processes_refuse_private_arrays(rng, backend):
    private = Adagrad(rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match=r"args\[1\]\[0\]: its param is not in shared memory"):
        hogwild.run(W.info, 2, backend=backend, args=(1, [private]), progress=False)
    half = Adagrad(hogwild.share(rng.standard_normal((4, 2))))  # state not shared yet
    with pytest.raises(ValueError, match=r"its sum is not in shared memory.*share_memory"):
        hogwild.run(W.info, 2, backend=backend, worker_args=[(half,), (half,)], progress=False)


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        hogwild.run(W.info, 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        hogwild.run(W.info, 1, backend="forkserver")
    with pytest.raises(TypeError, match="worker_fn must be callable"):
        hogwild.run("info", 1)
    with pytest.raises(TypeError, match="args must be a tuple"):
        hogwild.run(W.info, 1, args=np.zeros(3))
    with pytest.raises(ValueError, match=r"worker_args must hold num_workers \(2\)"):
        hogwild.run(W.info, 2, worker_args=[()])
    with pytest.raises(TypeError, match="sequence of tuples"):
        hogwild.run(W.info, 2, worker_args=[1, 2])
    with pytest.raises(ValueError, match="threads_per_worker must be >= 0"):
        hogwild.run(W.info, 1, threads_per_worker=-1)


# -- nothing leaks ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _scenario(scenario: str, backend: str, *, signal_parent: int | None = None):
    """Run _hogwild_scenarios.py; with signal_parent, send it that signal once both workers
    said READY. Returns (returncode, stdout lines, stderr, names, worker pids)."""
    env = dict(os.environ, SPARSEOPT_PROGRESS="0", PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "_hogwild_scenarios.py", scenario, backend],
                            cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.start()
    try:
        lines, pids = [], []
        if signal_parent is not None:
            ready = set()
            for line in proc.stdout:
                lines.append(line.strip())
                ready.update(re.findall(r"READY (\d+) (\d+)", line))
                if len(ready) == 2:
                    break
            pids = sorted({int(pid) for pid, _ in ready})
            os.kill(proc.pid, signal_parent)
        out, err = proc.communicate()
    finally:
        watchdog.cancel()
    lines += out.splitlines()
    names = json.loads(next(line for line in lines if line.startswith("NAMES"))[6:])
    assert len(names) == 3, names  # the table, Adagrad's sum, one more block
    assert all(name.startswith(f"/dev/shm/sparseopt_{proc.pid}_") for name in names), names
    return proc.returncode, lines, err, names, pids


def _assert_released(names, pid, err):
    assert not [n for n in names if os.path.exists(n)], names
    assert not glob.glob(f"/dev/shm/sparseopt_{pid}_*")
    assert "leaked shared_memory" not in err, err


BACKENDS = ["thread", pytest.param("fork", marks=needs_fork), "spawn"]


@needs_dev_shm
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_leak_after_normal_exit(backend):
    rc, lines, err, names, _ = _scenario("normal", backend)
    assert rc == 0, err
    assert "DONE" in lines
    _assert_released(names, int(names[0].split("_")[1]), err)


@needs_dev_shm
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_leak_after_worker_exception(backend):
    rc, _, err, names, _ = _scenario("raise", backend)
    assert rc == 1
    assert "ValueError: scenario worker failed" in err and "raise_in" in err, err
    if backend != "thread":
        assert "RemoteTraceback" in err
    _assert_released(names, int(names[0].split("_")[1]), err)


@needs_dev_shm
@pytest.mark.parametrize("backend, scenario, message", [
    pytest.param("fork", "exit", "exited with code 3", marks=needs_fork),
    pytest.param("fork", "kill", "killed by signal SIGKILL", marks=needs_fork),
    ("spawn", "kill", "killed by signal SIGKILL"),
])
def test_no_leak_after_worker_dies(backend, scenario, message):
    rc, _, err, names, _ = _scenario(scenario, backend)
    assert rc == 1
    assert "WorkerError" in err and message in err, err
    _assert_released(names, int(names[0].split("_")[1]), err)


@needs_dev_shm
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_leak_after_sigint_to_the_parent(backend):
    rc, _, err, names, pids = _scenario("interrupt", backend, signal_parent=signal.SIGINT)
    assert rc in (-signal.SIGINT, 1, 130), (rc, err)
    assert "KeyboardInterrupt" in err, err
    if backend != "thread":
        assert len(set(pids)) == 2
        assert _wait_until(lambda: not any(_alive(p) for p in pids), 30), pids
    _assert_released(names, int(names[0].split("_")[1]), err)


@needs_dev_shm
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent "
                    "through Linux's PR_SET_PDEATHSIG")
@pytest.mark.parametrize("backend", [pytest.param("fork", marks=needs_fork), "spawn"])
def test_parent_killed_outright(backend):
    """SIGKILL leaves the parent no chance to clean up: its workers die with it, and Python's
    resource tracker then unlinks what the parent had created."""
    rc, _, err, names, pids = _scenario("interrupt", backend, signal_parent=signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert _wait_until(lambda: not any(_alive(p) for p in pids), 60), pids
    assert _wait_until(lambda: not any(os.path.exists(n) for n in names), 60), names
