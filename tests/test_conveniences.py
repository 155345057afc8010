"""Learning-rate schedules, early stopping (restoring the best weights) and data augmentation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from numcnn.augment import Augmenter, random_flip, random_rotation, random_shift
from numcnn.checkpoint import load_checkpoint
from numcnn.early_stopping import EarlyStopping
from numcnn.errors import ConfigurationError
from numcnn.schedules import Schedule
from numcnn.train import TrainConfig, evaluate, fit, make_loss, prepare_split, read_metrics

QUIET = {"log": lambda line: None, "show_progress": False}

# -- schedules -----------------------------------------------------------------------------------


def test_schedule_values():
    step = Schedule("step", 0.1, epochs=6, step_size=2, gamma=0.5)
    assert [step(e) for e in range(1, 7)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    exponential = Schedule("exponential", 0.2, epochs=4, gamma=0.9)
    assert [exponential(e) for e in range(1, 5)] == pytest.approx([0.2, 0.18, 0.162, 0.1458])
    cosine = Schedule("cosine", 0.1, epochs=4, min_lr=0.02)
    assert [cosine(e) for e in range(1, 5)] == pytest.approx(
        [0.1, 0.02 + 0.08 * (1 + math.cos(math.pi / 4)) / 2, 0.06, 0.02 + 0.08 * (1 - math.cos(math.pi / 4)) / 2]
    )
    assert Schedule("constant", 0.3, epochs=5)(5) == 0.3


@pytest.mark.parametrize("kind", ["step", "exponential", "cosine"])
def test_schedules_match_torch(kind):
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = {
        "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.3),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7, eta_min=0.001),
    }[kind]()
    ours = Schedule(kind, 0.1, epochs=7, step_size=3, gamma=0.3 if kind == "step" else 0.8, min_lr=0.001)
    for epoch in range(1, 8):
        assert ours(epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_schedule_errors():
    with pytest.raises(ConfigurationError, match="unknown learning-rate schedule 'linear'"):
        Schedule("linear", 0.1, 3)
    with pytest.raises(ConfigurationError, match="gamma"):
        Schedule("step", 0.1, 3, gamma=0)
    with pytest.raises(ConfigurationError, match="unknown learning-rate schedule"):
        TrainConfig(lr_schedule="nope").validate()


def test_fit_applies_the_schedule_each_epoch(synthetic_digits):
    config = TrainConfig(model="lenet5", epochs=3, batch_size=100, lr=0.04, lr_schedule="step", lr_step=1, lr_gamma=0.5)
    history = fit(config, synthetic_digits, **QUIET)
    assert [m.lr for m in history] == pytest.approx([0.04, 0.02, 0.01])


# -- early stopping --------------------------------------------------------------------------------


def test_early_stopping_bookkeeping():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    assert stopper.update(1.0, 1) and not stopper.should_stop
    assert not stopper.update(0.995, 2)  # not better by more than min_delta
    assert stopper.update(0.9, 3, {"epoch": 3}) and stopper.bad_epochs == 0
    assert not stopper.update(0.95, 4) and not stopper.update(0.91, 5) and stopper.should_stop
    assert (stopper.best_epoch, stopper.best_value, stopper.best_record) == (3, 0.9, {"epoch": 3})
    copy = EarlyStopping(patience=2, min_delta=0.01)
    copy.load_state(stopper.state())
    assert copy == stopper


def misleading_validation(data, validation_size: int):
    """The last training examples get the label k+1 for digit k: the better the model learns the
    training set, the worse its validation loss -- so the best validation epoch is the first."""
    labels = data.train_labels.copy()
    labels[-validation_size:] = (labels[-validation_size:] + 1) % 10
    return SimpleNamespace(
        train_images=data.train_images, train_labels=labels, test_images=data.test_images, test_labels=data.test_labels
    )


def early_stopping_config(**overrides) -> TrainConfig:
    settings = {
        "model": "lenet5",
        "epochs": 8,
        "batch_size": 50,
        "lr": 0.05,
        "seed": 2,
        "early_stopping": 2,
        "validation_size": 100,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path, synthetic_digits):
    data = misleading_validation(synthetic_digits, 100)
    history = fit(early_stopping_config(), data, tmp_path, **QUIET)
    validation_losses = [m.extra["val_loss"] for m in history]
    assert len(history) == 3  # epoch 1 best, then 2 epochs without improvement
    assert validation_losses[0] < min(validation_losses[1:])
    assert history.final.epoch == 1 and history.final.test_loss == history[0].test_loss

    # The returned model carries epoch 1's weights: its test loss is epoch 1's, not epoch 3's.
    config = early_stopping_config()
    split = prepare_split(history.model.spec, data.test_images, data.test_labels)
    test_loss, _ = evaluate(history.model, make_loss(history.model.spec), history.model.spec, split)
    assert test_loss == pytest.approx(history[0].test_loss, rel=1e-6)
    assert test_loss != pytest.approx(history[-1].test_loss, rel=1e-3)
    best = load_checkpoint(tmp_path / "best.npz")
    assert best.meta["epoch"] == 1 and best.meta["config"]["early_stopping"] == config.early_stopping
    for name, value in best.model.state_dict().items():
        np.testing.assert_array_equal(value, history.model.state_dict()[name])
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3] and "val_loss" in read_metrics(tmp_path)[0]


def test_early_stopping_survives_a_resume(tmp_path, synthetic_digits):
    data = misleading_validation(synthetic_digits, 100)
    fit(early_stopping_config(epochs=2), data, tmp_path, **QUIET)  # best epoch 1, one bad epoch so far
    resumed = fit(early_stopping_config(), data, tmp_path, resume=True, **QUIET)
    assert [m.epoch for m in resumed] == [3]  # the second bad epoch ends it
    assert resumed.final.epoch == 1  # restored from best.npz, written before the resume
    with pytest.raises(ConfigurationError, match="stopped early at epoch 3"):
        fit(early_stopping_config(), data, tmp_path, resume=True, **QUIET)


def test_early_stopping_needs_a_validation_set():
    with pytest.raises(ConfigurationError, match="validation set") as caught:
        TrainConfig(early_stopping=3).validate()
    assert "validation_size > 0" in str(caught.value) and "--validation-size" in str(caught.value)


# -- augmentation ----------------------------------------------------------------------------------


def test_random_shift_is_a_translation_with_background_fill(rng):
    images = rng.standard_normal((20, 2, 6, 7))
    shifted = random_shift(images, 2, np.random.default_rng(0), fill=-9.0)
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-9.0)
    rows, cols = np.random.default_rng(0).integers(0, 5, size=(2, 20))  # the same draws
    for n in range(20):
        np.testing.assert_array_equal(shifted[n], padded[n, :, rows[n] : rows[n] + 6, cols[n] : cols[n] + 7])
    assert len({(r, c) for r, c in zip(rows, cols)}) > 5


def test_random_rotation_moves_a_point_along_a_circle():
    image = np.zeros((1, 1, 21, 21))
    image[0, 0, 10, 16] = 1.0  # 6 pixels right of the centre (10, 10)
    rotated = random_rotation(image, 30.0, np.random.default_rng(3))
    angle = np.deg2rad(np.random.default_rng(3).uniform(-30, 30))
    rows, cols = np.mgrid[0:21, 0:21]
    mass = rotated[0, 0].sum()
    centre = (np.sum(rows * rotated[0, 0]) / mass - 10, np.sum(cols * rotated[0, 0]) / mass - 10)
    # Output p reads the input at R p (p, R p relative to the centre); the point lands where R p = (0, 6).
    assert centre == pytest.approx((6 * np.sin(angle), 6 * np.cos(angle)), abs=0.05)
    assert mass == pytest.approx(1.0, abs=0.05)  # bilinear resampling roughly keeps the mass


def test_zero_rotation_is_exact_and_fill_enters_from_outside(rng):
    images = rng.standard_normal((3, 1, 8, 8))
    np.testing.assert_array_equal(random_rotation(images, 0.0, rng), images)
    constant = np.ones((50, 1, 9, 9))
    rotated = random_rotation(constant, 45.0, np.random.default_rng(1), fill=-1.0)
    assert rotated[:, 0, 4, 4] == pytest.approx(1.0)  # the centre stays inside
    assert rotated[:, 0, 0, 0].min() < 0  # some corners came from outside the image


def test_flip_and_augmenter_are_seeded(rng):
    images = rng.standard_normal((40, 1, 5, 5)).astype(np.float32)
    flipped = random_flip(images, np.random.default_rng(2))
    chosen = np.random.default_rng(2).random(40) < 0.5
    np.testing.assert_array_equal(flipped[chosen], images[chosen, :, :, ::-1])
    np.testing.assert_array_equal(flipped[~chosen], images[~chosen])
    augmenter = Augmenter(shift=1, rotate=10.0, flip=False, fill=-0.4)
    first = augmenter(images, np.random.default_rng(5))
    np.testing.assert_array_equal(first, augmenter(images, np.random.default_rng(5)))
    assert first.shape == images.shape and first.dtype == np.float32
    assert not np.array_equal(first, augmenter(images, np.random.default_rng(6)))
    assert not Augmenter().active
    with pytest.raises(ConfigurationError, match="rotation"):
        Augmenter(rotate=200)
    with pytest.raises(ConfigurationError, match="shift"):
        TrainConfig(augment_shift=-1).validate()


def test_fit_with_augmentation_is_reproducible_and_changes_training(synthetic_digits):
    plain = TrainConfig(model="lenet5", epochs=1, batch_size=50, lr=0.05, seed=2)
    augmented = TrainConfig(**{**vars(plain), "augment_shift": 2, "augment_rotate": 10.0})
    first = fit(augmented, synthetic_digits, **QUIET)[0]
    assert first.train_loss == fit(augmented, synthetic_digits, **QUIET)[0].train_loss
    assert first.train_loss != fit(plain, synthetic_digits, **QUIET)[0].train_loss
    assert first.test_accuracy > 0.5  # small shifts and rotations keep the classes learnable


def test_schedule_scales_per_layer_learning_rates(synthetic_digits):
    config = TrainConfig(
        model="lenet5", epochs=2, batch_size=200, lr=0.02, layer_lr={"0": 0.1},
        lr_schedule="exponential", lr_gamma=0.5,
    )  # fmt: skip
    history = fit(config, synthetic_digits, **QUIET)
    assert [m.lr for m in history] == pytest.approx([0.1, 0.05])  # group 0 is the layer with its own rate
    # SDLM with a schedule is allowed since issue 8 item 7 (the schedule then sets η): tests/test_sdlm.py
