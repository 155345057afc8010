"""``numcnn train --distributed``: two MPI ranks on this machine give one process's weights (float64),
also with uneven shards and with synchronised batch norm; a failing or killed rank ends the job
without hanging and leaves the last checkpoint, from which another number of processes resumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from numcnn.checkpoint import load_checkpoint
from numcnn.train import TrainConfig, fit, read_metrics

pytest.importorskip("mpi4py.MPI", reason="mpi4py (the 'mpi' extra) is not installed", exc_type=ImportError)

SPEC = importlib.util.spec_from_file_location("mpi_programs", Path(__file__).with_name("programs.py"))
programs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(programs)

QUIET = {"log": lambda line: None, "show_progress": False}


def one_process(model: str, epochs: int, out: Path | None = None, batch: int = 25):
    """The reference: plain fit in this process, with the settings of programs.train."""
    config = TrainConfig(model=model, epochs=epochs, batch_size=batch, lr=0.05, momentum=0.9, dtype="float64", seed=3)
    return fit(config, programs.synthetic(), out, **QUIET)


def largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float(np.max(np.abs(first[key] - second[key]))) for key in first)


def test_two_ranks_give_one_process_weights_with_uneven_shards(tmp_path, mpiexec, program):
    # 240 examples in batches of 25: nine batches of 13 + 12 and a last one of 8 + 7.
    done = mpiexec(2, *program, "train", str(tmp_path / "dp"), "lenet5", "1")
    assert done.returncode == 0, done.stderr
    assert "2 processes; one allreduce of 493,648 bytes of gradients per step" in done.stdout
    reference = one_process("lenet5", 1)
    trained = load_checkpoint(tmp_path / "dp" / "model.npz").model.state_dict()
    assert largest_difference(trained, reference.model.state_dict()) <= 1e-10
    [record] = read_metrics(tmp_path / "dp")
    final = reference.final
    assert record["train_loss"] == pytest.approx(final.train_loss, rel=1e-12)
    assert record["test_loss"] == pytest.approx(final.test_loss, rel=1e-12)
    assert (record["train_accuracy"], record["test_accuracy"]) == (final.train_accuracy, final.test_accuracy)


@pytest.mark.slow
def test_synchronised_batch_norm_gives_one_process_weights(tmp_path, mpiexec, program):
    done = mpiexec(2, *program, "train", str(tmp_path / "dp"), "sk_0.2", "1", "sync-bn", "batch=30")
    assert done.returncode == 0, done.stderr
    reference = one_process("sk_0.2", 1, batch=30).model.state_dict()
    trained = load_checkpoint(tmp_path / "dp" / "model.npz").model.state_dict()
    assert largest_difference(trained, reference) <= 1e-10  # running estimates included

    uneven = mpiexec(2, *program, "train", str(tmp_path / "uneven"), "sk_0.2", "1", "sync-bn")
    assert uneven.returncode != 0
    assert "a batch has 15 examples, but 2 processes need a multiple of 2 examples (--sync-bn)" in uneven.stderr


@pytest.mark.parametrize("fault", ["kill", "fail"])
def test_a_dead_rank_ends_the_job_keeps_the_checkpoint_and_resumes_with_other_ranks(tmp_path, mpiexec, program, fault):
    out = tmp_path / "dp"
    # Ten steps per epoch: rank 1 dies in the second epoch, after the first epoch's checkpoint.
    died = mpiexec(2, *program, "train", str(out), "lenet5", "3", f"{fault}-rank-1-at-step=14", timeout=120)
    assert died.returncode != 0
    if fault == "fail":
        assert "numcnn: error: rank 1 failed: RuntimeError: injected failure" in died.stderr
    checkpoint = load_checkpoint(out / "model.npz")
    assert checkpoint.meta["epoch"] == 1 and len(read_metrics(out)) == 1

    # Resume with three ranks (batches of 25 as 9 + 8 + 8), then compare with one uninterrupted process.
    resumed = mpiexec(3, *program, "train", str(out), "lenet5", "2", "resume")
    assert resumed.returncode == 0, resumed.stderr
    reference = one_process("lenet5", 2).model.state_dict()
    assert largest_difference(load_checkpoint(out / "model.npz").model.state_dict(), reference) <= 1e-10
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
