"""numcnn.trace: the recorded forward and backward pass equals a plain forward/backward of the same
model (float64, every registered model), hooks leave the numbers alone, fusion stays on outside a
trace, and ∂E/∂pixels agrees with finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import kernels, models
from numcnn.inspect import leaf_layers
from numcnn.layers import Graph, Sequential
from numcnn.train import make_loss

# vgg16 takes 3×224×224 inputs and has 138M parameters: a float64 copy alone is 1.1 GB and one
# sample's pass takes seconds, while its layer types (Conv2d, ReLU, MaxPool2d, Dropout, Linear) are
# all traced in the smaller models below.
TRACED_MODELS = [name for name in models.available_models() if name != "vgg16"]


def _close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def _model(name: str):
    model = models.build(name, rng=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    for _, value in model.named_buffers():  # running statistics that are not the identity
        if value.dtype.kind == "f":
            value[...] = rng.uniform(0.5, 1.5, size=value.shape)
    return model


def _plain_pass(model, x: np.ndarray, target: int):
    """What training computes, without any recording: eval-mode forward, the spec's loss, backward."""
    model.eval()
    model.zero_grad()
    outputs = model.forward(x[None])
    loss = make_loss(model.spec)
    value = loss.forward(outputs, np.array([target]))
    grad_input = model.backward(loss.backward(), need_input_grad=True)
    grads = {name: grad.copy() for name, _, grad in model.named_parameters()}
    return outputs[0], value, grad_input[0], grads


def _layer_outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each leaf's output computed layer by layer, by hand, on the reference backend."""
    with kernels.use_backend("reference"):
        if isinstance(model, Graph):
            tensors = {model.input_name: x[None]}
            for node in model.nodes:
                tensors[node.name] = node.layer.forward(*(tensors[name] for name in node.inputs))
            return {name: value[0] for name, value in tensors.items() if name != model.input_name}
        assert isinstance(model, Sequential)
        outputs, value = {}, x[None]
        for name, layer in leaf_layers(model):
            value = layer.forward(value)
            outputs[name] = value[0]
        return outputs


@pytest.mark.parametrize("name", TRACED_MODELS)
def test_trace_is_the_plain_forward_and_backward_pass(name):
    model = _model(name)
    spec = model.spec
    x = np.random.default_rng(2).standard_normal(spec.input_shape)
    target = 3
    model.train()
    # Gradients already accumulated by training must survive the trace untouched.
    for _, _, grad in model.named_parameters():
        grad[...] = 0.25
    caches = [layer.cache for _, layer in leaf_layers(model)]

    t = numcnn.trace(model, x, target=target)

    assert model.training and all(layer.training for _, layer in leaf_layers(model))
    assert all(grad.min() == grad.max() == 0.25 for _, _, grad in model.named_parameters())
    assert all(layer.cache is cache for (_, layer), cache in zip(leaf_layers(model), caches))

    outputs, value, grad_input, grads = _plain_pass(model, x, target)
    assert t.target == target
    assert t.loss == pytest.approx(value, rel=1e-12)
    _close(t.input, x)
    _close(t.input_gradient, grad_input)
    _close(t.layers[-1].activation, outputs)
    scores = spec.class_scores(outputs)
    expected_probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    _close(t.probabilities, expected_probabilities)
    assert t.prediction == int(np.argmax(expected_probabilities))

    # Every parameter gradient, named like named_parameters.
    traced = {f"{layer.name}.{key}": grad for layer in t.layers for key, grad in layer.param_grads.items()}
    assert set(traced) == set(grads)
    for key, grad in grads.items():
        _close(traced[key], grad)

    # Every layer's output against a layer-by-layer forward pass on the reference backend.
    by_hand = _layer_outputs(model, x)
    assert [layer.name for layer in t.layers] == list(by_hand)
    for layer in t.layers:
        _close(layer.activation, by_hand[layer.name])
        assert layer.delta.shape == layer.activation.shape == layer.output_shape

    # δ at the outputs: softmax − onehot for cross-entropy; onehot for LeNet-5's RBF criterion (E = y_target).
    onehot = np.eye(spec.num_classes)[target]
    expected_delta = onehot if spec.loss == "rbf_mse" else t.probabilities - onehot
    _close(t.layers[-1].delta, expected_delta)


@pytest.mark.parametrize("name", ["lenet5", "bn"])
def test_in_a_chain_each_delta_is_the_next_layers_input_gradient(name):
    model = _model(name)
    t = numcnn.trace(model, np.random.default_rng(0).standard_normal(model.spec.input_shape))
    for layer, successor in zip(t.layers, t.layers[1:]):
        _close(layer.delta, successor.input_grad)
    _close(t.layers[0].input_grad, t.input_gradient)


