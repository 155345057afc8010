"""Transparent layer fusion for :class:`~numcnn.layers.Sequential`.

These patterns run as one step when the active backend offers it (the reference backend never does):

* **ReLU → MaxPool2d.** ReLU is monotone, so ``max_pool(relu(x)) = relu(max_pool(x))``: the fused
  step reads ``x`` once and never materialises the ReLU's output. Its backward routes each window's
  δ to the first maximum of the window *if that maximum is positive* -- exactly what MaxPool2d's
  backward followed by ReLU's mask produces (tested against the unfused pair). The pooling layer
  runs it (:meth:`MaxPool2d.forward_fused`) and keeps the fused cache; its ``backward`` returns
  ``∂E/∂x`` with respect to the ReLU's *input*, so ``Sequential.backward`` steps over the ReLU, which
  does not run at all (its cache is left as it was).
* **Conv2d → ReLU → MaxPool2d** (numba backend, small stride-1 convolutions): the convolution's
  output is pooled while it is still in the cache and never stored. The pooling layer asks the
  convolution for the pass (:meth:`MaxPool2d.forward_after_conv` → :meth:`Conv2d.forward_pooled`);
  each keeps its own cache, the same as if they had run one after the other, so backward is
  unchanged: pooling (with the ReLU), then the convolution. When the backend declines for a layer's
  shapes, the step runs as Conv2d followed by the fused ReLU → MaxPool2d.

* **BatchNorm2d → ReLU** (numba backend, training mode): the batch norm stores ``max(y, 0)`` in its
  last pass and masks δ as its backward reads it (:meth:`BatchNorm2d.forward_relu`), saving the
  ReLU's two passes over memory; the ReLU does not run, and backward steps over it. Where the ReLU
  is followed by a MaxPool2d, the ReLU → MaxPool2d fusion is taken instead (it saves as much).
* **Conv2d → ReLU** (numba backend): the convolution stores ``max(y, 0)`` (:meth:`Conv2d.forward_relu`;
  e.g. after batch norm was folded into it for inference); its backward applies the ReLU's mask
  first. Not where a MaxPool2d follows: Conv2d → ReLU → MaxPool2d is fused as a whole.

Every layer touches only its own state: this module only plans the steps and calls the layers.

Only exactly these classes are fused (a subclass may change the maths), and never a layer with a
hook (:meth:`Layer.register_forward_hook`): a hooked layer's output and δ must exist, so recording
(:func:`numcnn.trace`) turns fusion off where it looks. Each layer stays usable on its own; outputs
and gradients of the Sequential are unchanged.
"""

from __future__ import annotations

import functools

import numpy as np

from numcnn import kernels
from numcnn.layers.activation import ReLU
from numcnn.layers.base import Layer
from numcnn.layers.convolution import Conv2d
from numcnn.layers.normalization import BatchNorm2d
from numcnn.layers.pooling import MaxPool2d

__all__ = ["plan_steps", "step_forward", "step_backward", "fused_forward", "fused_backward"]


# How plan_steps sees a layer: its class, whether it is hooked, whether it is in training mode.
_Layout = tuple[tuple[type, bool, bool], ...]


def _fusable(layout: _Layout, first: int, kinds: tuple[type[Layer], ...]) -> bool:
    """Whether ``layout[first:]`` starts with exactly these classes, none of them hooked."""
    group = layout[first : first + len(kinds)]
    return len(group) == len(kinds) and all(
        kind is wanted and not hooked for (kind, hooked, _), wanted in zip(group, kinds)
    )


def _relu_fusable(layout: _Layout, first: int, fuse_pool: bool, fuse_conv: bool, fuse_norm: bool) -> bool:
    """Conv2d → ReLU, or BatchNorm2d → ReLU in training mode, unless the ReLU fuses with a following
    MaxPool2d."""
    if fuse_pool and _fusable(layout, first + 1, (ReLU, MaxPool2d)):
        return False
    if fuse_conv and _fusable(layout, first, (Conv2d, ReLU)):
        return True
    return fuse_norm and _fusable(layout, first, (BatchNorm2d, ReLU)) and layout[first][2]


def plan_steps(layers: list[Layer], allow_fusion: bool = True) -> list[tuple[int, int]]:
    """The forward steps as ``(first, last)`` layer indices: ``(k, k)`` for a layer on its own,
    ``(k, k + 1)`` for ReLU → MaxPool2d, Conv2d → ReLU or BatchNorm2d → ReLU, ``(k, k + 2)`` for
    Conv2d → ReLU → MaxPool2d.

    The plan depends on the layers' classes, hooks and modes and on what the backend fuses, so it is
    worked out once per such combination and then looked up (it ran on every forward pass: 35 µs of
    LeNet-5's 750 µs inference batch)."""
    backend = kernels.active()
    fuse_pool = allow_fusion and backend.fuses_relu_pool
    flags = (
        fuse_pool,
        fuse_pool and backend.fuses_conv_pool,
        allow_fusion and backend.fuses_conv_relu,
        allow_fusion and backend.fuses_batch_norm_relu,
    )
    layout = tuple((type(layer), layer.has_hooks(), layer.training) for layer in layers)
    return list(_plan(layout, flags))


@functools.lru_cache(maxsize=256)
def _plan(layout: _Layout, flags: tuple[bool, bool, bool, bool]) -> tuple[tuple[int, int], ...]:
    fuse_pool, fuse_conv, fuse_conv_relu, fuse_norm = flags
    steps, index = [], 0
    while index < len(layout):
        if fuse_conv and _fusable(layout, index, (Conv2d, ReLU, MaxPool2d)):
            size = 3
        elif (fuse_pool and _fusable(layout, index, (ReLU, MaxPool2d))) or _relu_fusable(
            layout, index, fuse_pool, fuse_conv_relu, fuse_norm
        ):
            size = 2  # ReLU → MaxPool2d, or Conv2d / BatchNorm2d → ReLU
        else:
            size = 1
        steps.append((index, index + size - 1))
        index += size
    return tuple(steps)


def step_forward(layers: list[Layer], step: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """Run one planned step."""
    first, last = step
    if first == last:
        return layers[first].forward_with_hooks(x)
    if isinstance(layers[last], ReLU):  # Conv2d → ReLU or BatchNorm2d → ReLU
        producer = layers[first]
        assert isinstance(producer, (Conv2d, BatchNorm2d))
        return producer.forward_relu(x)
    pool = layers[last]
    assert isinstance(pool, MaxPool2d)  # what plan_steps fuses
    if last - first == 2:
        conv = layers[first]
        assert isinstance(conv, Conv2d)
        y = pool.forward_after_conv(x, conv)
        if y is not None:
            return y
        x = conv.forward(x)  # the backend declined these shapes: the convolution, then ReLU → MaxPool2d
    return pool.forward_fused(x, relu=True)


def step_backward(layers: list[Layer], step: tuple[int, int], grad: np.ndarray, need_input_grad: bool):
    """Back-propagate through one step; a fused pool's or batch norm's backward already includes its ReLU."""
    first, last = step
    if first == last:
        return layers[first].backward_with_hooks(grad, need_input_grad=need_input_grad or first > 0)
    if isinstance(layers[last], ReLU):  # Conv2d / BatchNorm2d → ReLU: δ of the ReLU's output
        return layers[first].backward(grad, need_input_grad=need_input_grad or first > 0)
    if last - first == 2:  # pooling (with the ReLU), then the convolution
        grad_conv_output = layers[last].backward(grad, need_input_grad=True)
        assert grad_conv_output is not None
        return layers[first].backward(grad_conv_output, need_input_grad=need_input_grad or first > 0)
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
