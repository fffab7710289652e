"""examples/torch_text_classifier.py --quick runs, on the full corpus when ../shared/data has it
and on the sample shipped in examples/data/, and writes its table and results where --out says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torch_text_classifier.py"

pytestmark = pytest.mark.requires_torch


@pytest.mark.parametrize("data", ["default", "sample"])
def test_quick_run(tmp_path, data):
    args = [sys.executable, str(EXAMPLE), "--quick", "--out", str(tmp_path)]
    if data == "sample":
        args += ["--data", str(EXAMPLE.parent / "data" / "shakespeare_sample.tar.gz")]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "torch_text_classifier.json").read_text())
    assert set(result["results"]) == {"torch dense Adam", "SparseAdam + Adam", "sparseopt lazy",
                                      "sparseopt exact"}
    accs = {name: curve[-1]["test_acc"] for name, curve in result["results"].items()}
    # Lazy sparseopt is SparseAdam + Adam's algorithm, exact is dense Adam's: the same
    # predictions but for float32 rounding (torch's backward sums in its own order), so at most
    # a speech or two may differ.
    slack = 2.5 / result["test"]
    assert abs(accs["sparseopt lazy"] - accs["SparseAdam + Adam"]) <= slack
    assert abs(accs["sparseopt exact"] - accs["torch dense Adam"]) <= slack
    assert "| sparseopt exact |" in (tmp_path / "torch_text_classifier.md").read_text()
