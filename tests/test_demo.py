"""The README's main job, `python -m sparseopt demo`, runs end to end (its --quick form)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import sparseopt


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "sparseopt", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_trains_and_times():
    out = _run("demo", "--quick")
    rmse = [float(x) for x in re.findall(r"^\s+\d+\s+([0-9.]+)\s+[0-9.]+", out, re.M)]
    assert len(rmse) >= 3, out
    assert rmse[-1] < 0.7 * rmse[0], out  # training lowers the training RMSE
    assert "sparseopt.optim.Adam (lazy)" in out and "sparseopt.optim.Adam (exact)" in out
    acc = [float(a) for a in re.findall(r"held-out accuracy ([0-9.]+)%", out)]
    assert len(acc) == 2 and min(acc) > 50, out  # meProp and dense both learn (chance: 10%)


def test_info_command_prints_the_build_facts():
    assert json.loads(_run("info")) == sparseopt.info()


def test_bare_command_prints_plain_help_and_succeeds():
    out = _run()
    assert out.startswith("usage: python -m sparseopt")
    assert "demo" in out and "--cmake-dir" in out
    assert "``" not in out and ":func:" not in out  # plain text, no reST markup


def test_version_and_directories():
    assert _run("--version").strip() == f"sparseopt {sparseopt.__version__}"
    assert _run("--include-dir").strip() == sparseopt.get_include()
    assert _run("--cmake-dir").strip() == sparseopt.get_cmake_dir()
