"""ONNX export: ONNX Runtime on the exported file computes numcnn's forward pass (float32), for every
registered model; the file passes onnx.checker and has a dynamic batch dimension."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.cli.main import main
from numcnn.errors import ConfigurationError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

IMAGES = 256
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def mnist_test_images():
    """The first 256 MNIST test images (raw, 28×28) from NUMCNN_DATA, else synthetic digit-like ones."""
    try:
        from numcnn.data import load_mnist

        return load_mnist().test_images[:IMAGES], "MNIST"
    except numcnn.NumcnnError:  # no MNIST here: same shapes and value range, drawn at random
        rng = np.random.default_rng(0)
        return (255 * rng.random((IMAGES, 28, 28)) ** 4).astype(np.uint8), "synthetic"


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def max_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max abs difference, in units of :data:`TOLERANCE` where the outputs are small, relative to
    the largest output beyond 1: float32 keeps about seven digits, and LeNet-5's RBF penalties reach
    ~90, where float32 numbers are 7.6e-6 apart. Their float64 sums round once on both sides, but
    the float32 layers under them differ by an ulp here and there between ONNX Runtime's kernels
    and ours (two ulps of a penalty on a Xeon, Emerald Rapids), so 1e-5 absolute would be too tight.
    """
    scale = max(1.0, float(np.abs(theirs).max()))
    return float(np.abs(ours - theirs).max()) / scale


@pytest.mark.parametrize("name", [n for n in models.available_models() if n != "vgg16"])
def test_onnx_runtime_equals_numcnn_on_mnist(name, tmp_path, mnist_test_images, randomised_statistics):
    images, _source = mnist_test_images
    model = models.build(name, rng=0)
    randomised_statistics(model, np.random.default_rng(1))
    model.eval()
    path = numcnn.export.to_onnx(model, tmp_path / f"{name}.onnx")
    onnx.checker.check_model(str(path))
    x = model.spec.prepare(images)
    ours, theirs = model.forward(x), run_onnx(path, x)
    assert theirs.shape == ours.shape == (IMAGES, model.spec.num_classes)
    assert max_difference(ours, theirs) <= TOLERANCE
    np.testing.assert_array_equal(model.spec.predict_classes(theirs), model.spec.predict_classes(ours))


def test_lenet5_1998_before_the_rbf_layer_is_within_1e5_absolute(tmp_path, mnist_test_images):
    """The relative criterion above is needed only for the RBF penalties' magnitude."""
    model = models.build("lenet5_1998", rng=0).eval()
    body = numcnn.Sequential(*model.layers[:-1])
    path = numcnn.export.to_onnx(body, tmp_path / "body.onnx", input_shape=(1, 32, 32))
    x = model.spec.prepare(mnist_test_images[0])
    assert np.abs(body.forward(x) - run_onnx(path, x)).max() <= TOLERANCE


@pytest.mark.slow
def test_vgg16_exports(tmp_path):
    """VGG-16 (138M weights, 224×224 inputs) on one synthetic image, to keep the suite fast."""
    model = models.build("vgg16", rng=0).eval()
    path = numcnn.export.to_onnx(model, tmp_path / "vgg16.onnx")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    assert max_difference(model.forward(x), run_onnx(path, x)) <= TOLERANCE


@pytest.mark.parametrize("kind", ["sequential", "graph"])
@pytest.mark.parametrize("opset", [13, 17, 21])
def test_every_layer_type_and_opset(kind, opset, tmp_path, user_models, randomised_statistics):
    builder, shape = user_models[kind]
    rng = np.random.default_rng(2)
    model = builder(rng)
    randomised_statistics(model, rng)
    model.eval()
    path = numcnn.export.to_onnx(model, tmp_path / "m.onnx", opset=opset, input_shape=shape)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == opset
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # dynamic batch
    x = rng.standard_normal((5, *shape)).astype(np.float32)
    assert max_difference(model.forward(x), run_onnx(path, x)) <= TOLERANCE
    ops = {node.op_type for node in proto.graph.node}
    if kind == "sequential":
        assert {"ReduceSumSquare", "Tanh", "Conv", "Sigmoid", "BatchNormalization"} <= ops
    else:
        assert "Add" in ops and "Dropout" not in ops


def test_unsupported_opset_and_layers_are_one_line_errors(tmp_path):
    model = models.build("lenet5", rng=0)
    with pytest.raises(ConfigurationError, match="ONNX opset 12 is not supported"):
        numcnn.export.to_onnx(model, tmp_path / "m.onnx", opset=12)

    class Custom(numcnn.ReLU):
        pass

    with pytest.raises(ConfigurationError, match="layer type Custom has no entry"):
        numcnn.export.to_onnx(numcnn.Sequential(numcnn.Linear(2, 2), Custom()), tmp_path / "m.onnx", input_shape=(2,))
    assert not (tmp_path / "m.onnx").exists()


def test_export_command_writes_onnx_and_safetensors(tmp_path, capsys):
    model = models.build("resnet_mnist", rng=0)
    numcnn.save(model, tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--format", "onnx"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    assert max_difference(model.eval().forward(x), run_onnx(tmp_path / "model.onnx", x)) <= TOLERANCE
    pytest.importorskip("safetensors")
    assert main(["export", str(tmp_path / "model.npz"), "--format", "safetensors"]) == 0
    loaded = numcnn.load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.eval().forward(x), model.forward(x))
    from safetensors.numpy import load_file

    assert set(load_file(tmp_path / "model.safetensors")) == set(model.state_dict())


def test_export_command_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.npz"), "--format", "onnx"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    numcnn.save(models.build("lenet5", rng=0), tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--format", "safetensors", "-o", str(tmp_path / "m.bin")]) == 1
    assert "ends in .safetensors" in capsys.readouterr().err
