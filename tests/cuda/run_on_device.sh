#!/usr/bin/env bash
# One call on a machine with an NVIDIA GPU: build sparseopt with its CUDA kernels (for that
# GPU's architecture only, without link-time optimisation, to keep the build short), run the GPU
# tests (in 8 processes: a crash fails its test, not the run), where the kernels' time goes
# (bench/diagnostics/cuda_profile.py), then the CUDA benchmark. Logs and the benchmark's results
# go to $OUT (or ./gpu-out). Uses the machine's own python3, torch with CUDA, pybind11,
# scikit-build-core and pytest-xdist (no package index there: --no-build-isolation).
#   bash tests/cuda/run_on_device.sh [pytest args...]
# Environment: BENCH=0 skips the benchmark, PROFILE=0 the profile, SANITIZE=1 adds
# compute-sanitizer's memcheck over a slice of the tests, DEBUG="test id" a cuda-gdb backtrace
# (by default of the first test that crashed).
set -u -o pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'numpy', numpy.__version__)"
arch=$(python3 -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')")
[ -n "$arch" ] || { echo "no CUDA device that torch sees"; exit 1; }
start=$SECONDS
python3 -m pip install -q --no-build-isolation --no-deps . -C cmake.define.SPARSEOPT_CUDA=ON \
  -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" -C cmake.define.CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -C build-dir=/tmp/sparseopt-build 2>&1 | tee "$OUT/build.log" || exit 1
echo "build: $((SECONDS - start)) s (sm_$arch)"
# Every GPU test would skip (and pytest pass) if the device path were not runnable: refuse that.
(cd /tmp && python3 -c "import sparseopt; from sparseopt import _device; print(sparseopt.info())
why = _device.why_not_runnable(); assert why is None, why") || exit 1
start=$SECONDS
python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 tests/cuda "$@" 2>&1 | tee "$OUT/tests.log" | grep -v "^\[gw"
tests=${PIPESTATUS[0]}
echo "tests: $((SECONDS - start)) s, exit $tests"
# The first test that crashed its worker, if any, under cuda-gdb (a backtrace)
DEBUG=${DEBUG:-$(grep -o "crashed while running '[^']*'" "$OUT/tests.log" | head -1 | cut -d"'" -f2)}
if [ -n "$DEBUG" ]; then
  timeout 120 cuda-gdb -q -batch -ex "set pagination off" -ex run -ex bt -ex "info sharedlibrary sparseopt" \
    --args python3 -m pytest -q -p no:cacheprovider -p no:benchmark -x "$DEBUG" 2>&1 | grep -v "^\[New Thread\|^\[Thread" | tail -60 | tee "$OUT/debug.log"
fi
if [ "${PROFILE:-1}" = 1 ]; then
  timeout 150 python3 bench/diagnostics/cuda_profile.py 2>&1 | tee "$OUT/profile.log"
fi
if [ "${BENCH:-1}" = 1 ]; then
  start=$SECONDS
  rm -f bench/results/cuda.json bench/results/cuda.md  # what comes back is this run's, or nothing
  timeout 300 python3 bench/bench_cuda.py 2>&1 | tee "$OUT/bench.log"
  [ "${PIPESTATUS[0]}" = 0 ] && cp bench/results/cuda.json bench/results/cuda.md "$OUT/"
  echo "bench: $((SECONDS - start)) s"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -q -p no:cacheprovider -p no:benchmark \
    tests/cuda -k "float32 and int64 and 40 and (Adam or gather or topk or coalesce)" 2>&1 | tee "$OUT/memcheck.log" | tail -40
  memcheck=${PIPESTATUS[0]}
  echo "memcheck: exit $memcheck"
  [ "$memcheck" = 0 ] || [ "$tests" != 0 ] || tests=$memcheck
fi
exit $tests
