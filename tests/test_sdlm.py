"""SDLM (LeCun's stochastic diagonal Levenberg–Marquardt), per-layer learning rates, and their use by the
trainer and the command line."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import Flatten, Linear, MSELoss, RBFLoss, ReLU, Sequential, models
from numcnn.cli.main import build_parser
from numcnn.errors import CheckpointError, ConfigurationError
from numcnn.optim import SGD, layer_groups
from numcnn.sdlm import LECUN_1998_SCHEDULE, SDLM, gauss_newton_diagonal, schedule_factor
from numcnn.train import TrainConfig, fit, make_optimizer

QUIET = {"log": lambda line: None, "show_progress": False}


def test_step_is_eta_over_mu_plus_h_times_the_gradient():
    model = Sequential(Linear(2, 1, rng=0, dtype=np.float64))
    optimizer = SDLM(model.parameters(), lr=0.1, damping=0.5)
    weight, bias = model[0].weight.copy(), model[0].bias.copy()
    model[0].grads["weight"][...] = [[1.0, -2.0]]
    model[0].grads["bias"][...] = [4.0]
    optimizer.step()  # no estimate yet: h = 0, i.e. SGD with η/μ
    np.testing.assert_allclose(model[0].weight, weight - 0.2 * np.array([[1.0, -2.0]]))
    optimizer.set_curvature(model, {"0.weight": np.array([[1.5, 0.0]]), "0.bias": np.array([3.5])})
    weight, bias = model[0].weight.copy(), model[0].bias.copy()
    optimizer.step()
    np.testing.assert_allclose(model[0].weight, weight - np.array([[0.1 / 2.0 * 1.0, 0.1 / 0.5 * -2.0]]))
    np.testing.assert_allclose(model[0].bias, bias - 0.1 / 4.0 * 4.0)


def test_sdlm_is_newtons_method_when_the_hessian_is_diagonal(rng):
    # E = (1/N) Σ ½ (w x + b − t)² with zero-mean x has the diagonal Hessian diag(mean x², 1): then
    # h is the exact Hessian diagonal, and one step with η = 1, μ → 0 lands on the minimum.
    x = rng.standard_normal((64, 1))
    x -= x.mean()
    t = 3.0 * x - 0.5
    model = Sequential(Linear(1, 1, rng=0, dtype=np.float64))
    loss = MSELoss()
    optimizer = SDLM(model.parameters(), lr=1.0, damping=1e-12)
    optimizer.start_epoch(1, model=model, loss=loss, images=x, labels=t, rng=rng)
    assert optimizer.curvature(0)[0, 0] == pytest.approx(np.mean(x * x))
    assert optimizer.curvature(1)[0] == pytest.approx(1.0)
    model.zero_grad()
    loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    optimizer.step()
    assert model[0].weight[0, 0] == pytest.approx(3.0) and model[0].bias[0] == pytest.approx(-0.5)


def test_the_paper_schedule():
    # LeCun et al. 1998 §III.C: 0.0005 for two passes, 0.0002 for three, 0.0001 for three,
    # 0.00005 for four, 0.00001 thereafter.
    expected = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    rates = [5e-4 * schedule_factor(LECUN_1998_SCHEDULE, epoch) for epoch in range(1, 21)]
    np.testing.assert_allclose(rates, expected)
    optimizer = SDLM([(np.ones(1), np.ones(1))], lr=0.01, schedule=LECUN_1998_SCHEDULE)
    optimizer.start_epoch(7)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002)


def test_curvature_is_optimiser_state_and_survives_a_round_trip(rng):
    model = models.build("lenet5_1998", rng=0, dtype=np.float64)
    optimizer = SDLM(model.parameters(), lr=0.01, curvature_samples=3)
    images, labels = rng.standard_normal((5, 1, 32, 32)), rng.integers(0, 10, size=5)
    optimizer.start_epoch(1, model=model, loss=RBFLoss(), images=images, labels=labels, rng=rng)
    state = optimizer.state_dict()
    assert len(state) == len(model.parameters()) and all(key.startswith("curvature.") for key in state)
    restored = SDLM(model.parameters(), lr=0.01)
    restored.load_state_dict(state)
    for index in range(len(model.parameters())):
        np.testing.assert_array_equal(restored.curvature(index), optimizer.curvature(index))


def test_gauss_newton_diagonal_weights_batches_by_their_size(rng):
    model = Sequential(Linear(3, 2, rng=0, dtype=np.float64), ReLU(), Linear(2, 2, rng=1, dtype=np.float64))
    x, t = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    whole = gauss_newton_diagonal(model, MSELoss(), x, t, batch_size=7)
    pieces = gauss_newton_diagonal(model, MSELoss(), x, t, batch_size=3)  # 3 + 3 + 1 samples
    for name in whole:
        np.testing.assert_allclose(pieces[name], whole[name], rtol=1e-12)


def test_sdlm_errors():
    with pytest.raises(ConfigurationError, match="damping"):
        SDLM([(np.ones(1), np.ones(1))], lr=0.1, damping=0)
    model = Sequential(Linear(2, 1, rng=0))
    other = Sequential(Linear(2, 1, rng=0))
    optimizer = SDLM(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="does not own"):
        optimizer.set_curvature(other, {"0.weight": np.zeros((1, 2)), "0.bias": np.zeros(1)})
    with pytest.raises(ConfigurationError, match="needs the model, the loss"):
        optimizer.start_epoch(1, model=model)


def test_layer_groups_give_layers_their_own_learning_rate():
    model = Sequential(Linear(2, 2, rng=0, dtype=np.float64), ReLU(), Linear(2, 1, rng=0, dtype=np.float64))
    optimizer = SGD(layer_groups(model, {"2": 0.5}), lr=0.1)
    for _, grad in model.parameters():
        grad.fill(1.0)
    first, last = model[0].weight.copy(), model[2].weight.copy()
    optimizer.step()
    np.testing.assert_allclose(model[0].weight, first - 0.1)
    np.testing.assert_allclose(model[2].weight, last - 0.5)
    with pytest.raises(ConfigurationError, match=r"layer\(s\) \['1'\], which have no parameters"):
        layer_groups(model, {1: 0.1})


def test_make_optimizer_follows_the_configuration():
    model = models.build("lenet5_1998", rng=0)
    assert isinstance(make_optimizer(TrainConfig(model="lenet5_1998"), model), SGD)
    sdlm = make_optimizer(TrainConfig(model="lenet5_1998", optimizer="sdlm", lr=0.002, damping=0.05), model)
    assert isinstance(sdlm, SDLM) and sdlm.param_groups[0]["damping"] == 0.05
    assert sdlm.schedule == LECUN_1998_SCHEDULE
    grouped = make_optimizer(TrainConfig(model="lenet5_1998", layer_lr={"0": 0.001}), model)
    assert [group["lr"] for group in grouped.param_groups] == [0.001, 0.01]
    with pytest.raises(ConfigurationError, match="optimizer must be one of"):
        TrainConfig(optimizer="adam").validate()


def sdlm_config(**overrides) -> TrainConfig:
    settings = {
        "model": "lenet5_1998",
        "optimizer": "sdlm",
        "lr": 0.001,
        "batch_size": 16,
        "epochs": 2,
        "seed": 1,
        "curvature_samples": 50,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def test_fit_with_sdlm_learns_and_resumes_exactly(tmp_path, synthetic_digits):
    straight = fit(sdlm_config(epochs=3), synthetic_digits, tmp_path / "straight", **QUIET)
    assert straight[-1].test_accuracy > 0.9
    assert straight[2].lr == pytest.approx(0.001 * 0.4)  # epoch 3: the second step of the paper's schedule
    fit(sdlm_config(epochs=2), synthetic_digits, tmp_path / "resumed", **QUIET)
    resumed = fit(sdlm_config(epochs=3), synthetic_digits, tmp_path / "resumed", resume=True, **QUIET)
    assert resumed[0].train_loss == pytest.approx(straight[2].train_loss, rel=1e-6)
    with pytest.raises(CheckpointError, match="optimizer='sdlm'"):
        fit(sdlm_config(epochs=4, optimizer="sgd"), synthetic_digits, tmp_path / "resumed", resume=True, **QUIET)


def test_cli_options_reach_the_configuration():
    args = build_parser().parse_args(
        ["train", "--model", "lenet5_1998", "--optimizer", "sdlm", "--damping", "0.05", "--layer-lr", "0=0.01",
         "--layer-lr", "11=0.002", "--curvature-samples", "300"]
    )  # fmt: skip
    assert args.optimizer == "sdlm" and args.damping == 0.05 and args.curvature_samples == 300
    assert dict(args.layer_lr) == {"0": 0.01, "11": 0.002}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--layer-lr", "conv=0.1"])


# -- issue 8: SDLM on every registered model, with any learning-rate schedule --------------------------------


def test_sdlm_with_another_schedule_leaves_eta_to_that_schedule():
    """lenet5 trains with a cosine schedule by default: SDLM used to refuse it."""
    config = TrainConfig.for_model("lenet5", optimizer="sdlm")
    assert config.lr_schedule == "cosine"
    config.validate()
    optimizer = make_optimizer(config, models.build("lenet5", rng=0))
    assert isinstance(optimizer, SDLM) and optimizer.schedule is None  # the trainer's cosine sets η
    constant = make_optimizer(
        TrainConfig(model="lenet5", optimizer="sdlm", lr_schedule="constant"), models.build("lenet5")
    )
    assert constant.schedule == LECUN_1998_SCHEDULE


def test_sdlm_refuses_a_model_with_a_layer_without_curvature_up_front():
    from numcnn.layers import LearnedCombination2d

    model = Sequential(LearnedCombination2d(1, 2, 1), Flatten())
    with pytest.raises(ConfigurationError, match="LearnedCombination2d has none"):
        make_optimizer(TrainConfig(optimizer="sdlm"), model)


@pytest.mark.parametrize("name", ["lenet5", "bn", "resnet_mnist"])
def test_sdlm_steps_lower_the_loss_of_modern_models(name, rng):
    """Max pooling, ReLU, batch norm, dropout and residual graphs: the curvature pass runs, and steps
    η/(μ + h)·g on one batch lower its loss."""
    from numcnn.train import make_loss

    spec = models.get_spec(name)
    with numcnn.kernels.use_backend("numpy"):
        model = models.build(name, rng=0)
        loss = make_loss(spec)
        images = rng.standard_normal((16, *spec.input_shape)).astype(np.float32)
        labels = np.arange(16) % 10
        optimizer = make_optimizer(TrainConfig.for_model(name, optimizer="sdlm", lr=0.0005), model)
        optimizer.start_epoch(1, model=model, loss=loss, images=images, labels=labels, rng=rng)
        assert all(optimizer.curvature(index) is not None for index in range(len(optimizer.pairs())))
        values = []
        for _ in range(8):
            model.zero_grad()
            values.append(float(loss.forward(model.forward(images), labels)))
            model.backward(loss.backward())
            optimizer.step()
    assert values[-1] < values[0], values
