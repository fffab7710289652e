"""Benchmark: word2vec (skip-gram, negative sampling) with sparseopt.sampled on 1 and 2 hogwild
workers against gensim's Word2Vec, in the same process, on the Shakespeare corpus.

The measurement is examples/word2vec_hogwild.py (see its docstring); this module runs it for
bench/run.py, so that ``python bench/run.py --only word2vec --update-readme`` regenerates its
table in bench/README.md like the other benchmarks (as does ``python examples/word2vec_hogwild.py
--update-readme``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "word2vec"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "word2vec_hogwild.py"


def _example():
    spec = importlib.util.spec_from_file_location("word2vec_hogwild", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def run(quick: bool = False, bandwidth: dict | None = None, machine: dict | None = None) -> dict:
    example = _example()
    args = example.parse_args(["--quick"] if quick else [])
    data, md = example.run(args)
    return dict(data, markdown=md)
