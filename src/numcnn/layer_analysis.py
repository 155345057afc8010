"""Shape, parameter count, FLOPs and receptive-field geometry of one layer *specification*
(type name and constructor arguments), computed without allocating any weight.

These are the ``analyze`` rules of :mod:`numcnn.layer_types`; :mod:`numcnn.summary` documents the
conventions (a multiply-add counts as 2 FLOPs, element-wise work one per operation, ...).

Each rule takes the constructor arguments and the per-sample input shapes (one per input) and returns
a :class:`Geometry`. ``window`` is ``((KH, KW), (SH, SW))`` for a layer that maps spatial positions to
spatial positions, :data:`ONE_BY_ONE` for an element-wise one, and None where the spatial layout ends
(Flatten, Linear, RBF).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.im2col import check_window, conv_output_size_2d, pair
from numcnn.functional.pooling import pool_window_settings
from numcnn.functional.subsampling import subsample_factor, subsample_output_size
from numcnn.layers.connections import check_connections

__all__ = [
    "Geometry", "ONE_BY_ONE", "conv2d", "linear", "pool2d", "global_avg_pool2d", "dropout", "flatten",
    "batch_norm", "subsample2d", "learned_combination2d", "elementwise", "add", "euclidean_rbf", "by_instance",
]  # fmt: skip

Shape = tuple[int, ...]
Window = tuple[tuple[int, int], tuple[int, int]]
ONE_BY_ONE: Window = ((1, 1), (1, 1))


class Geometry(NamedTuple):
    """What one layer does to one sample: the row of ``numcnn summary``."""

    output_shape: Shape
    parameters: int
    flops: int
    window: Window | None
    description: str = ""


def _spatial(shape: Shape, type_name: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{type_name} expects (C, H, W) samples, got shape {shape}")
    return shape[0], shape[1], shape[2]


def conv2d(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    channels, height, width = _spatial(shapes[0], "Conv2d")
    if channels != args["in_channels"]:
        raise ShapeError(f"Conv2d({args['in_channels']}, ...) receives {channels} channels")
    kernel, stride = pair(args["kernel_size"], "kernel_size"), pair(args.get("stride", 1), "stride")
    padding = pair(args.get("padding", 0), "padding")
    filters, bias = args["out_channels"], args.get("bias", True)
    out_h, out_w = conv_output_size_2d((height, width), kernel, stride, padding)
    description = f"{filters}; {kernel[0]}x{kernel[1]}; p={padding[0]}, st={stride[0]}"
    kernels = filters * channels  # one KH×KW kernel per (output, input) map pair ...
    if args.get("connections") is not None:  # ... or only the connected pairs (LeNet-5's C3)
        table = check_connections(args["connections"], channels, filters)
        kernels = int(table.sum())
        description += f"; {kernels} of {table.size} connections"
    weights = kernels * kernel[0] * kernel[1]
    outputs = filters * out_h * out_w
    parameters = weights + (filters if bias else 0)
    flops = 2 * weights * out_h * out_w + (outputs if bias else 0)  # a multiply-add per weight and position
    return Geometry((filters, out_h, out_w), parameters, flops, (kernel, stride), description)


def learned_combination2d(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """One kernel per input map, then ``F`` weighted sums of the ``C`` responses, plus the bias."""
    channels, height, width = _spatial(shapes[0], "LearnedCombination2d")
    if channels != args["in_channels"]:
        raise ShapeError(f"LearnedCombination2d({args['in_channels']}, ...) receives {channels} maps")
    kernel, stride = pair(args["kernel_size"], "kernel_size"), pair(args.get("stride", 1), "stride")
    padding = pair(args.get("padding", 0), "padding")
    check_window(kernel, stride, padding, "LearnedCombination2d")
    filters = args["out_channels"]
    out_h, out_w = conv_output_size_2d((height, width), kernel, stride, padding)
    positions = out_h * out_w
    parameters = channels * kernel[0] * kernel[1] + channels * filters + filters
    flops = 2 * channels * kernel[0] * kernel[1] * positions + 2 * channels * filters * positions
    flops += filters * positions
    description = f"{filters}; {kernel[0]}x{kernel[1]}; p={padding[0]}, st={stride[0]}; learned combination"
    return Geometry((filters, out_h, out_w), parameters, flops, (kernel, stride), description)


def linear(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    shape = shapes[0]
    if len(shape) != 1 or shape[0] != args["in_features"]:
        raise ShapeError(f"Linear({args['in_features']}, ...) receives samples of shape {shape}; flatten first")
    inputs, outputs, bias = args["in_features"], args["out_features"], args.get("bias", True)
    parameters = inputs * outputs + (outputs if bias else 0)
    flops = 2 * inputs * outputs + (outputs if bias else 0)
    return Geometry((outputs,), parameters, flops, None, f"{inputs}x{outputs}")


def pool2d(type_name: str):
    """The rule of MaxPool2d (``KH·KW − 1`` comparisons per output) or AvgPool2d (``KH·KW``)."""

    def rule(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
        channels, height, width = _spatial(shapes[0], type_name)
        # The layer's own defaults and validation (padding at most half the kernel): a spec it rejects fails here too.
        kernel, stride, padding = pool_window_settings(
            args["kernel_size"], args.get("stride"), args.get("padding", 0), type_name
        )
        out_h, out_w = conv_output_size_2d((height, width), kernel, stride, padding)
        window_size = kernel[0] * kernel[1]
        per_output = window_size - 1 if type_name == "MaxPool2d" else window_size
        description = f"{kernel[0]}x{kernel[1]}; st={stride[0]}" + (f", p={padding[0]}" if padding[0] else "")
        flops = per_output * channels * out_h * out_w
        return Geometry((channels, out_h, out_w), 0, flops, (kernel, stride), description)

    return rule


def global_avg_pool2d(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    channels, height, width = _spatial(shapes[0], "GlobalAvgPool2d")
    return Geometry((channels,), 0, math.prod(shapes[0]), ((height, width), (1, 1)), f"{height}x{width}")


def dropout(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    return Geometry(shapes[0], 0, 0, ONE_BY_ONE, f"{args.get('p', 0.5):g}")


def flatten(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    return Geometry((math.prod(shapes[0]),), 0, 0, None)


def batch_norm(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """Scale and shift folded: 2 FLOPs per element; γ and β per feature."""
    return Geometry(shapes[0], 2 * args["num_features"], 2 * math.prod(shapes[0]), ONE_BY_ONE)


def subsample2d(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """LeNet-5's S layers: ``β·down(x) + b`` over non-overlapping ``factor × factor`` blocks."""
    channels, height, width = _spatial(shapes[0], "Subsample2d")
    factor = subsample_factor(args.get("factor", 2), args.get("mode", "sum"))
    out_h, out_w = subsample_output_size((height, width), factor)
    flops = (factor[0] * factor[1] + 1) * channels * out_h * out_w  # the block sum, β·, + b
    if args.get("activation") is not None:
        flops += channels * out_h * out_w
    description = f"{factor[0]}x{factor[1]}; {args.get('mode', 'sum')}"
    return Geometry((channels, out_h, out_w), 2 * channels, flops, (factor, factor), description)


