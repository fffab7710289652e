"""What the wheel ships besides code: the type stub of the compiled module (it lists every name
the module has, with the module's own parameter names), the LICENSE and the metadata that
names it."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import sparseopt
from sparseopt import _core

STUB = Path(sparseopt.__file__).resolve().parent / "_core.pyi"
REPO = Path(__file__).resolve().parent.parent


def _stub_tree() -> ast.Module:
    assert STUB.is_file(), "python/sparseopt/_core.pyi is not installed beside the module"
    return ast.parse(STUB.read_text())


def _stub_only(node: ast.stmt) -> bool:
    """A class the stub declares for type checkers only (@type_check_only)."""
    return isinstance(node, ast.ClassDef) and any(
        isinstance(d, ast.Name) and d.id == "type_check_only" for d in node.decorator_list)


def _runtime_names() -> set[str]:
    return {n for n in dir(_core) if not n.startswith("__") or n == "__version__"}


def test_stub_lists_every_name_of_the_module():
    tree = _stub_tree()
    names = {node.name for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not _stub_only(node)}
    names |= {node.target.id for node in tree.body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    assert names == _runtime_names()


def test_stub_functions_take_the_modules_parameters():
    """Same parameter names, in the same order, as pybind11's signature of each function."""
    for node in _stub_tree().body:
        if not isinstance(node, ast.FunctionDef):
            continue
        first = getattr(_core, node.name).__doc__.strip().splitlines()[0]
        runtime = re.findall(r"(\w+): ", first[first.index("(") + 1:first.rindex(") ->")])
        assert [a.arg for a in node.args.args] == runtime, node.name


def test_stub_classes_have_the_modules_members():
    tree = _stub_tree()
    bases = {node.name: node for node in tree.body if _stub_only(node)}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or _stub_only(node):
            continue
        cls = getattr(_core, node.name)
        body = [n for b in node.bases if isinstance(b, ast.Name) and b.id in bases
                for n in bases[b.id].body] + node.body
        stubbed = {n.name for n in body if isinstance(n, ast.FunctionDef)}
        stubbed |= {n.target.id for n in body if isinstance(n, ast.AnnAssign)}
        public = {m for m in vars(cls) if not m.startswith("_")}
        assert public <= stubbed, (node.name, public - stubbed)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy")
def test_mypy_stubtest_agrees(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "sparseopt._core"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    # pybind11 classes have their own metaclass, which a stub cannot name: not a stub error
    assert [e for e in errors if "metaclass differs" not in e] == [], done.stdout


def test_license_is_shipped_and_named():
    try:
        meta = metadata.metadata("sparseopt")
    except metadata.PackageNotFoundError:
        pytest.skip("sparseopt is not installed as a distribution")
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    files = metadata.files("sparseopt") or []
    licenses = [f for f in files if f.name == "LICENSE"]
    assert licenses, "no LICENSE in the installed distribution"
    text = licenses[0].read_text()
    assert text.startswith("MIT License") and "the sparseopt developers" in text
    if (REPO / "LICENSE").is_file():
        assert text == (REPO / "LICENSE").read_text()
