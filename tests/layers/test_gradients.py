"""Float64 finite-difference checks of every layer and loss (relative error < 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import (
    AvgPool2d,
    Conv2d,
    CrossEntropyLoss,
    Flatten,
    Linear,
    MaxPool2d,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)

TOLERANCE = 1e-6

CONV_CASES = [
    # (N, C, H, W, F, kernel, stride, padding)
    (1, 1, 5, 5, 1, 3, 1, 0),
    (2, 3, 7, 7, 4, 3, 2, 1),  # batch > 1, stride > 1, padding
    (2, 2, 8, 6, 3, (3, 2), (2, 1), (1, 0)),  # rectangular everything
    (3, 2, 5, 5, 2, 5, 1, 0),  # kernel as large as the input
    (2, 2, 4, 4, 3, 6, 1, 1),  # kernel larger than the input, covered by padding
    (1, 2, 9, 9, 2, 4, 3, 0),  # (H − K) mod S ≠ 0: last rows never visited
    (2, 1, 6, 7, 2, 1, 1, 0),  # 1×1 kernel
]


@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", CONV_CASES)
def test_conv2d_gradcheck(n, c, h, w, f, kernel, stride, padding, rng):
    layer = Conv2d(c, f, kernel, stride, padding, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((n, c, h, w)), rng=rng)
    assert report.passed, str(report)
    assert report.max_relative_error < TOLERANCE
    assert {e.name for e in report.entries} == {"input", "weight", "bias"}


def test_conv2d_without_bias_gradcheck(rng):
    layer = Conv2d(2, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 2, 5, 4)), rng=rng)
    assert report.passed, str(report)
    assert [e.name for e in report.entries] == ["input", "weight"]


POOL_CASES = [
    # (H, W, kernel, stride, padding)
    (4, 4, 2, None, 0),
    (5, 7, 2, None, 0),  # odd sizes: last row/column dropped
    (6, 6, 3, 1, 0),  # overlapping windows
    (7, 5, 3, 2, 1),  # overlapping + padding
    (5, 5, 5, None, 0),  # window as large as the input
    (6, 5, (3, 2), (2, 1), (1, 1)),
]


@pytest.mark.parametrize("layer_type", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("h, w, kernel, stride, padding", POOL_CASES)
def test_pooling_gradcheck(layer_type, h, w, kernel, stride, padding, rng, distinct_values):
    layer = layer_type(kernel, stride, padding)
    x = distinct_values((2, 3, h, w))  # no ties, so max pooling is differentiable here
    report = numcnn.gradcheck(layer, x, rng=rng)
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "layer",
    [ReLU(), Sigmoid(), Sigmoid(slope=2.5), Tanh(), Tanh(amplitude=1.7159, scale=2 / 3), Softmax(), Flatten()],
    ids=repr,
)
def test_elementwise_and_reshape_gradcheck(layer, rng):
    x = rng.standard_normal((3, 4)) if isinstance(layer, Softmax) else rng.standard_normal((3, 2, 3, 4))
    if isinstance(layer, ReLU):
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # keep away from the kink at 0
    report = numcnn.gradcheck(layer, x, rng=rng)
    assert report.passed, str(report)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias, rng):
    layer = Linear(7, 5, bias=bias, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((4, 7)), rng=rng)
    assert report.passed, str(report)


def test_linear_batch_of_one_gradcheck(rng):
    report = numcnn.gradcheck(Linear(3, 2, rng=rng, dtype=np.float64), rng.standard_normal((1, 3)))
    assert report.passed, str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradcheck_integer_targets(reduction, rng):
    report = numcnn.gradcheck(
        CrossEntropyLoss(reduction), rng.standard_normal((5, 4)) * 3, targets=np.array([0, 3, 1, 1, 2])
    )
    assert report.passed, str(report)


def test_cross_entropy_gradcheck_probability_targets(rng):
    targets = rng.dirichlet(np.ones(4), size=5)
    report = numcnn.gradcheck(CrossEntropyLoss(), rng.standard_normal((5, 4)), targets=targets)
    assert report.passed, str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradcheck(reduction, rng):
    report = numcnn.gradcheck(MSELoss(reduction), rng.standard_normal((3, 6)), targets=rng.standard_normal((3, 6)))
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "loss",
    [
        numcnn.RBFLoss(),
        numcnn.RBFLoss("sum"),
        numcnn.RBFMAPLoss(),
        numcnn.RBFMAPLoss("sum", rubbish_penalty=0.5),
    ],
    ids=repr,
)
def test_rbf_criteria_gradcheck(loss, rng):
    # LeNet-5's eqs. 8 and 9 on their own (not only through a whole network): penalties are squared
    # distances, so positive, spread enough that the MAP term's softmax is far from uniform.
    penalties = rng.uniform(0.0, 6.0, (5, 4))
    report = numcnn.gradcheck(loss, penalties, targets=np.array([0, 3, 1, 1, 2]))
    assert report.passed, str(report)
    assert [e.name for e in report.entries] == ["input"] and report["input"].checked == penalties.size


def test_whole_network_with_loss_gradcheck(rng, distinct_values):
    model = Sequential(
        Conv2d(1, 3, 3, padding=1, rng=rng, dtype=np.float64),
        Tanh(),
        MaxPool2d(2),
        Conv2d(3, 4, 2, stride=2, rng=rng, dtype=np.float64),
        Sigmoid(),
        AvgPool2d(2, stride=1),
        Flatten(),
        Linear(4, 3, rng=rng, dtype=np.float64),
    )
    x = distinct_values((2, 1, 8, 8))
    report = numcnn.gradcheck(model, x, loss=CrossEntropyLoss(), targets=np.array([2, 0]), rng=rng)
    assert report.passed, str(report)
    assert len(report.entries) == 1 + 6


def test_sampled_mode_checks_only_the_requested_number_of_entries(rng):
    layer = Linear(50, 40, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 50)), max_checks=25, rng=rng)
    assert report.passed
    assert report["weight"].checked == 25
    assert report["bias"].checked == 25
    assert report["input"].checked == 25


def test_gradcheck_detects_a_wrong_gradient(rng):
    class BrokenLinear(Linear):
        def backward(self, grad_output, need_input_grad=True):
            grad_input = super().backward(grad_output, need_input_grad)
            self.grads["weight"] *= 1.01  # a 1% error must not pass
            return grad_input

    report = numcnn.gradcheck(BrokenLinear(4, 3, rng=rng, dtype=np.float64), rng.standard_normal((2, 4)))
    assert not report.passed
    assert not report["weight"].passed and report["bias"].passed
    assert "FAILED" in str(report)
    with pytest.raises(numcnn.NumcnnError, match="gradient check failed for weight"):
        report.raise_if_failed()


def test_gradcheck_refuses_float32(rng):
    with pytest.raises(numcnn.ConfigurationError, match="float64"):
        numcnn.gradcheck(Linear(3, 2, rng=rng), rng.standard_normal((2, 3)))


def test_gradcheck_refuses_float32_layers_without_parameters(rng):
    # EuclideanRBF has no parameters: its float32 prototypes (a buffer) and its dtype must still be caught,
    # or its float32 forward would produce a misleading failed report.
    rbf = numcnn.EuclideanRBF(4, 3, rng=rng)
    assert rbf.num_parameters() == 0
    with pytest.raises(numcnn.ConfigurationError, match="needs float64 \\(prototypes is not\\)"):
        numcnn.gradcheck(rbf, rng.standard_normal((2, 4)))
    with pytest.raises(numcnn.ConfigurationError, match=r"needs float64 \(1\.prototypes is not\)"):
        numcnn.gradcheck(Sequential(Tanh(), rbf), rng.standard_normal((2, 4)))
    # A layer whose only float32 trace is its dtype (it casts the input): also refused.
    rbf64 = numcnn.EuclideanRBF(4, 3, rng=rng, dtype=np.float64)
    rbf64.dtype = np.dtype(np.float32)
    with pytest.raises(numcnn.ConfigurationError, match="needs float64 \\(the dtype float32 of EuclideanRBF"):
        numcnn.gradcheck(Sequential(rbf64), rng.standard_normal((2, 4)))
    # Integer buffers (BatchNorm's num_batches_tracked) are no reason to refuse.
    assert numcnn.gradcheck(numcnn.BatchNorm1d(3, dtype=np.float64), rng.standard_normal((4, 3)), rng=rng).passed
    assert numcnn.gradcheck(numcnn.EuclideanRBF(4, 3, rng=rng, dtype=np.float64), rng.standard_normal((2, 4))).passed
