"""lenet5_1998: LeNet-5 as published (LeCun, Bottou, Bengio, Haffner 1998)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.checkpoint import load_checkpoint, save_checkpoint
from numcnn.data import prepare_images
from numcnn.losses import LOSS_TYPES, RBFLoss, RBFMAPLoss
from numcnn.models.lenet5_1998 import DIGIT_BITMAPS, DIGIT_CODES, parse_bitmaps
from numcnn.train import TrainConfig, fit, make_loss

# (layer index, type, output shape, parameters) -- paper §II.B
EXPECTED_LAYERS = [
    (0, "Conv2d", (6, 28, 28), 156),  # C1
    (1, "ScaledTanh", (6, 28, 28), 0),
    (2, "Subsample2d", (6, 14, 14), 12),  # S2
    (3, "ScaledTanh", (6, 14, 14), 0),
    (4, "Conv2d", (16, 10, 10), 1516),  # C3, connection table
    (5, "ScaledTanh", (16, 10, 10), 0),
    (6, "Subsample2d", (16, 5, 5), 32),  # S4
    (7, "ScaledTanh", (16, 5, 5), 0),
    (8, "Conv2d", (120, 1, 1), 48120),  # C5
    (9, "ScaledTanh", (120, 1, 1), 0),
    (10, "Flatten", (120,), 0),
    (11, "Linear", (84,), 10164),  # F6
    (12, "ScaledTanh", (84,), 0),
    (13, "EuclideanRBF", (10,), 0),  # output, fixed codes
]


def test_layers_shapes_and_parameter_counts_match_the_paper():
    model = models.build("lenet5_1998", rng=0)
    assert len(model) == len(EXPECTED_LAYERS)
    shape = (1, 32, 32)
    for index, type_name, output_shape, count in EXPECTED_LAYERS:
        layer = model[index]
        shape = layer.output_shape(shape)
        assert (type(layer).__name__, shape, layer.num_parameters()) == (type_name, output_shape, count), index
    assert model.num_parameters() == 156 + 12 + 1516 + 32 + 48120 + 10164 == 60_000
    np.testing.assert_array_equal(model[4].connections, numcnn.LENET5_C3_CONNECTIONS)
    y = model.forward(np.zeros((2, 1, 32, 32), dtype=np.float32))
    assert y.shape == (2, 10) and y.dtype == np.float32 and (y >= 0).all()


def test_spec_declares_input_loss_and_prediction():
    spec = models.get_spec("lenet5_1998")
    assert spec.input_shape == (1, 32, 32) and spec.input_padding == 2
    assert spec.loss == "rbf_mse" and spec.prediction == "argmin"
    assert isinstance(make_loss(spec), RBFLoss) and LOSS_TYPES["rbf_map"] is RBFMAPLoss
    assert "LeCun" in spec.source and "1998" in spec.source
    # LeCun's normalisation: blank paper -> -0.1, full ink -> 1.175, the padded border blank.
    pixels = np.array([[[0, 255], [255, 0]]], dtype=np.uint8)
    images = prepare_images(pixels, padding=2, mean=spec.input_mean, std=spec.input_std, dtype=np.float64)
    assert images.shape == (1, 1, 6, 6)
    np.testing.assert_allclose(images[0, 0, 2:4, 2:4], [[-0.1, 1.175], [1.175, -0.1]])
    np.testing.assert_allclose(images[0, 0, 0], -0.1)
    np.testing.assert_array_equal(spec.predict_classes(np.array([[3.0, 1.0, 2.0]])), [1])  # smallest penalty


def test_digit_codes_are_the_ascii_bitmaps():
    assert DIGIT_CODES.shape == (10, 84) and set(np.unique(DIGIT_CODES)) == {-1.0, 1.0}
    rows = DIGIT_BITMAPS.strip("\n").splitlines()[1:]
    one = [row.split()[1] for row in rows]
    assert one[1] == "...#..." and one[10] == ".#####."
    np.testing.assert_array_equal(DIGIT_CODES[1].reshape(12, 7)[1], [-1, -1, -1, 1, -1, -1, -1])
    distances = [np.sum(DIGIT_CODES[a] != DIGIT_CODES[b]) for a, b in itertools.combinations(range(10), 2)]
    assert min(distances) >= 15  # every pair of codes differs in at least 15 of the 84 pixels
    model = models.build("lenet5_1998", rng=0)
    np.testing.assert_array_equal(model[13].prototypes, DIGIT_CODES)
    with pytest.raises(numcnn.ConfigurationError):
        parse_bitmaps("0\n#.#")


@pytest.mark.parametrize("loss", [RBFLoss(), RBFMAPLoss()], ids=repr)
def test_whole_model_gradcheck_with_the_papers_criteria(loss, rng):
    model = models.build("lenet5_1998", rng=3, dtype=np.float64)
    x = rng.standard_normal((2, 1, 32, 32))
    report = numcnn.gradcheck(model, x, loss=loss, targets=np.array([3, 8]), max_checks=12, rng=rng)
    assert report.passed, str(report)
    assert len(report.entries) == 1 + 12  # the input and 12 parameter tensors


def test_checkpoint_round_trip_keeps_the_codes_and_the_table(tmp_path, rng):
    model = models.build("lenet5_1998", rng=5)
    path = save_checkpoint(tmp_path / "m.npz", model, "lenet5_1998")
    loaded = load_checkpoint(path).model
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert "13.prototypes" in model.state_dict()


@pytest.mark.slow
def test_lenet5_1998_learns_real_mnist_in_one_epoch_with_sdlm():
    from numcnn.data import load_mnist
    from numcnn.errors import DataError

    try:
        data = load_mnist(download=False)
    except DataError:
        pytest.skip("MNIST is not available (set NUMCNN_DATA)")
    config = TrainConfig(
        model="lenet5_1998", optimizer="sdlm", lr=0.001, batch_size=16, epochs=1, train_limit=10000, seed=0
    )
    history = fit(config, data, log=lambda line: None, show_progress=False)
    assert 1 - history[-1].test_accuracy < 0.10  # 10,000 images, one pass: about 6% error (seeds 0-2: 4-6%)
