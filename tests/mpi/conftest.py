"""Fixtures of the MPI tests: how to launch ``mpiexec -n K`` on this machine (loopback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).with_name("programs.py")
TIMEOUT = 240  # seconds; a hung job fails the test instead of the suite


def find_mpiexec() -> str | None:
    """The launcher of the MPI library mpi4py uses: the one beside this interpreter (the MPICH wheel
    of ``numcnn[mpi]`` installs it there), else the first on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


@pytest.fixture(scope="session")
def mpiexec():
    """``mpiexec(K, *command, timeout=...)`` runs the command on K ranks and returns the completed process."""
    pytest.importorskip("mpi4py.MPI", reason="mpi4py (the 'mpi' extra) is not installed", exc_type=ImportError)
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")

    def run(ranks: int, *command: str, timeout: float = TIMEOUT, cwd: Path | None = None):
        # One thread per rank: the ranks share the machine's cores (and CI has two).
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
        return subprocess.run(
            [launcher, "-n", str(ranks), *command],
            check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
        )  # fmt: skip

    return run


@pytest.fixture(scope="session")
def program() -> list[str]:
    """The command that runs tests/mpi/programs.py with this interpreter."""
    return [sys.executable, str(PROGRAMS)]
