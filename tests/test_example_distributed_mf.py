"""examples/distributed_mf.py --quick: the same loss curve and final tables, bit for bit, on
1 rank and on 3 MPI ranks (lazy and exact Adam), and on 2 gloo ranks under torchrun."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_distributed import _mpiexec

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "distributed_mf.py")
TIMEOUT = 180


def _curve(cmd: list[str]) -> list[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    lines = proc.stdout.splitlines()
    # epoch, train RMSE, held-out RMSE (17 digits) of each epoch; then the checksum line
    rows = [line.split() for line in lines]
    curve = [" ".join(row[:3]) for row in rows if row[:1] and row[0].isdigit()]
    assert len(curve) == 3 and lines[-1].startswith("checksum"), proc.stdout
    assert float(curve[-1].split()[1]) < float(curve[0].split()[1]), "training did not learn"
    return curve + [lines[-1]]


def _mpi() -> str:
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'sparseopt[mpi]')")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found (pip install mpich)")
    return mpiexec


@pytest.mark.parametrize("mode", ["lazy", "exact"])
def test_three_mpi_ranks_give_the_one_rank_curve(mode):
    mpiexec = _mpi()
    one = _curve([sys.executable, EXAMPLE, "--quick", "--mode", mode, "--backend", "mpi"])
    three = _curve([mpiexec, "-n", "3", sys.executable, "-m", "mpi4py", EXAMPLE, "--quick",
                    "--mode", mode])
    assert three == one


def test_two_gloo_ranks_give_the_one_rank_curve():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    one = _curve([sys.executable, EXAMPLE, "--quick", "--backend", "torch"])
    two = _curve([sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node", "2", EXAMPLE, "--quick"])
    assert two == one
