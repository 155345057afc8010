"""Gold tests for the modern blocks: batch norm (forward, every gradient, running statistics after
several steps, eval mode), dropout's scaling, global average pooling and a residual block, against
PyTorch in float64. Skipped cleanly when PyTorch is not installed."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import Add, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Graph, ReLU

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch


def tensor(array: np.ndarray, grad: bool = False):
    return torch.tensor(np.asarray(array), dtype=torch.float64, requires_grad=grad)


def close(ours: np.ndarray, theirs, rtol: float = 1e-10) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize(
    "ours, theirs, shape",
    [
        (BatchNorm2d, nn.BatchNorm2d, (4, 3, 5, 6)),
        (BatchNorm1d, nn.BatchNorm1d, (7, 3)),
        (BatchNorm1d, nn.BatchNorm1d, (4, 3, 5)),
    ],
)
def test_batchnorm_training_steps_match_torch(ours, theirs, shape, rng):
    layer = ours(shape[1], eps=1e-3, momentum=0.3, dtype=np.float64)
    reference = theirs(shape[1], eps=1e-3, momentum=0.3).double()
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    layer.params["weight"][:], layer.params["bias"][:] = gamma, beta
    with torch.no_grad():
        reference.weight.copy_(tensor(gamma))
        reference.bias.copy_(tensor(beta))

    for step in range(3):  # three steps: the running statistics compound
        x = rng.standard_normal(shape) * (step + 1) + step
        grad_output = rng.standard_normal(shape)
        layer.zero_grad()
        y = layer.forward(x)
        grad_x = layer.backward(grad_output)

        reference.zero_grad()
        tx = tensor(x, True)
        ty = reference(tx)
        ty.backward(tensor(grad_output))
        close(y, ty)
        close(grad_x, tx.grad)
        close(layer.grads["weight"], reference.weight.grad)
        close(layer.grads["bias"], reference.bias.grad)
        close(layer.running_mean, reference.running_mean, rtol=1e-12)
        close(layer.running_var, reference.running_var, rtol=1e-12)
    assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked) == 3

    layer.eval()
    reference.eval()
    x = rng.standard_normal(shape)
    close(layer.forward(x), reference(tensor(x)))


def test_batchnorm_state_dict_loads_into_torch(rng):
    layer = BatchNorm2d(4, dtype=np.float64)
    layer.params["weight"][:], layer.params["bias"][:] = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    for step in range(3):  # training steps move every saved array away from its initial value
        layer.forward(rng.standard_normal((3, 4, 2, 2)) * (step + 2) + step)
    reference = nn.BatchNorm2d(4).double()
    reference.load_state_dict({name: torch.tensor(value) for name, value in layer.state_dict().items()})
    close(layer.running_var, reference.running_var)
    # What the state means: in eval mode torch, with our state, computes what we compute.
    layer.eval()
    reference.eval()
    x = rng.standard_normal((5, 4, 3, 3)) * 3 + 1
    close(layer.forward(x), reference(tensor(x)))


def test_dropout_scaling_matches_torch(rng):
    torch.manual_seed(0)
    x = rng.standard_normal((6, 50))
    tx = tensor(x, True)
    ty = torch.nn.functional.dropout(tx, p=0.3, training=True)
    grad_output = rng.standard_normal(x.shape)
    ty.backward(tensor(grad_output))
    mask = (ty.detach().numpy() != 0) / 0.7  # torch's kept units, with our scaling

    layer = Dropout(0.3)
    layer.freeze_mask(mask)
    close(layer.forward(x), ty)
    close(layer.backward(grad_output), tx.grad)


def test_our_dropout_forward_and_backward_match_torch_with_our_mask(rng):
    # numcnn draws the mask; torch applies the same mask as a product, and autograd differentiates it.
    x, grad_output = rng.standard_normal((6, 50)), rng.standard_normal((6, 50))
    layer = Dropout(0.3, rng=rng)
    y = layer.forward(x)  # training mode: a fresh mask from the layer's generator
    grad_x = layer.backward(grad_output)
    mask = layer.freeze_mask()
    np.testing.assert_allclose(mask[mask != 0], 1 / 0.7, rtol=1e-15)  # kept units scaled by 1/(1 − p)
    assert 0.1 < np.mean(mask == 0) < 0.5
    tx = tensor(x, True)
    ty = tx * tensor(mask)
    ty.backward(tensor(grad_output))
    close(y, ty)
    close(grad_x, tx.grad)


def test_global_avg_pool_matches_torch(rng):
    x, grad_output = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3))
    layer = GlobalAvgPool2d()
    tx = tensor(x, True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1).flatten(1)
    ty.backward(tensor(grad_output))
    close(layer.forward(x), ty)
    close(layer.backward(grad_output), tx.grad)


class TorchBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


def test_residual_graph_matches_torch_including_momentum_sgd_steps(rng):
    block = Graph([
        ("conv1", Conv2d(3, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64)),
        ("bn1", BatchNorm2d(3, dtype=np.float64)),
        ("relu1", ReLU()),
        ("conv2", Conv2d(3, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64)),
        ("bn2", BatchNorm2d(3, dtype=np.float64)),
        ("add", Add(), ("input", "bn2")),
        ("relu2", ReLU()),
    ])  # fmt: skip
    reference = TorchBlock(3).double()
    reference.load_state_dict({name: torch.tensor(value) for name, value in block.state_dict().items()})
    optimizer = numcnn.SGD(block.parameters(), lr=0.1, momentum=0.9)
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x, grad_output = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))
        block.zero_grad()
        y = block.forward(x)
        grad_x = block.backward(grad_output)
        optimizer.step()

        torch_optimizer.zero_grad()
        tx = tensor(x, True)
        ty = reference(tx)
        ty.backward(tensor(grad_output))
        torch_optimizer.step()
        close(y, ty, rtol=1e-9)
        close(grad_x, tx.grad, rtol=1e-9)
    torch_state = reference.state_dict()
    for name, value in block.state_dict().items():
        np.testing.assert_allclose(value, torch_state[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
