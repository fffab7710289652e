"""examples/ksparse_autoencoder.py --quick runs end to end on the real MNIST when it is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import HAVE_MNIST, MNIST_DIR

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST is not at {MNIST_DIR}")
def test_ksparse_autoencoder_quick(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ksparse_autoencoder.py"), "--quick",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "OMP_NUM_THREADS"}})
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((tmp_path / "ksparse_autoencoder.json").read_text())["results"]
    assert (tmp_path / "ksparse_autoencoder.md").is_file()
    assert set(r["main"]) == {"dense Adam", "lazy Adam", "exact Adam", "Adagrad"}
    for name, run in r["main"].items():  # every run learned (untrained: MSE ~0.1) and was timed
        assert run["test_mse"] < 0.07 and run["s_per_epoch"] > 0, name
        assert 0 < run["touched"] < 1, name  # k = 25 of 1,000 units per example
        assert 10 < run["probe_acc"] <= 100, name
    # exact Adam flushed before each forward is dense Adam (up to rounding)
    assert r["exact_vs_dense_max_abs_W"] < 1e-5
    # each unit wins 5 of each batch of 100: every row is touched at every step
    assert r["lifetime"]["touched_min"] == 1.0
    assert 0 < r["clipped"]["clipped_fraction"] <= 1
    assert len(r["observations"]) == 4
    assert r["unmasked_rel_error"] > 0
