"""sparseopt.distributed on real ranks: mpiexec -n 2 and -n 3 (mpi4py) and torchrun with gloo.

Each launch runs tests/_distributed_ranks.py on every rank, which checks the contract (N ranks
stepping their own batches == one process stepping the concatenation in rank order, bit for
bit) for Adam (lazy, exact), AdamW (exact), SGD with momentum (exact) and Adagrad, both float
dtypes and both index dtypes, against a plain single-process optimizer; then bad input on one
rank (raises everywhere, nothing changed, no deadlock) and a checkpoint round trip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "_distributed_ranks.py")
TIMEOUT = 180  # seconds; a launch takes ~1 s (MPI) or ~5 s (torchrun) on an idle machine


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel installs it here
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _launch(cmd: list[str], ranks: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # N ranks share this machine's cores
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for rank in range(ranks):
        assert f"OK rank {rank} of {ranks}" in proc.stdout, output[-4000:]


@pytest.mark.parametrize("ranks", [2, 3])
def test_contract_on_mpi_ranks(ranks):
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'sparseopt[mpi]')")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found (pip install mpich)")
    # -m mpi4py: an exception on one rank aborts every rank instead of leaving them waiting.
    _launch([mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", SCRIPT, "mpi"], ranks)


def test_contract_on_gloo_ranks():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this PyTorch build has no torch.distributed gloo backend")
    _launch([sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node", "2", SCRIPT, "torch"], 2)


def test_import_needs_neither_mpi4py_nor_torch():
    code = ("import sys, sparseopt, sparseopt.distributed; "
            "print(sorted(m for m in ('mpi4py', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    assert out.strip() == "[]"


def test_torch_comm_needs_an_initialised_group():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    import torch.distributed as dist

    from sparseopt import distributed as sd

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        sd.torch_comm()


def test_table_refuses_a_comm_of_its_own_making():
    import numpy as np

    from sparseopt import distributed as sd

    with pytest.raises(TypeError, match="mpi_comm"):
        sd.ShardedTable(object(), 10, (2,), dtype=np.float32)
