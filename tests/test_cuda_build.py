"""The optional CUDA build compiles and links wherever nvcc exists (CI has nvcc, no GPU): the
sparseopt::cuda target, its installed CMake package (tests/consumer_cuda, a CUDA trainer built
against it) and the sparseopt._cuda module, which must import and count devices without one.
Skipped, with the reason, where nvcc is missing. One architecture keeps the build short.

The dispatch of device arrays (sparseopt._device) is checked here too, with stand-in objects
that carry a __cuda_array_interface__: without a device nothing can run, but every refusal
(no CUDA build, host memory, host and device mixed, exact mode) must be clear, and must come
before anything is written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sparseopt
from _helpers import DeviceStandIn

REPO = Path(__file__).resolve().parent.parent
CONSUMER = Path(__file__).parent / "consumer_cuda"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.access("/usr/local/cuda/bin/nvcc", os.X_OK)
                                else None)
ARCH = "80"  # one architecture: the compile check, not a wheel

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit) to compile the CUDA target")
needs_source = pytest.mark.skipif(not (REPO / "cpp" / "cuda").is_dir(), reason="needs the source tree")


def _run(command: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDACXX=NVCC or "")
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, " ".join(command) + "\n" + done.stdout[-4000:] + done.stderr[-4000:]
    return done


def _has_gpu() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


@needs_nvcc
@needs_source
def test_cuda_package_installs_and_a_cuda_consumer_links(tmp_path):
    """SPARSEOPT_CUDA=ON without Python: build, install, find_package(sparseopt) gives
    sparseopt::cuda, and a CUDA trainer (tests/consumer_cuda) builds, links and runs."""
    cmake = shutil.which("cmake")
    prefix = tmp_path / "prefix"
    _run([cmake, "-S", str(REPO), "-B", str(tmp_path / "lib"), "-DSPARSEOPT_CUDA=ON",
          f"-DCMAKE_CUDA_ARCHITECTURES={ARCH}", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run([cmake, "--build", str(tmp_path / "lib"), "-j2"])
    _run([cmake, "--install", str(tmp_path / "lib")])
    config_dir = prefix / "share" / "cmake" / "sparseopt"
    assert (config_dir / "sparseoptCudaTargets.cmake").is_file()
    assert (prefix / "include" / "sparseopt" / "cuda" / "sparseopt_cuda.hpp").is_file()
    assert (prefix / "include" / "sparseopt" / "optim" / "formulas.hpp").is_file()
    build = tmp_path / "consumer"
    _run([cmake, "-S", str(CONSUMER), "-B", str(build), f"-Dsparseopt_DIR={config_dir}",
          f"-DCMAKE_CUDA_ARCHITECTURES={ARCH}", "-DCMAKE_BUILD_TYPE=Release"])
    _run([cmake, "--build", str(build)])
    run = subprocess.run([str(build / "consumer_cuda")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "consumer-cuda ok" in run.stdout
    if not _has_gpu():
        assert "devices=0" in run.stdout


@needs_nvcc
@needs_source
def test_cuda_module_builds_imports_and_counts_devices(tmp_path):
    """SPARSEOPT_CUDA=ON with Python: the _cuda module compiles, links, imports beside the
    installed sparseopt._core and reports the devices (0 here without a GPU), never failing."""
    import pybind11

    cmake = shutil.which("cmake")
    build = tmp_path / "module"
    _run([cmake, "-S", str(REPO), "-B", str(build), "-DSPARSEOPT_CUDA=ON", "-DSPARSEOPT_PYTHON=ON",
          f"-DCMAKE_CUDA_ARCHITECTURES={ARCH}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
          f"-DPython_EXECUTABLE={sys.executable}"])
    _run([cmake, "--build", str(build), "--target", "_cuda", "-j2"])
    (module,) = (build / "python" / "src" / "cuda").glob("_cuda*.so")
    script = (
        "import importlib.util, sparseopt\n"
        f"spec = importlib.util.spec_from_file_location('sparseopt._cuda', {str(module)!r})\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "print('devices', m.device_count())\n"
    )
    done = _run([sys.executable, "-c", script], timeout=120)
    count = int(done.stdout.split()[-1])
    assert count >= 0
    if not _has_gpu():
        assert count == 0


def test_info_reports_cuda_without_failing():
    info = sparseopt.info()
    assert isinstance(info["cuda"], bool)
    assert isinstance(info["cuda_devices"], int) and info["cuda_devices"] >= 0
    if not info["cuda"]:
        assert info["cuda_devices"] == 0


def _device_refusal() -> type[Exception]:
    """A stand-in device array fails at the build check (RuntimeError) without the CUDA module,
    or at the binding's memory check (ValueError) with it."""
    return ValueError if sparseopt.info()["cuda"] else RuntimeError


