"""``numcnn experiment --executor mpi``: a sweep on two MPI processes gives the local runner's results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from numcnn.experiments import load_experiment, run_experiment

pytest.importorskip("mpi4py.MPI", reason="mpi4py (the 'mpi' extra) is not installed", exc_type=ImportError)

SPEC = importlib.util.spec_from_file_location("mpi_programs", Path(__file__).with_name("programs.py"))
programs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(programs)

TINY = """
name = "tiny"
[train]
epochs = 1
batch_size = 30
lr = 0.05
[defaults]
sizes = [120]
[[sweep]]
name = "models"
models = ["lenet5", "sk_0.2"]
seeds = [0, 1]
"""
COMPARED = ("test_error", "test_loss", "train_error", "train_loss", "epochs", "test_images")


def test_mpi_sweep_gives_the_local_results_and_resumes(tmp_path, mpiexec, program):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    local = run_experiment(load_experiment(config), tmp_path / "local", jobs=1, dataset=programs.synthetic(),
                           log=lambda line: None).results  # fmt: skip

    out = tmp_path / "mpi"
    done = mpiexec(2, *program, "sweep", str(config), str(out))
    assert done.returncode == 0, done.stderr
    assert "4 to run with 1 MPI worker(s)" in done.stdout and "finished 4 failed 0" in done.stdout
    for run_id, expected in local.items():
        result = json.loads((out / "runs" / run_id / "result.json").read_text(encoding="utf-8"))
        assert {key: result[key] for key in COMPARED} == {key: expected[key] for key in COMPARED}
        assert {p.name for p in (out / "runs" / run_id).iterdir()} == {
            p.name for p in (tmp_path / "local" / "runs" / run_id).iterdir()
        }

    again = mpiexec(2, *program, "sweep", str(config), str(out))
    assert again.returncode == 0, again.stderr
    assert "4 already finished, 0 to run" in again.stdout
