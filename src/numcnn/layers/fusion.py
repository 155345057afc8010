"""Transparent layer fusion for :class:`~numcnn.layers.Sequential`: ReLU → MaxPool2d as one step.

Because ReLU is monotone, ``max_pool(relu(x)) = relu(max_pool(x))``: the fused step reads ``x``
once and never materialises the ReLU's output. Its backward routes each window's δ to the first
maximum of the window *if that maximum is positive* -- exactly what MaxPool2d's backward followed
by ReLU's mask produces (tested against the unfused pair). The pooling layer keeps the fused
cache and its ``backward`` returns ``∂E/∂x`` with respect to the ReLU's *input*, so
``Sequential.backward`` steps over the ReLU.

Fusion happens only when the active backend offers it (``fuses_relu_pool``; the reference backend
never does) and only for exactly these two classes: a subclass may change the maths. Each layer
stays usable on its own; outputs and gradients of the Sequential are unchanged.
"""

from __future__ import annotations

import numpy as np

from numcnn import kernels
from numcnn.layers.activation import FUSED_INTO_NEXT, ReLU
from numcnn.layers.base import Layer
from numcnn.layers.pooling import MaxPool2d

__all__ = ["fused_forward", "fused_backward"]


def fused_forward(layers: list[Layer], x: np.ndarray, allow_fusion: bool = True) -> tuple[np.ndarray, frozenset]:
    """Run ``layers`` in order, fusing ReLU → MaxPool2d pairs when the backend supports it.

    Returns the output and the indices of the pooling layers that ran fused (needed by backward).
    """
    fuse = allow_fusion and kernels.active().fuses_relu_pool
    fused = []
    index, count = 0, len(layers)
    while index < count:
        layer = layers[index]
        if fuse and type(layer) is ReLU and index + 1 < count and type(layers[index + 1]) is MaxPool2d:
            x = layers[index + 1].forward_fused(x, relu=True)
            layer.cache = FUSED_INTO_NEXT
            fused.append(index + 1)
            index += 2
        else:
            x = layer.forward(x)
            index += 1
    return x, frozenset(fused)


def fused_backward(
    layers: list[Layer], grad: np.ndarray, fused: frozenset, need_input_grad: bool = True
) -> np.ndarray | None:
    """Back-propagate through ``layers`` in reverse; a fused pool's backward also covers its ReLU."""
    index = len(layers) - 1
    while index >= 0:
        first = index - 1 if index in fused else index  # the pair (ReLU, MaxPool2d) is one step
        grad = layers[index].backward(grad, need_input_grad=need_input_grad or first > 0)
        index = first - 1
    return grad
