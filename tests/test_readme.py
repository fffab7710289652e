"""The README cannot rot: every fenced ```python block runs as pasted (each in a fresh
interpreter, in a temporary folder), its C++ block compiles and runs, its links lead somewhere,
and the benchmark and example tables live where the scripts that write them look."""

from __future__ import annotations

import importlib.util
import os
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sparseopt

from _helpers import build_cpp

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

if not README.is_file():
    pytest.skip("no source tree next to tests/", allow_module_level=True)

TEXT = README.read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, re.S | re.M)


PYTHON_BLOCKS = _blocks("python")


def test_the_readme_is_short_and_has_its_parts():
    assert len(TEXT.splitlines()) < 300
    # the two set-up commands, exactly as CI (.ci/run) runs the second
    assert "```bash\npip install . && python -m sparseopt demo\n```" in TEXT
    assert "```bash\npip install \".[test]\" && python -m pytest\n```" in TEXT
    for heading in ("## For PyTorch users", "## API tour", "## C++", "## Benchmarks",
                    "## Limits"):
        assert heading in TEXT
    assert len(PYTHON_BLOCKS) >= 3
    # full tables live in bench/ and examples/; the README has the k-sparse study's digest only
    assert re.findall(r"<!-- bench:(\w+) -->", TEXT) == ["ksparse_autoencoder"]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_pasted(index, tmp_path):
    code = PYTHON_BLOCKS[index]
    if "import torch" in code and importlib.util.find_spec("torch") is None:
        pytest.skip("the PyTorch quickstart needs torch (CI installs it)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "SPARSEOPT_PROGRESS": "0"})
    assert done.returncode == 0, f"README python block {index}:\n{code}\n{done.stderr}"


def test_the_hogwild_block_prints_the_summed_step_count(tmp_path):
    block = next(b for b in PYTHON_BLOCKS if "hogwild.run" in b)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["[3, 2]", "5"], done.stdout + done.stderr


CPP_MAIN = """\
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>
#include <sparseopt/sparseopt.hpp>

int main() {
  const std::int64_t num_rows = 5, width = 3, n = 2;
  std::vector<float> param(num_rows * width, 0.5f), m(param.size()), v(param.size());
  const std::vector<std::int64_t> indices = {3, 1};
  const std::vector<float> values(n * width, 1.0f);
  const std::int64_t t = 1;
%s
  for (float p : param)
    if (!std::isfinite(p)) return 1;
  // rows 1 and 3 took a lazy and an exact step, the others none
  if (param[0] != 0.5f || !(param[1 * width] < 0.5f) || !(param[3 * width] < 0.5f)) return 2;
  std::printf("readme c++ ok\\n");
  return 0;
}
"""


def test_cpp_block_compiles_and_runs(tmp_path):
    blocks = _blocks("cpp")
    assert len(blocks) == 1
    body = "\n".join("  " + line for line in blocks[0].splitlines()
                     if not line.startswith("#include"))
    source = tmp_path / "readme.cpp"
    source.write_text(CPP_MAIN % body)
    include = REPO / "cpp" / "include"
    exe = tmp_path / "readme"
    build_cpp(source, exe, str(include if include.is_dir() else sparseopt.get_include()),
              sparseopt.info()["openmp"])
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "readme c++ ok" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md", "bench/README.md",
                                 "examples/README.md"])
def test_relative_links_lead_to_files(doc):
    path = REPO / doc
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{doc} links to {target}, which is not there"


def test_tables_live_where_their_scripts_write_them():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import harness
    finally:
        sys.path.pop(0)
    spec = importlib.util.spec_from_file_location("_bench_run", REPO / "bench" / "run.py")
    bench_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_run)
    for name in bench_run.BENCHMARKS:  # bench/run.py --update-readme
        harness.check_markers(name, REPO / "bench" / "README.md")
    for name in ("meprop_mnist", "meprop_mnist_unified", "torch_text_classifier", "half_tables"):
        harness.check_markers(name, REPO / "examples" / "README.md")
    harness.check_markers("ksparse_autoencoder", REPO / "README.md")
    # and no other script splices into the top-level README
    for script in [*REPO.glob("examples/*.py"), *REPO.glob("bench/*.py")]:
        for line in script.read_text().splitlines():
            if "splice_readme(" in line and "def splice_readme" not in line:
                assert not re.search(r'REPO\w* / "README.md"', line) or script.name == "ksparse_autoencoder.py", \
                    f"{script.name}: {line.strip()}"


def test_the_ksparse_digest_is_the_saved_runs():
    """The README's k-sparse tables are what the example writes from its committed full run
    (examples/output/ksparse_autoencoder.json), not typed."""
    spec = importlib.util.spec_from_file_location("_ksparse", REPO / "examples" / "ksparse_autoencoder.py")
    sys.path.insert(0, str(REPO / "examples"))
    try:
        ksparse = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ksparse)
    finally:
        sys.path.pop(0)
    saved = json.loads((REPO / "examples" / "output" / "ksparse_autoencoder.json").read_text())["results"]
    assert not saved["meta"]["quick"]
    begin, end = "<!-- bench:ksparse_autoencoder -->", "<!-- /bench:ksparse_autoencoder -->"
    spliced = TEXT.split(begin)[1].split(end)[0].strip()
    assert spliced == ksparse.summary(saved).strip()
    assert (REPO / "examples" / "output" / "ksparse_autoencoder.png").is_file()


def test_gather_sums_default_is_flagged_for_torch_users():
    """gather_sum defaults to mode="sum", torch's embedding_bag to "mean": both the docstring
    and the README's tour say so where a torch user looks."""
    doc = sparseopt.gather_sum.__doc__
    assert 'mode="sum"' in doc and "embedding_bag" in doc and 'mode="mean"' in doc
    tour = next(b for b in PYTHON_BLOCKS if "gather_sum(" in b)
    assert 'defaults to "mean"' in tour


def test_bench_tables_measured_elsewhere_are_spliced_from_their_results(tmp_path):
    """`bench/run.py --from-results --only NAME` measures nothing: it splices the stored
    results/NAME.md into the README between NAME's markers (the CUDA table, measured on a GPU
    machine), and the committed cuda table is exactly its stored result."""
    spec = importlib.util.spec_from_file_location("_bench_run_splice", REPO / "bench" / "run.py")
    bench_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_run)
    (tmp_path / "cuda.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:cuda -->\nold table\n<!-- /bench:cuda -->\nafter\n")
    assert bench_run.main(["--from-results", "--only", "cuda", "--results-dir", str(tmp_path),
                           "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "| 1 | 2 |" in text
    assert text.startswith("intro\n<!-- bench:cuda -->\n") and text.endswith("<!-- /bench:cuda -->\nafter\n")
    # a table that is not stored, or --quick: an error, and the README is left as it was
    assert bench_run.main(["--from-results", "--only", "cuda", "fused", "--results-dir", str(tmp_path),
                           "--readme", str(readme)]) == 2
    assert bench_run.main(["--from-results", "--quick", "--only", "cuda", "--results-dir", str(tmp_path),
                           "--readme", str(readme)]) == 2
    assert readme.read_text() == text
    committed = (REPO / "bench" / "README.md").read_text()
    spliced = committed.split("<!-- bench:cuda -->")[1].split("<!-- /bench:cuda -->")[0].strip()
    assert spliced == (REPO / "bench" / "results" / "cuda.md").read_text().strip()
