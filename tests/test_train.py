"""The training loop, checkpoints and resuming, on a small synthetic digit set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from numcnn import models
from numcnn.checkpoint import load_checkpoint, save_checkpoint
from numcnn.errors import CheckpointError, ConfigurationError
from numcnn.train import TrainConfig, fit, read_metrics

QUIET = {"log": lambda line: None, "show_progress": False}


def small_config(**overrides) -> TrainConfig:
    settings = {"model": "lenet5", "epochs": 2, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "seed": 2}
    settings.update(overrides)
    return TrainConfig(**settings)


def test_fit_learns_and_writes_metrics_and_checkpoint(tmp_path, synthetic_digits):
    history = fit(small_config(), synthetic_digits, tmp_path, **QUIET)
    assert [m.epoch for m in history] == [1, 2]
    assert history[-1].test_accuracy > 0.9  # the synthetic classes are easy
    assert history[-1].train_loss < history[0].train_loss

    records = read_metrics(tmp_path)
    required = {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"}
    assert len(records) == 2 and required <= set(records[0])
    assert records[1]["test_accuracy"] == pytest.approx(history[-1].test_accuracy)
    assert 0.0 <= records[0]["train_accuracy"] <= 1.0

    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:  # no pickle needed
        meta = json.loads(str(archive["meta"]))
    assert meta["model"] == "lenet5" and meta["epoch"] == 2


def test_same_seed_same_run_and_different_seed_different_run(synthetic_digits):
    first = fit(small_config(epochs=1), synthetic_digits, **QUIET)[0]
    second = fit(small_config(epochs=1), synthetic_digits, **QUIET)[0]
    third = fit(small_config(epochs=1, seed=4), synthetic_digits, **QUIET)[0]
    assert first.train_loss == second.train_loss and first.test_loss == second.test_loss
    assert first.train_loss != third.train_loss


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, synthetic_digits):
    straight = fit(small_config(epochs=3), synthetic_digits, tmp_path / "straight", **QUIET)
    fit(small_config(epochs=2), synthetic_digits, tmp_path / "resumed", **QUIET)
    resumed = fit(small_config(epochs=3), synthetic_digits, tmp_path / "resumed", resume=True, **QUIET)
    assert [m.epoch for m in resumed] == [3]
    assert resumed[0].train_loss == pytest.approx(straight[2].train_loss, rel=1e-6)
    assert resumed[0].test_loss == pytest.approx(straight[2].test_loss, rel=1e-6)
    assert [r["epoch"] for r in read_metrics(tmp_path / "resumed")] == [1, 2, 3]


def test_resume_with_a_cosine_schedule_continues_exactly(tmp_path, synthetic_digits):
    """An interrupted cosine run resumed with the same settings gets the same rate in every epoch."""
    config = small_config(epochs=3, lr_schedule="cosine", lr_min=0.005)
    straight = fit(config, synthetic_digits, tmp_path / "straight", **QUIET)

    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("epoch   2/3"):  # logged before epoch 2 is saved: the checkpoint holds epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, synthetic_digits, tmp_path / "resumed", log=interrupt_in_epoch_2, show_progress=False)
    assert [r["epoch"] for r in read_metrics(tmp_path / "resumed")] == [1]
    lines = []
    resumed = fit(config, synthetic_digits, tmp_path / "resumed", resume=True, log=lines.append, show_progress=False)
    assert [m.epoch for m in resumed] == [2, 3]
    assert not any(line.startswith("note:") for line in lines)  # same epochs: nothing is re-planned
    records = read_metrics(tmp_path / "resumed")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["lr"] for r in records] == [m.lr for m in straight]
    assert straight[0].lr > straight[1].lr > straight[2].lr  # the cosine really is annealing
    for resumed_epoch, straight_epoch in zip(resumed, straight[1:]):
        assert resumed_epoch.train_loss == pytest.approx(straight_epoch.train_loss, rel=1e-6)
        assert resumed_epoch.test_loss == pytest.approx(straight_epoch.test_loss, rel=1e-6)
        assert resumed_epoch.test_accuracy == straight_epoch.test_accuracy


def test_extending_a_finished_cosine_run_replans_the_schedule_and_says_so(tmp_path, synthetic_digits):
    first = fit(small_config(epochs=2, lr_schedule="cosine", train_limit=200), synthetic_digits, tmp_path, **QUIET)
    lines = []
    extended = fit(
        small_config(epochs=6, lr_schedule="cosine", train_limit=200), synthetic_digits, tmp_path, resume=True,
        log=lines.append, show_progress=False,
    )  # fmt: skip
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "planned for 2 epochs, now 6" in notes[0] and "re-planned" in notes[0]
    assert first[-1].lr == pytest.approx(0.025)  # epoch 2 of 2: half way down
    assert extended[0].lr == pytest.approx(0.05 * (1 + np.cos(np.pi * 2 / 6)) / 2)  # epoch 3 of 6: higher again
    assert extended[0].lr > first[-1].lr


def test_a_run_that_cannot_start_leaves_the_previous_metrics_alone(tmp_path, synthetic_digits):
    fit(small_config(epochs=1), synthetic_digits, tmp_path, **QUIET)
    before = (tmp_path / "metrics.jsonl").read_text()
    assert before.count("\n") == 1
    checkpoint = (tmp_path / "model.npz").read_bytes()
    with pytest.raises(ConfigurationError, match="leaves no training examples"):
        fit(small_config(train_limit=500, validation_size=600, early_stopping=1), synthetic_digits, tmp_path, **QUIET)
    with pytest.raises(ConfigurationError, match="beyond the 600 training examples"):
        fit(small_config(train_offset=600), synthetic_digits, tmp_path, **QUIET)
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert (tmp_path / "model.npz").read_bytes() == checkpoint


def test_resume_refuses_a_different_setup(tmp_path, synthetic_digits):
    fit(small_config(epochs=1), synthetic_digits, tmp_path, **QUIET)
    with pytest.raises(CheckpointError, match="batch_size=32"):
        fit(small_config(epochs=2, batch_size=16), synthetic_digits, tmp_path, resume=True, **QUIET)
    with pytest.raises(ConfigurationError, match="already holds 1 epochs"):
        fit(small_config(epochs=1), synthetic_digits, tmp_path, resume=True, **QUIET)


def test_train_subset_selection(synthetic_digits):
    with pytest.raises(ConfigurationError, match="only 600"):
        fit(small_config(train_limit=500, train_offset=200), synthetic_digits, **QUIET)


def test_checkpoint_round_trip_keeps_outputs(tmp_path):
    model = models.build("lenet5", rng=5)
    path = save_checkpoint(tmp_path / "m.npz", model, "lenet5", meta={"epoch": 7})
    loaded = load_checkpoint(path)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(loaded.model.forward(x), model.forward(x))
    assert loaded.meta["epoch"] == 7 and loaded.spec.name == "lenet5"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such checkpoint file"),
        ("directory", r"bad.npz: is a directory, not a checkpoint file"),
        (b"not a zip file", r"bad.npz: is not a numcnn checkpoint \(.npz\)$"),
        (b"# numcnn\n\nA README, not a checkpoint.\n", r"bad.npz: is not a numcnn checkpoint \(.npz\)$"),
        ("truncated", "not a readable .npz checkpoint"),
    ],
)
def test_bad_checkpoint_files(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content == "directory":
        path.mkdir()
    elif content == "truncated":  # a zip archive, but cut short: np.load's own error, on one line
        save_checkpoint(tmp_path / "good.npz", models.build("lenet5", rng=0), "lenet5")
        blob = (tmp_path / "good.npz").read_bytes()
        path.write_bytes(blob[: len(blob) // 2] + blob[-22:])  # keeps the end-of-central-directory record
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_checkpoint_of_an_unknown_model(tmp_path):
    """A version-1 checkpoint (no architecture) names its model; an unregistered name cannot load."""
    path = tmp_path / "m.npz"
    meta = {"format": "numcnn-checkpoint", "version": 1, "model": "not-a-model", "dtype": "float32"}
    np.savez(path, meta=np.array(json.dumps(meta)))
    with pytest.raises(CheckpointError, match="unknown model 'not-a-model'"):
        load_checkpoint(path)


def test_npz_without_meta_is_rejected(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta' entry"):
        load_checkpoint(path)


def test_config_for_model_layers_defaults_recommendations_and_overrides():
    plain = TrainConfig.for_model("lenet5")
    assert plain == TrainConfig(model="lenet5", lr_schedule="cosine")  # lenet5 recommends only the cosine
    classic = TrainConfig.for_model("lenet5_1998")
    assert (classic.optimizer, classic.lr, classic.batch_size, classic.epochs) == ("sdlm", 0.002, 32, 20)
    overridden = TrainConfig.for_model("lenet5_1998", lr=0.001, epochs=None)
    assert overridden.lr == 0.001 and overridden.epochs == 20  # None means "not given"
    with pytest.raises(ConfigurationError, match="unknown training setting"):
        TrainConfig.for_model("lenet5", learning_rate=0.1)
