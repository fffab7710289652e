"""--quick runs of the examples never write over the committed full-run results in
examples/output/: without --out they write to a new temporary folder (and say where)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "data" / "shakespeare_sample.tar.gz"


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


CASES = {
    "lazy_vs_exact_lr": ["--quick", "--lrs", "0.01", "--epochs", "1", "--no-stale-variant",
                         "--data", str(SAMPLE)],
    "torch_text_classifier": ["--quick", "--data", str(SAMPLE)],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_quick_run_without_out_leaves_the_committed_results_alone(name):
    if name == "torch_text_classifier":
        pytest.importorskip("torch")
    before = _fingerprint(EXAMPLES / "output")
    run = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *CASES[name]],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _fingerprint(EXAMPLES / "output") == before
    written = re.findall(r"wrote (\S+)", run.stdout + run.stderr)
    assert written and all(str(EXAMPLES / "output") not in w for w in written)


def test_the_sample_corpus_is_shipped_and_readable():
    import tarfile

    with tarfile.open(SAMPLE) as tar:
        names = sorted(Path(m.name).name for m in tar.getmembers())
    assert len(names) == 6 and all(n.endswith("_gut.txt") for n in names)
