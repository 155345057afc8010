"""No lost runs: refusing to replace a run, stopping cleanly on signals, resuming inside an epoch
exactly, stopping at divergence, and durable checkpoint writes (full disk, previous checkpoint)."""

from __future__ import annotations

import errno
import os
import re
import signal

import numpy as np
import pytest

from numcnn import checkpoint as checkpoint_module
from numcnn import kernels
from numcnn.checkpoint import load_checkpoint, previous_path, read_meta, save_checkpoint
from numcnn.errors import CheckpointError, ConfigurationError
from numcnn.interrupt import TrainingInterrupted
from numcnn.layers.flat import flat_buffers
from numcnn.train import TrainConfig, TrainingDiverged, fit, read_metrics

QUIET = {"log": lambda line: None, "show_progress": False}


def config(**overrides) -> TrainConfig:
    settings = {
        "model": "lenet5", "epochs": 2, "batch_size": 32, "lr": 0.01, "momentum": 0.9, "seed": 1,
        "train_limit": 200, "dtype": "float64",
    }  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


def interrupt_at(call: int, signal_number: int = signal.SIGINT):
    """A train_step hook that sends this process ``signal_number`` during the ``call``-th step."""
    calls = {"count": 0}

    def hook(model) -> None:
        calls["count"] += 1
        if calls["count"] == call:
            os.kill(os.getpid(), signal_number)

    return hook


def weights(run) -> np.ndarray:
    return flat_buffers(run.model).params


# -- interruption and exact resumption -----------------------------------------------------------
@pytest.mark.parametrize(
    "settings, step",
    [
        ({}, 10),  # 7 steps per epoch: epoch 2, step 3
        ({"dtype": "float32", "augment_shift": 2, "lr_schedule": "cosine"}, 4),  # epoch 1, step 4
        ({"model": "base_dropout", "train_limit": 96, "epochs": 1, "batch_size": 16}, 2),  # dropout stream
    ],
)
def test_a_signal_stops_at_a_step_boundary_and_resume_gives_the_same_weights(
    tmp_path, synthetic_digits, settings, step
):
    run_config = config(**settings)
    with kernels.use_backend("numpy"):
        straight = fit(run_config, synthetic_digits, tmp_path / "straight", **QUIET)
        with pytest.raises(TrainingInterrupted) as stopped:
            fit(run_config, synthetic_digits, tmp_path / "cut", hook=interrupt_at(step), handle_signals=True, **QUIET)
        meta = read_meta(tmp_path / "cut" / "model.npz")
        steps = -(-(run_config.train_limit) // run_config.batch_size)
        epoch, within = (step - 1) // steps + 1, (step - 1) % steps + 1
        assert meta["position"]["epoch"] == epoch and meta["position"]["step"] == within
        assert f"checkpoint at epoch {epoch}, step {within} saved to {tmp_path / 'cut' / 'model.npz'}" in str(
            stopped.value
        )
        assert stopped.value.exit_code == 130
        resumed = fit(run_config, synthetic_digits, tmp_path / "cut", resume=True, **QUIET)
    assert np.array_equal(weights(resumed), weights(straight))
    assert resumed[-1].train_loss == straight[-1].train_loss  # the epoch's running totals were saved too
    straight_metrics = [{k: v for k, v in r.items() if "seconds" not in k} for r in read_metrics(tmp_path / "straight")]
    cut_metrics = [{k: v for k, v in r.items() if "seconds" not in k} for r in read_metrics(tmp_path / "cut")]
    assert cut_metrics == straight_metrics


def test_sigterm_is_handled_like_ctrl_c_with_its_own_exit_code(tmp_path, synthetic_digits):
    with kernels.use_backend("numpy"), pytest.raises(TrainingInterrupted) as stopped:
        fit(config(), synthetic_digits, tmp_path, hook=interrupt_at(2, signal.SIGTERM), handle_signals=True, **QUIET)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    position = read_meta(tmp_path / "model.npz")["position"]
    assert (position["epoch"], position["step"], position["seen"]) == (1, 2, 64)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run


def test_an_interruption_without_a_run_directory_says_nothing_was_saved(synthetic_digits):
    with kernels.use_backend("numpy"), pytest.raises(TrainingInterrupted, match="nothing was saved"):
        fit(config(), synthetic_digits, hook=interrupt_at(1), handle_signals=True, **QUIET)


def test_periodic_checkpoints_inside_an_epoch_keep_the_previous_one(tmp_path, synthetic_digits):
    with kernels.use_backend("numpy"):
        fit(config(epochs=1), synthetic_digits, tmp_path, checkpoint_every=3, **QUIET)
    assert "position" not in read_meta(tmp_path / "model.npz")  # the end of epoch 1 ...
    position = read_meta(tmp_path / "model.prev.npz")["position"]  # ... replaced the one of step 6
    assert (position["epoch"], position["step"]) == (1, 6)
    assert not list(tmp_path.glob("*.tmp"))


# -- divergence -------------------------------------------------------------------------------------
def test_divergence_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_digits):
    # float32 overflows within a few steps at lr 1000; float64 only reaches absurd but finite values.
    with kernels.use_backend("numpy"):
        fit(config(epochs=1, dtype="float32"), synthetic_digits, tmp_path, **QUIET)
        good = (tmp_path / "model.npz").read_bytes()
        with pytest.raises(TrainingDiverged) as diverged:
            fit(config(lr=1000.0, dtype="float32"), synthetic_digits, tmp_path, resume=True, **QUIET)
        message = str(diverged.value)
        assert "\n" not in message and re.search(
            r"^training diverged at epoch 2, step (\d+): the training loss became nan", message
        )
        assert f"checkpoint at the end of epoch 1 kept in {tmp_path / 'model.npz'}" in message
        assert (tmp_path / "model.npz").read_bytes() == good
        assert [r["epoch"] for r in read_metrics(tmp_path)] == [1]

        # With a checkpoint after every step, the last good one is the step before.
        with pytest.raises(TrainingDiverged) as diverged:
            fit(
                config(lr=1000.0, dtype="float32"), synthetic_digits, tmp_path, resume=True, checkpoint_every=1, **QUIET
            )
    step = int(re.search(r"epoch 2, step (\d+):", str(diverged.value)).group(1))
    assert f"checkpoint at epoch 2, step {step - 1} kept in" in str(diverged.value)
    kept = load_checkpoint(tmp_path / "model.npz")
    assert kept.meta["position"]["step"] == step - 1
    assert all(np.isfinite(value).all() for value in kept.model.state_dict().values())


