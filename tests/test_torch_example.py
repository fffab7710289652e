"""examples/torch_text_classifier.py --quick runs end to end, with and without the corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires_torch
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "torch_text_classifier.py"
CORPUS = REPO.parent / "shared" / "data" / "shakespeare" / "plays_modern.tar.gz"


def run_example(tmp_path: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--quick", "--out", str(tmp_path),
                           *extra], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "torch_text_classifier.md").is_file()
    return json.loads((tmp_path / "torch_text_classifier.json").read_text())


def check_runs(result: dict) -> None:
    runs = result["runs"]
    assert len(runs) == 4
    for name, r in runs.items():  # everyone learns something (chance: about 1/3) and was timed
        assert r["seconds_per_epoch"] > 0, name
        assert r["held_out_accuracy"][-1] > 0.4, name
    # exact sparseopt Adam is dense Adam: the same predictions up to float32 rounding
    dense, exact = runs["torch Adam (dense)"], runs["sparseopt.torch Adam exact"]
    assert abs(dense["held_out_accuracy"][-1] - exact["held_out_accuracy"][-1]) < 0.02


@pytest.mark.skipif(not CORPUS.is_file(), reason="the Shakespeare corpus is not in ../shared")
def test_example_on_the_corpus(tmp_path):
    result = run_example(tmp_path)
    assert result["data"].startswith("Shakespeare")
    check_runs(result)


def test_example_without_the_corpus_says_synthetic(tmp_path):
    result = run_example(tmp_path, "--data", str(tmp_path / "absent.tar.gz"))
    assert result["data"].startswith("SYNTHETIC")
    check_runs(result)
