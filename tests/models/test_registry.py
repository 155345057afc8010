"""The model registry and the lenet5 architecture."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.errors import CheckpointError, ConfigurationError


def test_lenet5_shapes_and_parameter_count():
    model = models.build("lenet5", rng=0)
    shapes = []
    shape = (1, 28, 28)
    for layer in model:
        shape = layer.output_shape(shape)
        shapes.append(shape)
    assert shapes[0] == (6, 28, 28) and shapes[2] == (6, 14, 14)
    assert shapes[3] == (16, 10, 10) and shapes[5] == (16, 5, 5) and shapes[6] == (400,)
    assert model.output_shape((1, 28, 28)) == (10,)
    # 156 + 2,416 + 48,120 + 10,164 + 850
    assert model.num_parameters() == 61_706
    y = model.forward(np.zeros((3, 1, 28, 28), dtype=np.float32))
    assert y.shape == (3, 10) and y.dtype == np.float32


def test_build_is_reproducible_from_the_seed_and_honours_dtype():
    a = models.build("lenet5", rng=7)
    b = models.build("lenet5", rng=7)
    c = models.build("lenet5", rng=8)
    for (name, pa, _), (_, pb, _), (_, pc, _) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        np.testing.assert_array_equal(pa, pb, err_msg=name)
        assert not np.array_equal(pa, pc)
    model64 = models.build("lenet5", rng=7, dtype=np.float64)
    assert all(p.dtype == np.float64 and g.dtype == np.float64 for p, g in model64.parameters())
    assert model64.forward(np.zeros((1, 1, 28, 28), dtype=np.float32)).dtype == np.float64


def test_parameter_names_follow_torch_state_dict_keys():
    names = [name for name, _, _ in models.build("lenet5", rng=0).named_parameters()]
    assert names[:4] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert names[-2:] == ["11.weight", "11.bias"]


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ConfigurationError, match=r"unknown model 'lenet7'.*lenet5"):
        models.build("lenet7")


def test_state_dict_round_trip_and_mismatch():
    a, b = models.build("lenet5", rng=1), models.build("lenet5", rng=2)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(CheckpointError, match="missing"):
        b.load_state_dict({"0.weight": a.state_dict()["0.weight"]})


def test_zero_grad_and_accumulation():
    model = models.build("lenet5", rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    grad_output = np.ones((2, 10))
    model.forward(x)
    model.backward(grad_output)
    first = [g.copy() for _, g in model.parameters()]
    model.forward(x)
    model.backward(grad_output)
    for before, (_, after) in zip(first, model.parameters()):
        np.testing.assert_allclose(after, 2 * before)  # gradients accumulate with +=
    model.zero_grad()
    assert all(not g.any() for _, g in model.parameters())


def test_backward_without_input_gradient_returns_none_but_fills_parameter_gradients():
    model = models.build("lenet5", rng=0)
    model.forward(np.ones((1, 1, 28, 28), dtype=np.float32))
    assert model.backward(np.ones((1, 10), dtype=np.float32), need_input_grad=False) is None
    assert np.any(model[0].grads["weight"])


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(numcnn.NumcnnError, match=r"Conv2d.backward\(\) was called before forward\(\)"):
        numcnn.Conv2d(1, 1, 3).backward(np.zeros((1, 1, 1, 1)))


def test_train_eval_switch_reaches_every_layer():
    model = models.build("lenet5", rng=0)
    model.eval()
    assert not model.training and not any(layer.training for layer in model)
    model.train()
    assert all(layer.training for layer in model)


def test_backward_does_not_modify_its_input():
    model = models.build("lenet5", rng=0, dtype=np.float64)
    model.forward(np.random.default_rng(1).standard_normal((2, 1, 28, 28)))
    grad_output = np.random.default_rng(2).standard_normal((2, 10))
    kept = grad_output.copy()
    model.backward(grad_output)
    np.testing.assert_array_equal(grad_output, kept)


def test_layer_configuration_errors():
    with pytest.raises(ConfigurationError, match="stride"):
        numcnn.Conv2d(1, 1, 3, stride=0)
    with pytest.raises(ConfigurationError, match="padding"):
        numcnn.MaxPool2d(2, padding=2)
    with pytest.raises(numcnn.ShapeError, match="3 channels but the weight expects 1"):
        numcnn.Conv2d(1, 2, 3).forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(numcnn.ShapeError, match="Flatten"):
        numcnn.Linear(4, 2).forward(np.zeros((1, 1, 2, 2)))