def test_divergence_before_any_checkpoint_says_so(tmp_path, synthetic_digits):
    with kernels.use_backend("numpy"), pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+: .*no checkpoint yet"):
        fit(config(lr=1000.0, dtype="float32"), synthetic_digits, tmp_path, **QUIET)
    assert not (tmp_path / "model.npz").exists()


# -- run directories --------------------------------------------------------------------------------
def test_a_run_directory_is_never_replaced_silently(tmp_path, synthetic_digits):
    with kernels.use_backend("numpy"):
        fit(config(epochs=1), synthetic_digits, tmp_path, **QUIET)
        before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
        with pytest.raises(ConfigurationError, match=r"--resume .* --overwrite"):
            fit(config(epochs=1), synthetic_digits, tmp_path, **QUIET)
        assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
        fit(config(epochs=1, seed=2), synthetic_digits, tmp_path, overwrite=True, **QUIET)
    assert load_checkpoint(tmp_path / "model.npz").meta["config"]["seed"] == 2
    assert not (tmp_path / "model.prev.npz").exists()  # the replaced run's files went with it
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        fit(config(), synthetic_digits, tmp_path / "file", **QUIET)


# -- durable writes ------------------------------------------------------------------------------------
def _model():
    from numcnn import models

    return models.build("lenet5", rng=0)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _model(), "lenet5", meta={"epoch": 1}, keep_previous=True)
    save_checkpoint(path, _model(), "lenet5", meta={"epoch": 2}, keep_previous=True)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(handle, arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module, "_write_archive", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*unchanged") as failed:
        save_checkpoint(path, _model(), "lenet5", meta={"epoch": 3}, keep_previous=True)
    assert "\n" not in str(failed.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # no temporary file left either
    assert read_meta(path)["epoch"] == 2 and read_meta(previous_path(path))["epoch"] == 1


def test_a_save_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "fsync-file")
        real_fsync(descriptor)

    def replace(source, target):
        events.append(f"replace {os.path.basename(target)}")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "model.npz"
    save_checkpoint(path, _model(), "lenet5", keep_previous=True)
    save_checkpoint(path, _model(), "lenet5", keep_previous=True)
    second = events[len(events) // 2 :]
    assert second == ["fsync-file", "replace model.prev.npz", "replace model.npz", "fsync-dir"]
    assert (tmp_path / "model.prev.npz").stat().st_ino != path.stat().st_ino


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "model.npz", _model(), "lenet5")
    finally:
        os.umask(old)
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == 0o644


def test_resume_repairs_a_metrics_file_out_of_step_with_the_checkpoint(tmp_path, synthetic_digits):
    """A kill between a checkpoint and its metrics line, or between the line and the next checkpoint."""
    with kernels.use_backend("numpy"):
        fit(config(epochs=1), synthetic_digits, tmp_path, **QUIET)
        metrics = tmp_path / "metrics.jsonl"
        first_line = metrics.read_text()
        metrics.write_text("")  # the checkpoint of epoch 1 was written, its line was not
        with pytest.raises(ConfigurationError, match="already holds 1 epochs"):
            fit(config(epochs=1), synthetic_digits, tmp_path, resume=True, **QUIET)
        assert metrics.read_text() == first_line  # restored from the checkpoint's own record
        metrics.write_text(first_line + '{"epoch": 2, "train_loss": 9.9}\n{"epoch": 3, "trai')  # ahead, cut short
        fit(config(epochs=2), synthetic_digits, tmp_path, resume=True, **QUIET)
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["train_loss"] != 9.9
