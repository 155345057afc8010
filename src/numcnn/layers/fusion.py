"""Transparent layer fusion for :class:`~numcnn.layers.Sequential`.

Two patterns run as one step when the active backend offers it (the reference backend never does):

* **ReLU → MaxPool2d.** ReLU is monotone, so ``max_pool(relu(x)) = relu(max_pool(x))``: the fused
  step reads ``x`` once and never materialises the ReLU's output. Its backward routes each window's
  δ to the first maximum of the window *if that maximum is positive* -- exactly what MaxPool2d's
  backward followed by ReLU's mask produces (tested against the unfused pair). The pooling layer
  keeps the fused cache and its ``backward`` returns ``∂E/∂x`` with respect to the ReLU's *input*,
  so ``Sequential.backward`` steps over the ReLU.
* **Conv2d → ReLU → MaxPool2d** (numba backend, small stride-1 convolutions): the convolution's
  output is pooled while it is still in the cache and never stored. The convolution and the pooling
  layer get the same caches as if they had run one after the other, so backward is unchanged:
  pooling (with the ReLU), then the convolution. When the backend declines for a layer's shapes,
  the step runs as Conv2d followed by the fused ReLU → MaxPool2d.

Only exactly these classes are fused (a subclass may change the maths). Each layer stays usable on
its own; outputs and gradients of the Sequential are unchanged.
"""

from __future__ import annotations

import numpy as np

from numcnn import kernels
from numcnn.layers.activation import FUSED_INTO_NEXT, ReLU
from numcnn.layers.base import Layer
from numcnn.layers.convolution import Conv2d
from numcnn.layers.pooling import MaxPool2d

__all__ = ["plan_steps", "step_forward", "step_backward", "fused_forward", "fused_backward"]


def _is_relu_pool(layers: list[Layer], index: int) -> bool:
    return index + 1 < len(layers) and type(layers[index]) is ReLU and type(layers[index + 1]) is MaxPool2d


def plan_steps(layers: list[Layer], allow_fusion: bool = True) -> list[tuple[int, int]]:
    """The forward steps as ``(first, last)`` layer indices: ``(k, k)`` for a layer on its own,
    ``(k, k + 1)`` for ReLU → MaxPool2d, ``(k, k + 2)`` for Conv2d → ReLU → MaxPool2d."""
    backend = kernels.active()
    fuse_pool = allow_fusion and backend.fuses_relu_pool
    fuse_conv = fuse_pool and backend.fuses_conv_pool
    steps, index = [], 0
    while index < len(layers):
        if fuse_conv and type(layers[index]) is Conv2d and _is_relu_pool(layers, index + 1):
            size = 3
        elif fuse_pool and _is_relu_pool(layers, index):
            size = 2
        else:
            size = 1
        steps.append((index, index + size - 1))
        index += size
    return steps


def step_forward(layers: list[Layer], step: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """Run one planned step."""
    first, last = step
    if first == last:
        return layers[first].forward(x)
    pool = layers[last]
    if last - first == 2:
        conv = layers[first]
        x = np.asarray(x, dtype=conv.dtype)
        backend = kernels.active()
        fused = backend.conv2d_max_pool2d_forward(
            x, conv.connected_weight(), conv.params.get("bias"), conv.stride, conv.padding,
            pool.kernel_size, pool.stride, pool.padding, record=pool.training,
        )  # fmt: skip
        if fused is None:  # not for these shapes: the convolution on its own, then ReLU → MaxPool2d
            x = conv.forward(x)
        else:
            y, conv_cache, pool_cache = fused
            conv.cache, pool.cache = (backend, conv_cache), (backend, pool_cache)
            layers[first + 1].cache = FUSED_INTO_NEXT
            return y
    y = pool.forward_fused(x, relu=True)
    layers[last - 1].cache = FUSED_INTO_NEXT
    return y


def step_backward(layers: list[Layer], step: tuple[int, int], grad: np.ndarray, need_input_grad: bool):
    """Back-propagate through one step; a fused pool's backward already includes its ReLU."""
    first, last = step
    if last - first == 2:  # pooling (with the ReLU), then the convolution
        grad_conv = layers[last].backward(grad, need_input_grad=True)
        assert grad_conv is not None  # asked for with need_input_grad=True
        return layers[first].backward(grad_conv, need_input_grad=need_input_grad or first > 0)
    return layers[last].backward(grad, need_input_grad=need_input_grad or first > 0)


def fused_forward(layers: list[Layer], x: np.ndarray, allow_fusion: bool = True) -> tuple[np.ndarray, tuple]:
    """Run ``layers`` in order as planned by :func:`plan_steps`; return the output and the plan."""
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
