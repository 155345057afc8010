"""The ONNX node(s) of each layer type: ``build(graph, layer, inputs, name, convert) -> output name``,
the ``onnx`` entry of :mod:`numcnn.layer_types`.

Every classic layer is an exact decomposition into standard operators (opset 13 or newer):

* Subsample2d: a depthwise convolution with a ones kernel (``1/(FH·FW)`` for the mean) and stride
  ``factor`` -- ``down(x)`` -- then ``× β + b`` per map (seed 000 §3.2);
* a connection table: the convolution with the absent kernels zeroed (masked weights);
* LearnedCombination2d: the combined convolution ``W[j, i] = α_ij k_i``;
* scaled tanh ``A·tanh(S·x)``: Mul, Tanh, Mul;
* Euclidean RBF ``‖x − w_i‖²``: Unsqueeze, Sub, ReduceSumSquare;
* BatchNorm in evaluation mode (running statistics); Dropout is the identity.

``convert(child, inputs, name)`` emits a child layer (containers, Subsample2d's activation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.functional.combination import combination_weights
from numcnn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
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
    "OnnxGraph", "conv2d", "linear", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "tanh", "softmax",
    "flatten", "batch_norm", "dropout", "global_avg_pool2d", "add", "subsample2d", "learned_combination2d",
    "euclidean_rbf", "sequential", "graph",
]  # fmt: skip

Convert = Callable[[Layer, list[str], str], str]


class OnnxGraph:
    """Collects nodes and initializers (weights, cast to ``dtype``) under unique names."""

    def __init__(self, opset: int, dtype=np.float32) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.opset, self.dtype = opset, np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()

    def unique(self, name: str) -> str:
        candidate, index = name, 1
        while candidate in self._used:
            candidate, index = f"{name}_{index}", index + 1
        self._used.add(candidate)
        return candidate

    def constant(self, name: str, value, dtype=None) -> str:
        """A weight (float arrays in the export dtype, or ``dtype``) or an int64 array (shapes, axes)."""
        array = np.asarray(value)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else (dtype or self.dtype))
        unique = self.unique(name)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), unique))
        return unique

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        output = self.unique(name)
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def reduce(self, op: str, input_name: str, axes: list[int], name: str, keepdims: int) -> str:
        """Reductions took ``axes`` as an attribute up to opset 17 and as an input from 18."""
        if self.opset >= 18:
            return self.node(op, [input_name, self.constant(f"{name}_axes", axes)], name, keepdims=keepdims)
        return self.node(op, [input_name], name, axes=axes, keepdims=keepdims)


def _pads(padding: tuple[int, int]) -> list[int]:
    return [padding[0], padding[1], padding[0], padding[1]]  # begins (H, W), then ends


def _conv(g: OnnxGraph, x: str, name: str, weight: np.ndarray, bias, stride, padding, group: int = 1) -> str:
    inputs = [x, g.constant(f"{name}.weight", weight)]
    if bias is not None:
        inputs.append(g.constant(f"{name}.bias", bias))
    return g.node(
        "Conv", inputs, name, kernel_shape=list(weight.shape[2:]), strides=list(stride), pads=_pads(padding),
        group=group,
    )  # fmt: skip


def conv2d(g: OnnxGraph, layer: Conv2d, inputs: list[str], name: str, convert: Convert) -> str:
    # connected_weight() zeroes the kernels a connection table leaves out: the masked weights.
    return _conv(g, inputs[0], name, layer.connected_weight(), layer.params.get("bias"), layer.stride, layer.padding)


def learned_combination2d(g: OnnxGraph, layer: LearnedCombination2d, inputs: list[str], name: str, convert) -> str:
    alpha = combination_weights(layer.params["logits"].astype(np.float64))  # (C, F)
    weight = alpha.T[:, :, None, None] * layer.params["kernel"][None].astype(np.float64)  # W[j, i] = α_ij k_i
    return _conv(g, inputs[0], name, weight, layer.params["bias"], layer.stride, layer.padding)


def linear(g: OnnxGraph, layer: Linear, inputs: list[str], name: str, convert: Convert) -> str:
    operands = [inputs[0], g.constant(f"{name}.weight", layer.params["weight"])]
    if "bias" in layer.params:
        operands.append(g.constant(f"{name}.bias", layer.params["bias"]))
    return g.node("Gemm", operands, name, transB=1)


def max_pool2d(g: OnnxGraph, layer: MaxPool2d, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node(
        "MaxPool", inputs, name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
        pads=_pads(layer.padding),
    )  # fmt: skip


def avg_pool2d(g: OnnxGraph, layer: AvgPool2d, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node(
        "AveragePool", inputs, name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
        pads=_pads(layer.padding), count_include_pad=1,
    )  # fmt: skip


def relu(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node("Relu", inputs, name)


def _scaled(g: OnnxGraph, x: str, factor: float, name: str) -> str:
    return x if factor == 1.0 else g.node("Mul", [x, g.constant(f"{name}.factor", np.array(factor))], name)


def sigmoid(g: OnnxGraph, layer: Sigmoid, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node("Sigmoid", [_scaled(g, inputs[0], layer.slope, f"{name}_slope")], name)


def tanh(g: OnnxGraph, layer: Tanh, inputs: list[str], name: str, convert: Convert) -> str:
    """``A·tanh(S·x)``."""
    inner = g.node("Tanh", [_scaled(g, inputs[0], layer.scale, f"{name}_scale")], f"{name}_tanh")
    return _scaled(g, inner, layer.amplitude, name) if layer.amplitude != 1.0 else g.node("Identity", [inner], name)


def softmax(g: OnnxGraph, layer: Softmax, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node("Softmax", inputs, name, axis=layer.axis)


def flatten(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node("Flatten", inputs, name, axis=1)


def batch_norm(g: OnnxGraph, layer: BatchNorm1d | BatchNorm2d, inputs: list[str], name: str, convert) -> str:
    """Evaluation mode: the running statistics (a trained model is exported for inference)."""
    operands = [
        inputs[0],
        g.constant(f"{name}.weight", layer.params["weight"]),
        g.constant(f"{name}.bias", layer.params["bias"]),
        g.constant(f"{name}.running_mean", layer.buffers["running_mean"]),
        g.constant(f"{name}.running_var", layer.buffers["running_var"]),
    ]  # fmt: skip
    return g.node("BatchNormalization", operands, name, epsilon=layer.eps)


def dropout(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    return g.node("Identity", inputs, name)  # inference: dropout is the identity


def global_avg_pool2d(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    pooled = g.node("GlobalAveragePool", inputs, f"{name}_pool")  # (N, C, 1, 1)
    return g.node("Flatten", [pooled], name, axis=1)


def add(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    total = inputs[0]
    for index, other in enumerate(inputs[1:]):
        total = g.node("Add", [total, other], name if index == len(inputs) - 2 else f"{name}_{index}")
    return total


def subsample2d(g: OnnxGraph, layer: Subsample2d, inputs: list[str], name: str, convert: Convert) -> str:
    """``β·down(x) + b``: ``down`` as a depthwise convolution with a ones kernel, stride = factor."""
    channels, (fh, fw) = layer.channels, layer.factor
    ones = np.full((channels, 1, fh, fw), 1.0 if layer.mode == "sum" else 1.0 / (fh * fw))
    down = _conv(g, inputs[0], f"{name}_down", ones, None, layer.factor, (0, 0), group=channels)
    beta = g.constant(f"{name}.beta", layer.params["beta"].reshape(1, -1, 1, 1))
    scaled = g.node("Mul", [down, beta], f"{name}_beta")
    bias = g.constant(f"{name}.bias", layer.params["bias"].reshape(1, -1, 1, 1))
    if layer.activation is None:
        return g.node("Add", [scaled, bias], name)
    u = g.node("Add", [scaled, bias], f"{name}_u")
    return convert(layer.activation, [u], f"{name}.activation")


def euclidean_rbf(g: OnnxGraph, layer: EuclideanRBF, inputs: list[str], name: str, convert: Convert) -> str:
    """``y_i = ‖x − w_i‖²``: ``(N, 1, F) − (1, K, F)`` summed over F (ReduceSumSquare), in float64 and
    rounded once, as :func:`numcnn.functional.rbf_forward` computes it."""
    wide = g.node("Cast", [inputs[0]], f"{name}_float64", to=g.helper.np_dtype_to_tensor_dtype(np.dtype(np.float64)))
    column = g.node("Unsqueeze", [wide, g.constant(f"{name}_axis", [1])], f"{name}_x")
    codes = g.constant(f"{name}.prototypes", layer.buffers["prototypes"][None], dtype=np.float64)
    difference = g.node("Sub", [column, codes], f"{name}_difference")
    total = g.reduce("ReduceSumSquare", difference, [2], f"{name}_sum", keepdims=0)
    return g.node("Cast", [total], name, to=g.helper.np_dtype_to_tensor_dtype(g.dtype))


def sequential(g: OnnxGraph, layer: Sequential, inputs: list[str], name: str, convert: Convert) -> str:
    tensor = inputs[0]
    for index, child in enumerate(layer):
        tensor = convert(child, [tensor], f"{name}.{index}" if name else str(index))
    return tensor


def graph(g: OnnxGraph, layer: Graph, inputs: list[str], name: str, convert: Convert) -> str:
    tensors = {layer.input_name: inputs[0]}
    for node in layer.nodes:
        child_name = f"{name}.{node.name}" if name else node.name
        tensors[node.name] = convert(node.layer, [tensors[i] for i in node.inputs], child_name)
    return tensors[layer.output]


def unsupported(g: OnnxGraph, layer: Layer, inputs: list[str], name: str, convert: Convert) -> str:
    raise ConfigurationError(f"layer {name or 'model'} ({type(layer).__name__}) has no ONNX form")
