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

__all__ = ["plan_steps", "fused_forward", "fused_backward"]


def plan_steps(layers: list[Layer], allow_fusion: bool = True) -> list[tuple[int, int]]:
    """The forward steps as ``(first, last)`` layer indices: ``(k, k + 1)`` for a fused ReLU → MaxPool2d
    pair, ``(k, k)`` for a layer on its own. Fusion only if the active backend offers it."""
    fuse = allow_fusion and kernels.active().fuses_relu_pool
    steps, index, count = [], 0, len(layers)
    while index < count:
        pair = (
            fuse
            and type(layers[index]) is ReLU
            and index + 1 < count
            and type(layers[index + 1]) is MaxPool2d
        )
        steps.append((index, index + 1) if pair else (index, index))
        index += 2 if pair else 1
    return steps


def step_forward(layers: list[Layer], step: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """Run one planned step: a single layer, or ReLU → MaxPool2d as one fused pass."""
    first, last = step
    if first == last:
        return layers[first].forward(x)
    y = layers[last].forward_fused(x, relu=True)
    layers[first].cache = FUSED_INTO_NEXT
    return y


def step_backward(layers: list[Layer], step: tuple[int, int], grad: np.ndarray, need_input_grad: bool):
    """Back-propagate through one step; a fused pool's backward already includes its ReLU."""
    first, last = step
    return layers[last].backward(grad, need_input_grad=need_input_grad or first > 0)


def fused_forward(layers: list[Layer], x: np.ndarray, allow_fusion: bool = True) -> tuple[np.ndarray, tuple]:
    """Run ``layers`` in order, fusing ReLU → MaxPool2d pairs when the backend supports it.

    Returns the output and the plan of steps that ran (what backward needs).
    """
    steps = plan_steps(layers, allow_fusion)
    for step in steps:
        x = step_forward(layers, step, x)
    return x, tuple(steps)


def fused_backward(layers: list[Layer], grad: np.ndarray, steps: tuple, need_input_grad: bool = True):
    """Back-propagate through the steps of the last forward pass, in reverse."""
    if not steps:  # backward before any forward: let the layers report it
        steps = tuple((k, k) for k in range(len(layers)))
    for step in reversed(steps):
        grad = step_backward(layers, step, grad, need_input_grad)
    return grad