def elementwise(flops_per_element: int):
    """The rule of a parameter-free element-wise layer (ReLU, tanh, ...; softmax counts 0)."""

    def rule(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
        return Geometry(shapes[0], 0, flops_per_element * math.prod(shapes[0]), ONE_BY_ONE)

    return rule


def add(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """One addition per summand beyond the first."""
    if len(set(map(tuple, shapes))) != 1:
        raise ShapeError(f"Add: inputs of different shapes {list(shapes)}")
    return Geometry(shapes[0], 0, (len(shapes) - 1) * math.prod(shapes[0]), ONE_BY_ONE)


def euclidean_rbf(args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """3 FLOPs per input and unit: difference, square, sum. The codes are buffers, not parameters."""
    shape = shapes[0]
    if len(shape) != 1 or shape[0] != args["in_features"]:
        raise ShapeError(f"EuclideanRBF({args['in_features']}, ...) receives samples of shape {shape}; flatten first")
    return Geometry((args["out_features"],), 0, 3 * shape[0] * args["out_features"], None)


def by_instance(type_name: str, args: dict[str, Any], shapes: list[Shape]) -> Geometry:
    """For a layer type without a rule (a nested container): build it alone and ask it."""
    from numcnn.models.registry import build_layer

    layer = build_layer(type_name, dict(args), np.random.default_rng(0), np.float32)
    output = tuple(layer.output_shape(*shapes))
    window = ONE_BY_ONE if len(output) == len(shapes[0]) and output[1:] == tuple(shapes[0][1:]) else None
    return Geometry(output, layer.num_parameters(), 0, window)