def test_device_arrays_without_a_cuda_build_or_device_are_refused_clearly():
    table = np.zeros((4, 3), np.float32)
    if not sparseopt.info()["cuda"]:
        with pytest.raises(RuntimeError, match="SPARSEOPT_CUDA=ON"):
            sparseopt.optim.Adam(DeviceStandIn(table))
        return
    # With the module: state would be allocated by the array's library; a stand-in has none.
    with pytest.raises(TypeError, match="torch, CuPy and Numba"):
        sparseopt.optim.Adam(DeviceStandIn(table))


def test_host_parameter_with_device_gradient_is_a_clear_error():
    table = np.ones((4, 3), np.float32)
    opt = sparseopt.optim.Adam(table, lr=0.1)
    values = DeviceStandIn(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="values is in device memory but param is in host memory"):
        opt.step(np.array([0, 1]), values)
    assert opt.step_count == 0
    assert np.array_equal(table, np.ones((4, 3), np.float32))
    with pytest.raises(TypeError, match="indices is in device memory but table is in host memory"):
        sparseopt.gather_sum(table, np.array([0, 1]), DeviceStandIn(np.array([2])))


def test_device_gather_of_host_memory_is_refused_before_writing():
    table = np.ones((4, 3), np.float32)
    indptr, indices = np.array([0, 2]), np.array([1, 3])
    out = np.full((1, 3), 7.0, np.float32)
    fake = [DeviceStandIn(a) for a in (table, indptr, indices, out)]
    with pytest.raises(_device_refusal()):
        sparseopt.gather_sum(fake[0], fake[1], fake[2], out=fake[3])
    assert np.array_equal(out, np.full((1, 3), 7.0, np.float32))


def test_device_topk_and_backward_without_a_usable_device_are_refused():
    # Outputs are allocated by the input's library: a stand-in has none (TypeError), unless the
    # CUDA build is missing, which is said first (RuntimeError).
    refusal = TypeError if sparseopt.info()["cuda"] else RuntimeError
    x = DeviceStandIn(np.ones((3, 5), np.float32))
    with pytest.raises(refusal):
        sparseopt.topk(x, 2)
    grad_out = DeviceStandIn(np.ones((1, 3), np.float32))
    with pytest.raises(refusal):
        sparseopt.gather_sum_backward(grad_out, DeviceStandIn(np.array([0, 1])),
                                      DeviceStandIn(np.array([2])), num_rows=4)


def test_cuda_stub_lists_the_modules_functions_and_parameters():
    """python/sparseopt/_cuda.pyi against the module, where it is built (as test_packaging
    checks _core.pyi)."""
    import ast
    import re

    if not sparseopt.info()["cuda"]:
        pytest.skip("sparseopt was built without SPARSEOPT_CUDA=ON")
    from sparseopt import _cuda

    stub = ast.parse((Path(sparseopt.__file__).parent / "_cuda.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert names == {n for n in dir(_cuda) if not n.startswith("__")}
    for node in stub.body:
        if isinstance(node, ast.FunctionDef):
            first = getattr(_cuda, node.name).__doc__.strip().splitlines()[0]
            runtime = re.findall(r"(\w+): ", first[first.index("(") + 1:first.rindex(") ->")])
            assert [a.arg for a in node.args.args] == runtime, node.name
