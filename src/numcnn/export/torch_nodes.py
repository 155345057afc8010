"""The PyTorch twin of each layer type: ``build(layer, convert) -> torch.nn.Module``, the ``torch`` entry
of :mod:`numcnn.layer_types`.

A twin module has the layer's parameter and buffer names (PyTorch's own classes where they match:
Conv2d, Linear, BatchNorm), so the weight mapping is the identity on ``state_dict`` names; the
weights are copied afterwards by :func:`numcnn.export.torch_twin.to_torch`. ``convert`` turns a child
layer into its twin (containers, Subsample2d's activation). torch is imported only when a twin is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numcnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    EuclideanRBF,
    Graph,
    Layer,
    LearnedCombination2d,
    Linear,
    MaxPool2d,
    Sequential,
    Sigmoid,
    Softmax,
    Subsample2d,
    Tanh,
)

__all__ = [
    "conv2d", "linear", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "tanh", "softmax", "flatten",
    "batch_norm", "dropout", "global_avg_pool2d", "add", "subsample2d", "learned_combination2d",
    "euclidean_rbf", "sequential", "graph",
]  # fmt: skip

Convert = Callable[[Layer], Any]


def _nn():
    from torch import nn

    return nn


def _modules():
    from numcnn.export import torch_modules

    return torch_modules


def conv2d(layer: Conv2d, convert: Convert):
    arguments = {"stride": layer.stride, "padding": layer.padding, "bias": "bias" in layer.params}
    shape = (layer.in_channels, layer.out_channels, layer.kernel_size)
    if layer.connection_mask is None:
        return _nn().Conv2d(*shape, **arguments)
    import torch

    mask = torch.from_numpy(layer.connection_mask.copy())
    return _modules().MaskedConv2d(*shape, mask=mask, **arguments)


def linear(layer: Linear, convert: Convert):
    return _nn().Linear(layer.in_features, layer.out_features, bias="bias" in layer.params)


def max_pool2d(layer: MaxPool2d, convert: Convert):
    return _nn().MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)


def avg_pool2d(layer: AvgPool2d, convert: Convert):
    return _nn().AvgPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding, count_include_pad=True)


def relu(layer: Layer, convert: Convert):
    return _nn().ReLU()


def sigmoid(layer: Sigmoid, convert: Convert):
    return _nn().Sigmoid() if layer.slope == 1.0 else _modules().SlopedSigmoid(layer.slope)


def tanh(layer: Tanh, convert: Convert):
    if layer.amplitude == 1.0 and layer.scale == 1.0:
        return _nn().Tanh()
    return _modules().ScaledTanh(layer.amplitude, layer.scale)


def softmax(layer: Softmax, convert: Convert):
    return _nn().Softmax(dim=layer.axis)


def flatten(layer: Layer, convert: Convert):
    return _nn().Flatten()


def batch_norm(layer: BatchNorm1d | BatchNorm2d, convert: Convert):
    cls = getattr(_nn(), type(layer).__name__)
    return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum)


def dropout(layer: Dropout, convert: Convert):
    return _nn().Dropout(layer.p)


def global_avg_pool2d(layer: Layer, convert: Convert):
    return _modules().GlobalAvgPool2d()


def add(layer: Layer, convert: Convert):
    return _modules().Add()


def subsample2d(layer: Subsample2d, convert: Convert):
    activation = None if layer.activation is None else convert(layer.activation)
    return _modules().Subsample2d(layer.channels, layer.factor, layer.mode, activation)


def learned_combination2d(layer: LearnedCombination2d, convert: Convert):
    return _modules().LearnedCombination2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding
    )


def euclidean_rbf(layer: EuclideanRBF, convert: Convert):
    return _modules().EuclideanRBF(layer.in_features, layer.out_features)


def sequential(layer: Sequential, convert: Convert):
    return _nn().Sequential(*(convert(child) for child in layer))


def graph(layer: Graph, convert: Convert):
    nodes = [(node.name, convert(node.layer), node.inputs) for node in layer.nodes]
    return _modules().GraphModule(nodes, layer.input_name, layer.output)
