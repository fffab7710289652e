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


def test_version_is_the_one_in_cmakelists():
    """The version is written once, in CMakeLists.txt's project(); the module reports it."""
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "CMakeLists.txt")
    if not os.path.exists(path):
        pytest.skip("no source tree next to tests/")
    with open(path) as f:
        match = re.search(r"project\(sparseopt\s+VERSION\s+([0-9.]+)", f.read())
    assert match, "CMakeLists.txt must declare project(sparseopt VERSION x.y.z)"
    assert match.group(1) == sparseopt.__version__


def test_optim_namespace():
    from sparseopt import optim

    for name in ("SGD", "Adagrad", "Adam"):
        assert isinstance(getattr(optim, name), type), name
    assert callable(sparseopt.coalesce)
