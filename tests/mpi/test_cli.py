"""The command line of the MPI features: one-line errors that end every rank, and the data-parallel
``numcnn train --distributed`` on real MNIST against the one-process command."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from numcnn.checkpoint import load_checkpoint
from numcnn.cli.main import main

pytest.importorskip("mpi4py.MPI", reason="mpi4py (the 'mpi' extra) is not installed", exc_type=ImportError)

NUMCNN = [sys.executable, "-m", "numcnn"]


def test_sync_bn_without_distributed_is_a_one_line_error(capsys, tmp_path):
    assert main(["train", "--sync-bn", "--out", str(tmp_path / "run")]) == 1
    expected = "numcnn: error: --sync-bn synchronises the processes of --distributed training; add --distributed\n"
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["experiment", "nope", "--executor", "mpi"], "numcnn: error: no experiment file 'nope'"),
        (["experiment", "exercise_15_6", "--executor", "mpi", "--jobs", "2"], "sets the workers (1); drop --jobs"),
        (["train", "--distributed", "--checkpoint-every", "5"], "--checkpoint-every is not available"),
    ],
)
def test_errors_under_mpiexec_end_every_rank(mpiexec, tmp_path, arguments, message):
    done = mpiexec(2, *NUMCNN, *arguments, "--out", str(tmp_path / "out"), timeout=120, cwd=tmp_path)
    assert done.returncode != 0 and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NUMCNN_DATA"), reason="needs the real MNIST files (NUMCNN_DATA)")
def test_distributed_train_command_gives_the_one_process_weights(mpiexec, tmp_path):
    common = ["train", "--epochs", "1", "--train-limit", "320", "--dtype", "float64", "--no-progress", "--no-download"]
    done = mpiexec(2, *NUMCNN, *common, "--distributed", "--out", str(tmp_path / "dp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    first, second = (load_checkpoint(tmp_path / run / "model.npz").model.state_dict() for run in ("dp", "one"))
    assert max(float(np.max(np.abs(first[key] - second[key]))) for key in first) <= 1e-10
