"""examples/meprop_mnist.py runs end to end (a tiny run on the real MNIST when it is there)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparseopt

REPO = Path(__file__).resolve().parent.parent
MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST / "train-images.idx3-ubyte.gz").is_file(),
                    reason="MNIST is not next to the repository (../shared/data/mnist)")
def test_meprop_mnist_smoke(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "meprop_mnist.py"), "--quick", "--max-train",
         "2000", "--ks", "20", "--optimizers", "adam", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={"SPARSEOPT_PROGRESS": "0", "PATH": "/usr/bin:/bin",
             **{k: v for k, v in os.environ.items() if k == "OMP_NUM_THREADS"}})
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "meprop_mnist.json").read_text())
    result = report["results"]["adam"]
    # the meProp run gives the cores to sparseopt and holds BLAS to one thread, when it can
    if sparseopt.info()["max_threads"] > 1 and importlib.util.find_spec("threadpoolctl"):
        assert "BLAS held to 1 (threadpoolctl)" in report["meta"]["threads"]
    else:
        assert report["meta"]["threads"].startswith("sparseopt threads 1")
    assert set(result) == {"dense", "k=20"}
    for run in result.values():  # both learn (chance: 10%) and were timed
        assert run["test_acc"] > 50 and run["backward_s"] > 0
        # one epoch: its test accuracy is the one at the best dev epoch
        assert run["best_dev_epoch"] == 1 and run["test_acc_at_best_dev"] == run["test_acc"]
        assert 0 < run["curve"][0]["dev_acc"] <= 100
    assert "| Adam | meProp k=20 |" in (tmp_path / "meprop_mnist.md").read_text()