def test_residual_graph_sums_the_deltas_of_a_tensor_read_twice():
    model = _model("resnet_mnist")
    t = numcnn.trace(model, np.random.default_rng(0).standard_normal(model.spec.input_shape), target=1)
    traced = {layer.name: layer for layer in t.layers}
    for tensor in {name for node in model.nodes for name in node.inputs} - {model.input_name}:
        consumers = model.consumers(tensor)
        if len(consumers) > 1:  # a block's input: the residual branch and the shortcut
            total = sum(traced[name].input_grad for name in consumers)
            _close(traced[tensor].delta, total)
            break
    else:
        pytest.fail("resnet_mnist has no tensor with two consumers")


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_pixel_gradient_agrees_with_finite_differences(name):
    model = models.build(name, rng=0, dtype=np.float64)
    spec = model.spec
    # A bar (roughly a 1) on faint noise: a flat region gives equal neighbouring activations, i.e.
    # max-pooling ties, where the loss has a kink that finite differences straddle.
    pixels = np.random.default_rng(5).uniform(0.0, 0.1, size=(28, 28))
    pixels[6:22, 12:16] = np.random.default_rng(6).uniform(0.7, 1.0, size=(16, 4))
    t = numcnn.trace(model, pixels, target=7, spec=spec)
    assert t.pixel_gradient is not None and t.pixel_gradient.shape == (28, 28)
    # The prepared input is the training preprocessing of these pixels.
    _close(t.input, spec.prepare(pixels[None], np.float64)[0])
    step = 1e-6
    picks = [*np.argsort(-np.abs(t.pixel_gradient).ravel())[:4].tolist(), 0, 14 * 28 + 14]
    for flat in picks:
        row, col = divmod(flat, 28)
        plus, minus = pixels.copy(), pixels.copy()
        plus[row, col] += step
        minus[row, col] -= step
        loss_plus = numcnn.trace(model, plus, target=7, spec=spec).loss
        loss_minus = numcnn.trace(model, minus, target=7, spec=spec).loss
        numeric = (loss_plus - loss_minus) / (2 * step)
        assert t.pixel_gradient[row, col] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_hooks_change_no_number_and_switch_fusion_off_only_where_they_sit():
    model = models.build("lenet5", rng=0, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((2, 1, 28, 28))
    targets = np.array([1, 4])

    def run():
        model.zero_grad()
        loss = numcnn.CrossEntropyLoss()
        value = loss.forward(model.forward(x), targets)
        grad = model.backward(loss.backward(), need_input_grad=True)
        return value, grad, [g.copy() for _, g in model.parameters()]

    seen = []
    with kernels.use_backend("numpy"):  # fuses ReLU → MaxPool2d
        plain = run()
        assert {step for step in model.steps if step[1] > step[0]} == {(1, 2), (4, 5)}
        handles = [model[1].register_forward_hook(lambda layer, inputs, output: seen.append(output.shape))]
        handles.append(model[4].register_backward_hook(lambda layer, grads, delta: seen.append(delta.shape)))
        hooked = run()
        assert all(first == last for first, last in model.steps[:6])  # both pairs ran unfused
        for handle in handles:
            handle.remove()
        again = run()
        assert {step for step in model.steps if step[1] > step[0]} == {(1, 2), (4, 5)}
    assert seen == [(2, 6, 28, 28), (2, 16, 10, 10)]
    for result in (hooked, again):
        assert result[0] == pytest.approx(plain[0], rel=1e-12)
        _close(result[1], plain[1])
        for ours, theirs in zip(result[2], plain[2]):
            _close(ours, theirs)


@pytest.mark.skipif("numba" not in kernels.available_backends(), reason="needs numba")
def test_numba_still_fuses_in_training_and_not_while_tracing():
    model = models.build("lenet5", rng=0, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    plans = []
    # A hook on the last layer (never fusable) sees the plan of the forward pass being traced.
    model[11].register_backward_hook(lambda layer, grads, delta: plans.append(model.steps))
    with kernels.use_backend("numba"):
        numcnn.trace(model, x[0])
        model.train()
        model.forward(x)
        model.backward(np.ones((4, 10), dtype=np.float32))
    assert all(first == last for first, last in plans[0])
    assert {step for step in plans[1] if step[1] > step[0]} == {(0, 2), (3, 5)}


def test_default_target_is_the_prediction_and_bad_targets_and_shapes_are_one_line_errors():
    model = models.build("lenet5", rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((1, 28, 28))
    t = numcnn.trace(model, x)
    assert t.target == t.prediction == int(np.argmax(t.probabilities))
    assert t.pixel_gradient is None
    for target, message in ((10, "not a class"), (-1, "not a class"), (2.5, "class index"), (True, "class index")):
        with pytest.raises(numcnn.ConfigurationError, match=message) as error:
            numcnn.trace(model, x, target=target)
        assert "\n" not in str(error.value)
    with pytest.raises(numcnn.ShapeError, match=r"\(H, W\)"):
        numcnn.trace(model, x, spec=model.spec)
    with pytest.raises(numcnn.ShapeError, match="NaN"):
        numcnn.trace(model, np.full((28, 28), np.nan), spec=model.spec)


def test_predict_gives_the_probabilities_of_trace_and_restores_the_mode():
    model = models.build("lenet5_1998", rng=0, dtype=np.float64)
    pixels = np.random.default_rng(0).random((3, 28, 28))
    model.train()
    probabilities = numcnn.predict(model, pixels, spec=model.spec)
    assert model.training
    assert probabilities.shape == (3, 10)
    _close(probabilities.sum(axis=1), np.ones(3))
    for row, image in zip(probabilities, pixels):
        _close(row, numcnn.trace(model, image, spec=model.spec).probabilities)
    # Penalties: the most probable class is the nearest RBF code.
    model.eval()
    outputs = model.forward(model.spec.prepare(pixels, np.float64))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), outputs.argmin(axis=1))
    # 0-255 integer pictures are the same pictures.
    grey = np.round(pixels * 255).astype(np.uint8)
    _close(numcnn.predict(model, grey, spec=model.spec), numcnn.predict(model, grey / 255.0, spec=model.spec))
