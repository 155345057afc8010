"""The exercise-15.6 model family, the residual network and VGG-16 as registry entries."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.errors import ConfigurationError
from numcnn.models.registry import ModelSpec


def types(name: str) -> list[str]:
    return [type_name for type_name, _ in models.get_spec(name).layers]


def conv_channels(name: str) -> list[int]:
    return [args["out_channels"] for type_name, args in models.get_spec(name).layers if type_name == "Conv2d"]


def test_base_is_matconvnets_baseline():
    assert types("base") == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d", "Conv2d", "ReLU", "Conv2d", "Flatten"]
    kernels = [args["kernel_size"] for t, args in models.get_spec("base").layers if t == "Conv2d"]
    assert kernels == [5, 5, 4, 1] and conv_channels("base") == [20, 50, 500, 10]
    # 5·5·1·20+20 + 5·5·20·50+50 + 4·4·50·500+500 + 500·10+10
    assert models.build("base", rng=0).num_parameters() == 431_080


def test_bn_and_dropout_variants_put_the_layers_where_the_exercise_says():
    assert types("bn") == [
        "Conv2d", "BatchNorm2d", "MaxPool2d", "Conv2d", "BatchNorm2d", "MaxPool2d",
        "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Flatten",
    ]  # fmt: skip
    assert all(args.get("bias") is False for t, args in models.get_spec("bn").layers[:7] if t == "Conv2d")
    assert types("base_dropout")[-3:] == ["Conv2d", "Dropout", "Flatten"]  # right after the classifier
    assert types("bn_dropout") == [*types("bn")[:-1], "Dropout", "Flatten"]


@pytest.mark.parametrize(
    "name, channels, parameters",
    [
        ("sk", [20, 20, 50, 50, 500, 10], 441_570),
        ("sk_1", [20, 20, 50, 50, 500, 10], 441_570),
        ("sk_2", [40, 40, 100, 100, 1000, 10], 1_753_330),
        ("sk_1.5", [30, 30, 75, 75, 750, 10], 988_675),
        ("sk_0.5", [10, 10, 25, 25, 250, 10], 112_015),
        ("sk_0.2", [4, 4, 10, 10, 100, 10], 18_706),
    ],
)
def test_sk_family_channels_and_sizes(name, channels, parameters):
    assert conv_channels(name) == channels
    kernels = [args["kernel_size"] for t, args in models.get_spec(name).layers if t == "Conv2d"]
    assert kernels == [3, 3, 3, 3, 4, 1]
    model = models.build(name, rng=0)
    assert model.num_parameters() == parameters
    assert model.forward(np.zeros((2, 1, 28, 28), dtype=np.float32)).shape == (2, 10)


def test_matconvnet_initialisation_and_input_scale():
    model = models.build("bn", rng=0)
    first = model[0].weight
    assert abs(first.std() - 0.01) < 0.002 and abs(model[6].weight.std() - 0.01) < 0.0005
    assert not model[9].bias.any()  # classifier bias starts at 0
    np.testing.assert_array_equal(model[1].weight, 1.0)  # BN's γ untouched
    spec = models.get_spec("base")
    assert spec.input_std == pytest.approx(1 / 255) and spec.source.startswith("seed 004")


@pytest.mark.parametrize("name", ["sk_0.2", "resnet_mnist"])
def test_exercise_and_residual_models_gradcheck(name, rng):
    model = models.build(name, rng=rng, dtype=np.float64)
    # The residual network ends in global pooling, so a small input exercises all of it, faster.
    # Three samples for SK: block 3's BN sees one value per sample, and with two it would output ±1
    # whatever its input, leaving the weights before it with (almost) no gradient to check.
    x = rng.standard_normal((2, 1, 8, 8) if name == "resnet_mnist" else (3, 1, 28, 28))
    report = numcnn.gradcheck(
        model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 7, 3][: len(x)]), max_checks=3, rng=rng
    )
    assert report.passed, str(report)


def test_bn_model_gradcheck_and_its_exactly_zero_gradient(rng):
    model = models.build("bn", rng=rng, dtype=np.float64)
    x = rng.standard_normal((3, 1, 28, 28))
    report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 7, 3]), max_checks=3)
    # BN₁'s β shifts each channel by a constant; max pooling and the linear conv₂ pass that on as a
    # constant per output channel, which BN₂ subtracts again: ∂E/∂β₁ = 0 exactly (no ReLU in between,
    # as in MatConvNet's BASE), and likewise β₂ through conv₃ and BN₃. A finite difference of 0 is
    # pure rounding noise, so those two are checked absolutely.
    for index in (1, 4):
        assert np.abs(model[index].grads["bias"]).max() < 1e-12
        assert report[f"{index}.bias"].max_abs_error < 1e-8
    assert all(entry.passed for entry in report.entries if entry.name not in ("1.bias", "4.bias")), str(report)


def test_dropout_model_gradcheck_with_frozen_mask(rng):
    model = models.build("base_dropout", rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 1, 28, 28)) * 50  # MatConvNet's input scale
    model.forward(x)
    model[-2].freeze_mask()
    # The input gradient (≈1e-5 at this input scale, near the rounding noise) is checked layer by layer elsewhere.
    report = numcnn.gradcheck(
        model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([0, 1]), max_checks=10, check_input=False
    )
    assert report.passed, str(report)


def test_dropout_masks_follow_the_build_seed():
    x = np.ones((4, 1, 28, 28), dtype=np.float32)
    a, b = models.build("base_dropout", rng=5), models.build("base_dropout", rng=5)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    a.eval()
    np.testing.assert_array_equal(a.forward(x), a.forward(x))
    # In eval mode dropout is the identity: the output is that of the model without the Dropout layer,
    # whereas a training-mode pass (a random mask) gives a different output.
    assert any(isinstance(layer, numcnn.Dropout) for layer in a)
    without_dropout = numcnn.Sequential(*(layer for layer in a if not isinstance(layer, numcnn.Dropout))).eval()
    evaluated = a.forward(x)
    np.testing.assert_array_equal(evaluated, without_dropout.forward(x))
    assert not np.array_equal(a.train().forward(x), evaluated)


def test_resnet_mnist_is_a_graph_model_with_a_residual_topology():
    model = models.build("resnet_mnist", rng=0)
    assert isinstance(model, numcnn.Graph) and model.spec.name == "resnet_mnist"
    assert model.consumers("stem_relu") == ["block1_conv1", "block1_add"]  # the identity shortcut
    assert model.output_shape((1, 28, 28)) == (10,)
    assert model.tensor_shapes((1, 28, 28))["block3_out"] == (64, 7, 7)
    assert "block2_proj_bn.running_var" in model.state_dict()


def test_vgg16_spec_is_table_15_2():
    spec = models.get_spec("vgg16")
    assert spec.input_shape == (3, 224, 224) and spec.num_classes == 1000
    assert conv_channels("vgg16") == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6 + [4096, 4096, 1000]
    assert types("vgg16").count("MaxPool2d") == 5 and types("vgg16").count("Dropout") == 2
    assert len(spec.layers) == 39  # table 15.2's 38 layers, then Flatten where the table has the softmax


def test_specs_must_declare_layers_or_a_graph():
    with pytest.raises(ConfigurationError, match="either layers or a graph"):
        models.register(ModelSpec(name="nothing", layers=(), input_shape=(1, 2, 2), num_classes=2))
    with pytest.raises(ConfigurationError, match="unknown layer type 'Nope'"):
        graph = (("a", "Nope", {}),)
        models.register(ModelSpec(name="nope", layers=(), graph=graph, input_shape=(1, 2, 2), num_classes=2))
    assert "nothing" not in models.available_models()


def test_gradcheck_command_freezes_dropout_masks():
    from numcnn.gradcheck import check_model

    built = []
    report = check_model("bn_dropout", batch_size=3, max_checks=2, prepare=built.append)  # what 'numcnn gradcheck' runs
    model = built[0]
    assert report.passed
    assert model.training and model[-2].frozen_mask is not None
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28))
    np.testing.assert_array_equal(model.forward(x), model.forward(x))  # the same function every call


def test_graph_model_checkpoint_round_trip(tmp_path):
    from numcnn.checkpoint import load_checkpoint, save_checkpoint

    model = models.build("resnet_mnist", rng=3)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model.forward(x)  # move the running statistics away from their initial values
    path = save_checkpoint(tmp_path / "resnet.npz", model, "resnet_mnist")
    loaded = load_checkpoint(path).model
    assert isinstance(loaded, numcnn.Graph)
    np.testing.assert_array_equal(loaded.eval().forward(x), model.eval().forward(x))
