"""The reference backend: :mod:`numcnn.functional` -- the readable derivations -- behind the backend interface.

Every fast backend implements the same methods and is tested against this one. The methods are
thin adapters: the mathematics stays in :mod:`numcnn.functional` so that a student reading a layer
finds each formula in exactly one place.

The interface it implements is declared in :class:`numcnn.kernels.interface.Backend`.

``fuses_relu_pool`` tells :class:`~numcnn.layers.Sequential` whether to run ReLU → MaxPool2d as one
step, ``fuses_conv_pool`` whether Conv2d → ReLU → MaxPool2d may run through
``conv2d_max_pool2d_forward`` (which may still decline, returning ``None``), ``fuses_conv_relu`` and
``fuses_batch_norm_relu`` whether Conv2d → ReLU and BatchNorm2d → ReLU run through
``conv2d_relu_forward`` and ``batch_norm_relu_train_forward``, ``fuses_add_relu`` whether a graph's
Add → ReLU runs through ``add_relu_forward``; the reference backend
never fuses, so on it every layer runs exactly as written (its fused methods are the compositions,
written out, that the fast backends' are tested against).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from numcnn.functional import activation, convolution, linear, merge, normalization, pooling

__all__ = ["ReferenceBackend"]


class _ReluMaxPoolCache(NamedTuple):
    relu_mask: np.ndarray
    pool: pooling.MaxPool2dCache


class FusedReluCache(NamedTuple):
    """The cache of a layer with a following ReLU fused into it: backward gets δ of the ReLU's output."""

    inner: Any  # the backend's cache of the layer itself
    relu: Any  # the backend's relu_forward cache of the layer's output


class ReferenceBackend:
    """Adapters from the backend interface to :mod:`numcnn.functional`."""

    name = "reference"
    fuses_relu_pool = False
    fuses_conv_pool = False
    fuses_conv_relu = False
    fuses_batch_norm_relu = False
    fuses_add_relu = False

    def conv2d_max_pool2d_forward(
        self, x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding, record=True
    ):
        """Conv2d → ReLU → MaxPool2d in one pass: ``None`` here (never fused on the reference path)."""
        return None

    def __repr__(self) -> str:
        return f"<numcnn backend {self.name!r}>"

    # -- convolution ----------------------------------------------------------------------------
    def conv2d_forward(self, x, weight, bias, stride, padding):
        return convolution.conv2d_forward(x, weight, bias, stride, padding)

    def conv2d_relu_forward(self, x, weight, bias, stride, padding):
        """The composition ``relu(conv(x))``, written out: the oracle for the fused fast kernels."""
        y, conv_cache = self.conv2d_forward(x, weight, bias, stride, padding)
        z, relu_cache = self.relu_forward(y)
        return z, FusedReluCache(conv_cache, relu_cache)

    def conv2d_backward(self, grad_output, cache, need_input_grad=True):
        grad_output, cache = self.through_fused_relu(grad_output, cache)
        return convolution.conv2d_backward(grad_output, cache, need_input_grad)

    def through_fused_relu(self, grad_output, cache):
        """``(δ, cache)`` of the layer itself: where a ReLU was fused into it (:class:`FusedReluCache`),
        δ of the ReLU's output through the ReLU's backward, and the layer's own cache."""
        if isinstance(cache, FusedReluCache):
            return self.relu_backward(grad_output, cache.relu), cache.inner
        return grad_output, cache

    # -- pooling ----------------------------------------------------------------------------------
    def max_pool2d_forward(self, x, kernel, stride, padding, relu=False, record=True):
        # ``record`` (whether backward may follow) lets fast backends skip work; the reference
        # always records the argmax.
        if not relu:
            return pooling.max_pool2d_forward(x, kernel, stride, padding)
        # The composition max_pool(relu(x)), written out: the oracle for the fused fast kernels.
        activated, mask = activation.relu_forward(x)
        y, pool_cache = pooling.max_pool2d_forward(activated, kernel, stride, padding)
        return y, _ReluMaxPoolCache(mask, pool_cache)

    def max_pool2d_backward(self, grad_output, cache):
        if isinstance(cache, _ReluMaxPoolCache):
            grad_activated = pooling.max_pool2d_backward(grad_output, cache.pool)
            return activation.relu_backward(grad_activated, cache.relu_mask)
        return pooling.max_pool2d_backward(grad_output, cache)

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        return pooling.avg_pool2d_forward(x, kernel, stride, padding)

    def avg_pool2d_backward(self, grad_output, cache):
        return pooling.avg_pool2d_backward(grad_output, cache)

    # -- element-wise and fully connected -----------------------------------------------------
    def relu_forward(self, x):
        return activation.relu_forward(x)

    def relu_backward(self, grad_output, cache):
        return activation.relu_backward(grad_output, cache)

    def add_relu_forward(self, inputs):
        return self.relu_forward(merge.add_forward(*inputs))

    def linear_forward(self, x, weight, bias):
        return linear.linear_forward(x, weight, bias)

    def linear_backward(self, grad_output, x, weight, need_input_grad=True):
        return linear.linear_backward(grad_output, x, weight, need_input_grad)

    # -- batch normalisation ----------------------------------------------------------------------
    def batch_norm_train_forward(self, x, weight, bias, eps, reduce=None):
        return normalization.batch_norm_train_forward(x, weight, bias, eps, reduce)

    def batch_norm_relu_train_forward(self, x, weight, bias, eps, reduce=None):
        """The composition ``relu(batch_norm(x))``, written out: the oracle for the fused fast kernels
        (and what a fast backend falls back to for inputs its kernels do not take)."""
        y, norm_cache, mean, variance, count = self.batch_norm_train_forward(x, weight, bias, eps, reduce)
        z, relu_cache = self.relu_forward(y)
        return z, FusedReluCache(norm_cache, relu_cache), mean, variance, count

    def batch_norm_eval_forward(self, x, weight, bias, running_mean, running_var, eps):
        return normalization.batch_norm_eval_forward(x, weight, bias, running_mean, running_var, eps)

    def batch_norm_backward(self, grad_output, cache, need_input_grad=True):
        if isinstance(cache, FusedReluCache):  # the inner cache may be another backend method's
            grad_output, cache = self.through_fused_relu(grad_output, cache)
            return self.batch_norm_backward(grad_output, cache, need_input_grad)
        return normalization.batch_norm_backward(grad_output, cache, need_input_grad)

    def sgd_update(self, param, grad, velocity, lr, momentum, weight_decay):
        # NumPy rounds each operation to the arrays' dtype (a Python float scalar takes that dtype).
        direction = grad + weight_decay * param if weight_decay else grad
        if velocity is not None:
            velocity *= momentum
            velocity += direction
            direction = velocity
        param -= lr * direction
