"""Dropout, batch normalisation, global average pooling and the graph container: float64 gradient
checks (relative error < 1e-6), train/eval behaviour and values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import (
    Add,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Graph,
    Linear,
    ReLU,
    Sequential,
)
from numcnn.errors import ConfigurationError, NumcnnError, ShapeError

TOLERANCE = 1e-6


def randomized_bn(layer, rng):
    """Non-trivial γ, β and running statistics, so that no term of the gradient is hidden by 1s and 0s."""
    layer.params["weight"][:] = rng.uniform(0.5, 1.5, layer.num_features)
    layer.params["bias"][:] = rng.standard_normal(layer.num_features)
    layer.buffers["running_mean"][:] = rng.standard_normal(layer.num_features)
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, layer.num_features)
    return layer


# -- batch normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 2, 3, 4), (3, 1, 1, 2)])
def test_batchnorm2d_training_mode_gradcheck(shape, rng):
    layer = randomized_bn(BatchNorm2d(shape[1], dtype=np.float64), rng)
    x = rng.standard_normal(shape) * 3 + 1
    report = numcnn.gradcheck(layer, x, rng=rng)
    assert report.passed, str(report)
    assert {e.name for e in report.entries} == {"input", "weight", "bias"}


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)])
def test_batchnorm1d_training_mode_gradcheck(shape, rng):
    layer = randomized_bn(BatchNorm1d(shape[1], dtype=np.float64), rng)
    report = numcnn.gradcheck(layer, rng.standard_normal(shape) * 2, rng=rng)
    assert report.passed, str(report)


@pytest.mark.parametrize("layer_type, shape", [(BatchNorm2d, (2, 3, 4, 4)), (BatchNorm1d, (5, 3))])
def test_batchnorm_eval_mode_gradcheck(layer_type, shape, rng):
    layer = randomized_bn(layer_type(shape[1], dtype=np.float64), rng).eval()
    report = numcnn.gradcheck(layer, rng.standard_normal(shape), rng=rng)
    assert report.passed, str(report)


def test_batchnorm_training_output_is_normalised_per_channel(rng):
    layer = BatchNorm2d(3, dtype=np.float64)
    x = rng.standard_normal((8, 3, 4, 5)) * np.array([1.0, 5.0, 0.1])[None, :, None, None] + 7
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) / (x.var(axis=(0, 2, 3)) + 1e-5))
    layer.params["weight"][:] = [2.0, 3.0, 4.0]
    layer.params["bias"][:] = [-1.0, 0.0, 1.0]
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), [-1.0, 0.0, 1.0], atol=1e-12)


def test_batchnorm_running_statistics_follow_pytorchs_rule_with_unbiased_variance():
    layer = BatchNorm1d(2, momentum=0.1, dtype=np.float64)
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]])  # means (3, 12); unbiased variances (4, 12)
    layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, [0.3, 1.2])
    np.testing.assert_allclose(layer.running_var, [0.9 + 0.4, 0.9 + 1.2])
    layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, [0.9 * 0.3 + 0.3, 0.9 * 1.2 + 1.2])
    np.testing.assert_allclose(layer.running_var, [0.9 * 1.3 + 0.4, 0.9 * 2.1 + 1.2])
    assert int(layer.num_batches_tracked) == 2


def test_batchnorm_eval_mode_uses_running_statistics_and_does_not_update_them(rng):
    layer = randomized_bn(BatchNorm2d(2, dtype=np.float64), rng).eval()
    before = {name: value.copy() for name, value in layer.buffers.items()}
    x = rng.standard_normal((3, 2, 2, 2))
    y = layer.forward(x)
    mean = layer.running_mean[None, :, None, None]
    std = np.sqrt(layer.running_var[None, :, None, None] + layer.eps)
    expected = (x - mean) / std * layer.weight[None, :, None, None] + layer.bias[None, :, None, None]
    np.testing.assert_allclose(y, expected)
    for name, value in layer.buffers.items():
        np.testing.assert_array_equal(value, before[name])
    # One sample works in eval mode; in training mode it has no batch statistics.
    assert layer.forward(x[:1]).shape == (1, 2, 2, 2)
    with pytest.raises(ShapeError, match="more than one value per channel"):
        BatchNorm1d(2).forward(np.zeros((1, 2)))


def test_batchnorm_state_is_saved_in_the_state_dict():
    model = Sequential(Conv2d(1, 2, 3, bias=False, rng=0), BatchNorm2d(2), ReLU())
    assert sorted(model.state_dict()) == [
        "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight",
    ]  # fmt: skip
    model.forward(np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype(np.float32))
    copy = Sequential(Conv2d(1, 2, 3, bias=False, rng=1), BatchNorm2d(2), ReLU())
    copy.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(copy[1].running_var, model[1].running_var)
    assert int(copy[1].num_batches_tracked) == 1


def test_batchnorm_configuration_and_shape_errors():
    with pytest.raises(ConfigurationError, match="num_features"):
        BatchNorm2d(0)
    with pytest.raises(ConfigurationError, match="momentum"):
        BatchNorm2d(3, momentum=0)
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(3\) expects input \(N, C, H, W\)"):
        BatchNorm2d(3).forward(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="C = 3"):
        BatchNorm1d(3).forward(np.zeros((2, 4)))


# -- dropout -------------------------------------------------------------------------------------


def test_dropout_with_a_frozen_mask_gradcheck(rng):
    layer = Dropout(0.3, rng=rng)
    x = rng.standard_normal((4, 3, 5))
    layer.forward(x)
    layer.freeze_mask()
    report = numcnn.gradcheck(layer, x, rng=rng)
    assert report.passed, str(report)
    assert [e.name for e in report.entries] == ["input"]


def test_dropout_training_mode_scales_kept_units_and_zeroes_the_rest():
    layer = Dropout(0.25, rng=0)
    x = np.ones((200, 500))
    y = layer.forward(x)
    assert set(np.unique(y)) == {0.0, 1.0 / 0.75}
    assert np.mean(y == 0) == pytest.approx(0.25, abs=0.005)  # 100,000 draws: σ ≈ 0.0014
    assert y.mean() == pytest.approx(1.0, abs=0.01)  # inverted dropout keeps the expectation
    grad = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(grad, 2.0 * (y != 0) / 0.75)


def test_dropout_is_the_identity_in_eval_mode_and_with_p_zero(rng):
    x = rng.standard_normal((3, 4))
    layer = Dropout(0.5, rng=0).eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x * 2), x * 2)
    np.testing.assert_array_equal(Dropout(0.0).forward(x), x)


def test_dropout_masks_are_reproducible_from_the_seed_and_fresh_each_pass():
    x = np.ones((10, 10), dtype=np.float32)
    a, b = Dropout(0.5, rng=7), Dropout(0.5, rng=7)
    first = a.forward(x)
    np.testing.assert_array_equal(first, b.forward(x))
    assert first.dtype == np.float32
    assert not np.array_equal(first, a.forward(x))  # the next pass draws a new mask
    a.freeze_mask(first * 0.5)
    np.testing.assert_array_equal(a.forward(x), first * 0.5)
    a.unfreeze_mask()
    assert not np.array_equal(a.forward(x), first * 0.5)


def test_dropout_errors():
    with pytest.raises(ConfigurationError, match=r"\[0, 1\)"):
        Dropout(1.0)
    with pytest.raises(NumcnnError, match="training-mode forward pass first"):
        Dropout(0.5).eval().freeze_mask()
    layer = Dropout(0.5)
    layer.freeze_mask(np.ones((2, 2)))
    with pytest.raises(NumcnnError, match="frozen mask has shape"):
        layer.forward(np.ones((3, 2)))


# -- global average pooling ------------------------------------------------------------------------


def test_global_avg_pool_values_shape_and_gradcheck(rng):
    layer = GlobalAvgPool2d()
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(layer.forward(x), x.reshape(2, 3, 4).mean(axis=2))
    assert layer.output_shape((3, 7, 5)) == (3,)
    np.testing.assert_array_equal(layer.backward(np.ones((2, 3))), np.full((2, 3, 2, 2), 0.25))
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 3, 4, 5)), rng=rng)
    assert report.passed, str(report)


# -- the graph container ---------------------------------------------------------------------------


def residual_block(rng, channels=2, dtype=np.float64) -> Graph:
    """conv → BN → ReLU → conv → BN, plus the identity shortcut: the input feeds two nodes.

    The convolutions have no bias: BN subtracts the channel mean, so a bias there has gradient 0
    exactly and a finite difference of it measures nothing but rounding noise."""
    return Graph([
        ("conv1", Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng, dtype=dtype)),
        ("bn1", BatchNorm2d(channels, dtype=dtype)),
        ("relu1", ReLU()),
        ("conv2", Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng, dtype=dtype)),
        ("bn2", BatchNorm2d(channels, dtype=dtype)),
        ("add", Add(), ("input", "bn2")),
        ("relu2", ReLU()),
    ])  # fmt: skip


def test_graph_residual_block_gradcheck(rng):
    block = residual_block(rng)
    x = rng.standard_normal((3, 2, 4, 4))
    report = numcnn.gradcheck(block, x, rng=rng)
    assert report.passed, str(report)
    names = [e.name for e in report.entries]
    assert names == ["input", "conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"]


def test_graph_with_a_tensor_shared_by_three_consumers_gradcheck(rng):
    # "h" feeds a linear branch, a ReLU branch and the sum directly: its gradient has three terms.
    graph = Graph([
        ("h", Linear(4, 3, rng=rng, dtype=np.float64)),
        ("a", Linear(3, 3, rng=rng, dtype=np.float64), "h"),
        ("b", ReLU(), "h"),
        ("sum", Add(), ("a", "b", "h")),
    ])  # fmt: skip
    x = rng.standard_normal((5, 4))
    report = numcnn.gradcheck(graph, x, rng=rng)
    assert report.passed, str(report)
    # Against the closed form: y = hAᵀ + a_b + relu(h) + h, with h = xWᵀ + b.
    h = x @ graph["h"].weight.T + graph["h"].bias
    expected = h @ graph["a"].weight.T + graph["a"].bias + np.maximum(h, 0) + h
    np.testing.assert_allclose(graph.forward(x), expected)


def test_graph_as_a_layer_inside_sequential_with_a_loss_gradcheck(rng, distinct_values):
    model = Sequential(
        Conv2d(1, 2, 3, padding=1, rng=rng, dtype=np.float64),
        residual_block(rng),
        GlobalAvgPool2d(),
        Linear(2, 3, rng=rng, dtype=np.float64),
    )
    x = distinct_values((4, 1, 5, 5))
    report = numcnn.gradcheck(model, x, loss=CrossEntropyLoss(), targets=np.array([0, 2, 1, 2]), rng=rng)
    assert report.passed, str(report)
    assert "1.conv2.weight" in [e.name for e in report.entries]
    assert model.output_shape((1, 5, 5)) == (3,)


def test_graph_train_eval_propagates_and_state_dict_round_trips(rng):
    model = Sequential(residual_block(rng, dtype=np.float32), Flatten())
    model.eval()
    assert not model[0].training and not model[0]["bn1"].training
    model.train()
    assert all(layer.training for layer in model[0].children())
    model.forward(rng.standard_normal((2, 2, 3, 3)).astype(np.float32))
    copy = Sequential(residual_block(np.random.default_rng(99), dtype=np.float32), Flatten())
    copy.load_state_dict(model.state_dict())
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(copy.eval().forward(x), model.eval().forward(x))
    assert "0.bn2.running_var" in model.state_dict()


def test_graph_skips_nodes_the_output_does_not_need_and_input_gradient_on_request(rng):
    graph = Graph(
        [("a", Linear(3, 2, rng=rng)), ("unused", Linear(2, 2, rng=rng)), ("b", ReLU(), "a")], output="b"
    )
    x = rng.standard_normal((2, 3)).astype(np.float32)
    graph.forward(x)
    assert graph["unused"].cache is None  # never ran
    assert graph.backward(np.ones((2, 2), dtype=np.float32), need_input_grad=False) is None
    assert graph["a"].grads["weight"].any()
    assert graph.consumers("a") == ["b"]


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([], "at least one node"),
        ([("a", ReLU()), ("a", ReLU())], "used twice"),
        ([("a", ReLU(), "later"), ("later", ReLU())], "topological order"),
        ([("a", Add())], "cannot take 1 input"),
        ([("a", ReLU()), ("b", ReLU(), ("input", "a"))], "cannot take 2 input"),
        ([("a.b", ReLU())], "without '.'"),
        ([("a", "ReLU")], "not a Layer"),
    ],
)
def test_graph_construction_errors(nodes, message):
    with pytest.raises(ConfigurationError, match=message):
        Graph(nodes)


def test_add_shape_mismatch_is_a_shape_error():
    graph = Graph([("flat", Flatten()), ("sum", Add(), ("input", "flat"))])
    with pytest.raises(ShapeError, match="Add: input 1 has shape"):
        graph.forward(np.zeros((2, 1, 2, 2)))


def test_containers_recurse_through_named_children(rng):
    # Sequential names children by index, Graph by node name; the recursion itself lives in Layer.
    block = residual_block(rng, dtype=np.float32)
    model = Sequential(Conv2d(1, 2, 3, rng=rng), block, Flatten())
    assert [name for name, _ in model.named_children()] == ["0", "1", "2"]
    assert [name for name, _ in block.named_children()] == ["conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu2"]
    assert list(model.children()) == [layer for _, layer in model.named_children()]
    names = [name for name, _, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.conv1.weight", "1.bn1.weight", "1.bn1.bias", "1.conv2.weight",
                     "1.bn2.weight", "1.bn2.bias"]  # fmt: skip
    assert [param for param, _ in model.parameters()] == [param for _, param, _ in model.named_parameters()]
    assert [name for name, _ in block.named_buffers()][:3] == [
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"
    ]  # fmt: skip
    assert model.num_parameters() == sum(param.size for param, _ in model.parameters()) == 2 * 9 + 2 + 2 * 36 + 8
    for _, grad in model.parameters():
        grad.fill(1.0)
    model.zero_grad()
    assert not any(grad.any() for _, grad in model.parameters())


def test_a_graph_adds_the_penalties_of_its_nodes(rng):
    combination = numcnn.LearnedCombination2d(2, 3, 1, sparsity=0.5, sparsity_power=0.5, rng=rng, dtype=np.float64)
    graph = Graph([("mix", combination), ("relu", ReLU())])
    assert combination.penalty() > 0 and graph.penalty() == pytest.approx(combination.penalty())
    report = numcnn.gradcheck(graph, rng.standard_normal((2, 2, 3, 3)), rng=rng)
    assert report.passed, str(report)
