"""What the text examples share: where their corpus comes from, and where their results go."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The full corpus, beside the repository (CI and the developers have it; a clone does not).
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "shakespeare" / "plays_modern.tar.gz"
# Shipped with the repository: six plays, for a clone without the full corpus.
SAMPLE_DATA = HERE / "data" / "shakespeare_sample.tar.gz"
DEFAULT_OUT = HERE / "output"


def resolve_corpus(data: Path | None) -> Path:
    """``data`` if given (it must exist), else the full corpus, else the shipped sample (and say
    so on stderr)."""
    if data is None:
        data = DEFAULT_DATA
        if not DEFAULT_DATA.exists():
            data = SAMPLE_DATA
            print(f"note: no corpus at {DEFAULT_DATA}: using the SAMPLE of six plays shipped in "
                  f"examples/data/ (pass --data plays_modern.tar.gz for the full run)",
                  file=sys.stderr, flush=True)
    if not data.exists():
        sys.exit(f"error: --data {data}: no such file or directory")
    return data


def output_folder(out: Path | None, full_run: bool, prefix: str) -> Path:
    """``out`` if given; else examples/output/, which holds the committed results of the full
    runs, for a full run only, and a new temporary folder for any other run."""
    if out is not None:
        return out
    return DEFAULT_OUT if full_run else Path(tempfile.mkdtemp(prefix=prefix))
