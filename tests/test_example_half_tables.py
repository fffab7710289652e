"""examples/half_tables.py --quick runs end to end (synthetic data: no files needed) and writes
its outputs to the folder given, never over examples/output/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ml_dtypes")

REPO = Path(__file__).resolve().parent.parent


def test_half_tables_quick(tmp_path):
    committed = REPO / "examples" / "output" / "half_tables.json"
    before = committed.read_bytes() if committed.exists() else None
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "half_tables.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "OMP_NUM_THREADS"}})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads((tmp_path / "half_tables.json").read_text())["runs"]
    assert (tmp_path / "half_tables.md").is_file()
    assert set(runs) == {"float32", "bf16 nearest", "bf16 stochastic", "bf16 + bf16 state",
                         "bf16 nearest + state"}
    start = 0.2  # the untrained model's MSE is far above this
    for name, r in runs.items():
        assert r["train_mse"] < start, name
    assert [runs[n]["bytes_per_row"] for n in runs] == [192, 160, 160, 96, 96]
    # the study's point, at the quick size too: stochastic rounding stays close to float32,
    # rounding to nearest falls behind it
    ref = runs["float32"]["train_mse"]
    assert runs["bf16 stochastic"]["train_mse"] < 1.02 * ref
    assert runs["bf16 nearest"]["train_mse"] > 1.02 * ref
    assert (committed.read_bytes() if committed.exists() else None) == before
