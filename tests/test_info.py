"""sparseopt.__version__ and sparseopt.info()."""

from __future__ import annotations

import os
import re

import pytest

import sparseopt


def test_version_is_string():
    assert isinstance(sparseopt.__version__, str)
    assert sparseopt.__version__
    # PEP 440-ish: starts with a release number
    assert re.match(r"^\d+(\.\d+)*", sparseopt.__version__), sparseopt.__version__


def test_info_keys_and_types():
    info = sparseopt.info()
    assert isinstance(info, dict)
    for key in ("version", "openmp", "max_threads", "cuda"):
        assert key in info, key
    assert isinstance(info["version"], str)
    assert info["version"] == sparseopt.__version__
    assert type(info["openmp"]) is bool
    assert type(info["cuda"]) is bool
    assert isinstance(info["max_threads"], int) and not isinstance(info["max_threads"], bool)
    assert info["max_threads"] >= 1


def test_info_is_stable_and_not_shared():
    a = sparseopt.info()
    a["version"] = "mutated"
    a["max_threads"] = -5
    b = sparseopt.info()
    assert b["version"] == sparseopt.__version__
    assert b["max_threads"] >= 1


def test_installed_distribution_version_matches():
    from importlib import metadata

    try:
        dist_version = metadata.version("sparseopt")
    except metadata.PackageNotFoundError:
        pytest.skip("sparseopt is not installed as a distribution")
    assert dist_version == sparseopt.__version__


def test_pyproject_version_matches():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        pytest.skip("tomllib not available")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
    if not os.path.exists(path):
        pytest.skip("no pyproject.toml next to tests/")
    with open(path, "rb") as f:
        project = tomllib.load(f).get("project", {})
    if "version" not in project:
        pytest.skip("version is dynamic")
    assert project["version"] == sparseopt.__version__


def test_optim_namespace():
    from sparseopt import optim

    for name in ("SGD", "Adagrad", "Adam"):
        assert isinstance(getattr(optim, name), type), name
    assert callable(sparseopt.coalesce)
