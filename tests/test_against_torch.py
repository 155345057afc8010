"""Gold tests: numcnn's forward values and every gradient equal PyTorch's (torch.nn.functional).

Skipped cleanly when PyTorch is not installed (``pip install torch==2.13.0`` installs the CPU build).
"""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import functional as F

torch = pytest.importorskip("torch")
torch_functional = torch.nn.functional
pytestmark = pytest.mark.torch


def tensor(array: np.ndarray, grad: bool = False):
    return torch.tensor(array, dtype=torch.float64, requires_grad=grad)


def close(ours: np.ndarray, theirs) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


CONV_CASES = [
    (2, 3, 9, 8, 4, (3, 3), (1, 1), (0, 0)),
    (2, 3, 9, 8, 4, (3, 2), (2, 3), (1, 2)),
    (1, 1, 28, 28, 6, (5, 5), (1, 1), (2, 2)),
    (3, 6, 14, 14, 16, (5, 5), (1, 1), (0, 0)),
    (2, 2, 5, 5, 3, (5, 5), (1, 1), (0, 0)),
    (2, 2, 10, 11, 2, (4, 4), (3, 3), (0, 0)),
]


@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", CONV_CASES)
def test_conv2d_matches_torch(n, c, h, w, f, kernel, stride, padding, rng):
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, *kernel)), rng.standard_normal(f)
    y, cache = F.conv2d_forward(x, weight, bias, stride, padding)
    grad_output = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = F.conv2d_backward(grad_output, cache)

    tx, tw, tb = tensor(x, True), tensor(weight, True), tensor(bias, True)
    ty = torch_functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    ty.backward(tensor(grad_output))
    close(y, ty)
    close(grad_x, tx.grad)
    close(grad_w, tw.grad)
    close(grad_b, tb.grad)


POOL_CASES = [((2, 2), None, (0, 0)), ((3, 3), (1, 1), (0, 0)), ((3, 2), (2, 1), (1, 1)), ((2, 2), None, (1, 0))]


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_max_pool2d_matches_torch(kernel, stride, padding, distinct_values, rng):
    x = distinct_values((2, 3, 7, 6))
    y, cache = F.max_pool2d_forward(x, kernel, stride, padding)
    grad_output = rng.standard_normal(y.shape)
    tx = tensor(x, True)
    ty = torch_functional.max_pool2d(tx, kernel, stride=stride or kernel, padding=padding)
    ty.backward(tensor(grad_output))
    close(y, ty)
    close(F.max_pool2d_backward(grad_output, cache), tx.grad)


def test_max_pool2d_ties_match_torch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = 1.0
    y, cache = F.max_pool2d_forward(x, 2)
    tx = tensor(x, True)
    torch_functional.max_pool2d(tx, 2).backward(torch.ones(1, 1, 2, 2, dtype=torch.float64))
    close(F.max_pool2d_backward(np.ones_like(y), cache), tx.grad)


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_avg_pool2d_matches_torch(kernel, stride, padding, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    y, cache = F.avg_pool2d_forward(x, kernel, stride, padding)
    grad_output = rng.standard_normal(y.shape)
    tx = tensor(x, True)
    ty = torch_functional.avg_pool2d(tx, kernel, stride=stride or kernel, padding=padding, count_include_pad=True)
    ty.backward(tensor(grad_output))
    close(y, ty)
    close(F.avg_pool2d_backward(grad_output, cache), tx.grad)


@pytest.mark.parametrize(
    "layer, torch_function",
    [
        (numcnn.ReLU(), torch.relu),
        (numcnn.Sigmoid(), torch.sigmoid),
        (numcnn.Tanh(), torch.tanh),
        (numcnn.Softmax(axis=1), lambda t: torch.softmax(t, dim=1)),
    ],
    ids=["relu", "sigmoid", "tanh", "softmax"],
)
def test_activations_match_torch(layer, torch_function, rng):
    x = rng.standard_normal((4, 5)) * 4
    grad_output = rng.standard_normal(x.shape)
    tx = tensor(x, True)
    ty = torch_function(tx)
    ty.backward(tensor(grad_output))
    close(layer.forward(x), ty)
    close(layer.backward(grad_output), tx.grad)


def test_linear_matches_torch(rng):
    layer = numcnn.Linear(6, 4, rng=rng, dtype=np.float64)
    x, grad_output = rng.standard_normal((3, 6)), rng.standard_normal((3, 4))
    tx, tw, tb = tensor(x, True), tensor(layer.weight, True), tensor(layer.bias, True)
    ty = torch_functional.linear(tx, tw, tb)
    ty.backward(tensor(grad_output))
    close(layer.forward(x), ty)
    close(layer.backward(grad_output), tx.grad)
    close(layer.grads["weight"], tw.grad)
    close(layer.grads["bias"], tb.grad)


@pytest.mark.parametrize("probability_targets", [False, True])
def test_cross_entropy_matches_torch(probability_targets, rng):
    logits = rng.standard_normal((6, 5)) * 10  # large logits exercise the log-sum-exp
    targets = rng.dirichlet(np.ones(5), size=6) if probability_targets else rng.integers(0, 5, size=6)
    loss = numcnn.CrossEntropyLoss()
    value = loss.forward(logits, targets)
    tl = tensor(logits, True)
    tt = tensor(targets) if probability_targets else torch.tensor(targets)
    tv = torch_functional.cross_entropy(tl, tt)
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=1e-12)
    close(loss.backward(), tl.grad)


def test_mse_is_half_the_summed_squares_per_sample(rng):
    outputs, targets = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss = numcnn.MSELoss()
    value = loss.forward(outputs, targets)
    to = tensor(outputs, True)
    tv = 0.5 * torch_functional.mse_loss(to, tensor(targets), reduction="sum") / 4
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=1e-12)
    close(loss.backward(), to.grad)


def torch_lenet5(model: numcnn.Sequential):
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).double()  # fmt: skip
    net.load_state_dict({name: torch.tensor(value) for name, value in model.state_dict().items()})
    return net


def test_lenet5_forward_backward_and_momentum_sgd_match_torch(rng):
    model = numcnn.models.build("lenet5", rng=0, dtype=np.float64)
    net = torch_lenet5(model)
    optimizer = numcnn.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    torch_optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss, torch_loss = numcnn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for _ in range(3):  # three steps exercise the velocity buffers
        x, labels = rng.standard_normal((8, 1, 28, 28)), rng.integers(0, 10, size=8)
        model.zero_grad()
        value = loss.forward(model.forward(x), labels)
        model.backward(loss.backward())
        optimizer.step()

        torch_optimizer.zero_grad()
        torch_value = torch_loss(net(tensor(x)), torch.tensor(labels))
        torch_value.backward()
        torch_optimizer.step()
        assert value == pytest.approx(torch_value.item(), rel=1e-10)
    torch_state = net.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, torch_state[name].numpy(), rtol=1e-9, atol=1e-12)
