"""The C++ path: a separate CMake project finds the installed package with
find_package(sparseopt CONFIG), builds against sparseopt::sparseopt and runs an Adam step."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import sparseopt

CONSUMER = Path(__file__).parent / "consumer"
REPO = Path(__file__).resolve().parent.parent


def _cmakes() -> list[str]:
    """Every distinct CMake here: the one on PATH and the system one (3.25 on Debian 12)."""
    found = []
    for candidate in (shutil.which("cmake"), "/usr/bin/cmake"):
        if candidate and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            if real not in {os.path.realpath(c) for c in found}:
                found.append(candidate)
    return found


def test_cmake_config_is_installed():
    cmake_dir = Path(sparseopt.get_cmake_dir())
    assert (cmake_dir / "sparseoptConfig.cmake").is_file()
    assert (cmake_dir / "sparseoptConfigVersion.cmake").is_file()
    assert (Path(sparseopt.get_include()) / "sparseopt" / "sparseopt.hpp").is_file()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, " ".join(command) + "\n" + done.stdout + done.stderr


def _build_and_run_consumer(cmake: str, sparseopt_dir: str, build: Path) -> None:
    _run([cmake, "-S", str(CONSUMER), "-B", str(build), f"-Dsparseopt_DIR={sparseopt_dir}",
          "-DCMAKE_BUILD_TYPE=Release"])
    _run([cmake, "--build", str(build)])
    run = subprocess.run([str(build / "consumer")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "consumer ok" in run.stdout
    assert f"openmp={int(sparseopt.info()['openmp'])}" in run.stdout


def _require_tools(cmake: str | None) -> None:
    if cmake is None or shutil.which("c++") is None:
        pytest.skip("needs cmake and a C++ compiler")


@pytest.mark.parametrize("cmake", _cmakes() or [None])
def test_consumer_against_the_pip_install(cmake, tmp_path):
    _require_tools(cmake)
    _build_and_run_consumer(cmake, sparseopt.get_cmake_dir(), tmp_path / "build")


@pytest.mark.skipif(not (REPO / "CMakeLists.txt").is_file(), reason="needs the source tree")
def test_consumer_against_a_plain_cmake_install(tmp_path):
    """The header-only install without Python: cmake --install of the repository itself."""
    cmake = (_cmakes() or [None])[-1]  # the oldest one: /usr/bin/cmake where it exists
    _require_tools(cmake)
    prefix = tmp_path / "prefix"
    _run([cmake, "-S", str(REPO), "-B", str(tmp_path / "core"), f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run([cmake, "--install", str(tmp_path / "core")])
    config_dir = prefix / "share" / "cmake" / "sparseopt"
    assert (prefix / "include" / "sparseopt" / "sparseopt.hpp").is_file()
    _build_and_run_consumer(cmake, str(config_dir), tmp_path / "build")
