"""``torch.nn`` modules for the numcnn layers PyTorch has no class for; imported only by the PyTorch twin.

Each module keeps numcnn's parameter and buffer names (``beta``, ``kernel``, ``logits``, ``prototypes``),
so a twin's ``state_dict`` has exactly the keys of the numcnn model's and the weights copy over by name.
The formulas are those of :mod:`numcnn.functional`; autograd supplies the backward pass, which the tests
compare with numcnn's hand-written one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MaskedConv2d", "Subsample2d", "LearnedCombination2d", "ScaledTanh", "SlopedSigmoid", "Softmax",
    "GlobalAvgPool2d", "EuclideanRBF", "Add", "GraphModule",
]  # fmt: skip


class MaskedConv2d(nn.Conv2d):
    """A convolution with a connection table: ``weight[j, i]`` is used only where input map ``i`` feeds
    output map ``j`` (seed 000's ``M_j``); the mask is a non-persistent buffer, so it is not in the state."""

    def __init__(self, *args, mask: torch.Tensor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", mask, persistent=False)  # (C_out, C_in, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor = self.mask  # type: ignore[assignment]  # a registered buffer
        return self._conv_forward(x, self.weight * mask, self.bias)


class Subsample2d(nn.Module):
    """``f(β·down(x) + b)``, ``down`` the sum (or mean) of every non-overlapping ``FH × FW`` block."""

    def __init__(self, channels: int, factor: tuple[int, int], mode: str, activation: nn.Module | None) -> None:
        super().__init__()
        self.factor, self.mode = factor, mode
        self.beta = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        (fh, fw) = self.factor
        oh, ow = h // fh, w // fw
        blocks = x[:, :, : oh * fh, : ow * fw].reshape(n, c, oh, fh, ow, fw)
        down = blocks.sum(dim=(3, 5))
        if self.mode == "mean":
            down = down / (fh * fw)
        u = down * self.beta.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return u if self.activation is None else self.activation(u)


class LearnedCombination2d(nn.Module):
    """``u_j = Σ_i α_ij (x_i * k_i) + b_j``, ``α = softmax(c)`` over the inputs, run as one convolution
    with the combined kernels ``W[j, i] = α_ij k_i``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        self.kernel = nn.Parameter(torch.zeros(in_channels, *kernel_size))
        self.logits = nn.Parameter(torch.zeros(in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.logits, dim=0)  # (C, F)
        weight = alpha.t()[:, :, None, None] * self.kernel[None]  # (F, C, KH, KW)
        return F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)


class ScaledTanh(nn.Module):
    """``A·tanh(S·x)`` (LeCun's ``A = 1.7159, S = 2/3``)."""

    def __init__(self, amplitude: float, scale: float) -> None:
        super().__init__()
        self.amplitude, self.scale = amplitude, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.scale * x)


class SlopedSigmoid(nn.Module):
    """``1 / (1 + e^(−β·x))``."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.slope * x)


class Softmax(nn.Softmax):
    pass


class GlobalAvgPool2d(nn.Module):
    """``(N, C, H, W)`` → ``(N, C)``, the mean of every map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class EuclideanRBF(nn.Module):
    """``y_i = Σ_j (x_j − w_ij)²`` with the fixed codes ``w`` as a buffer (LeCun et al. 1998, eq. 7)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.register_buffer("prototypes", torch.zeros(out_features, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prototypes: torch.Tensor = self.prototypes  # type: ignore[assignment]  # a registered buffer
        difference = x[:, None, :] - prototypes[None, :, :]
        return (difference * difference).sum(dim=2)


class Add(nn.Module):
    """The sum of the node's inputs (a residual connection's merge)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for tensor in inputs[1:]:
            total = total + tensor
        return total


class GraphModule(nn.Module):
    """numcnn's :class:`~numcnn.layers.Graph` in PyTorch: named nodes run in topological order, each
    reading the tensors it names; the nodes are direct children, so the state names are numcnn's."""

    def __init__(self, nodes: list[tuple[str, nn.Module, tuple[str, ...]]], input_name: str, output: str) -> None:
        super().__init__()
        self.wiring = [(name, inputs) for name, _, inputs in nodes]
        self.input_name, self.output = input_name, output
        for name, module, _ in nodes:
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensors = {self.input_name: x}
        for name, inputs in self.wiring:
            tensors[name] = getattr(self, name)(*(tensors[i] for i in inputs))
        return tensors[self.output]
