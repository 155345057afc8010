"""Pooling layers: thin holders of window settings around the active backend's pooling
(:mod:`numcnn.kernels`; the reference is :mod:`numcnn.functional.pooling`)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from numcnn import kernels
from numcnn.functional.curvature import avg_pool2d_curvature, max_pool2d_curvature
from numcnn.functional.im2col import conv_output_size_2d
from numcnn.functional.pooling import pool_window_settings
from numcnn.layers.base import Layer

__all__ = ["MaxPool2d", "AvgPool2d", "PoolableConvolution"]


class PoolableConvolution(Protocol):
    """A convolution that can run with a following ReLU → max pooling in one backend pass
    (:meth:`numcnn.layers.Conv2d.forward_pooled`)."""

    def forward_pooled(self, x: np.ndarray, pool_window: tuple, record: bool) -> tuple[np.ndarray, Any] | None: ...


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_window_settings(
            kernel_size, stride, padding, type(self).__name__
        )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        return (c, *conv_output_size_2d((h, w), self.kernel_size, self.stride, self.padding))

    def config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling (seed 004 eq. 15.51); ``stride`` defaults to ``kernel_size``.

    Shape: ``(N, C, H, W)`` → ``(N, C, OH, OW)``.

    Backward: each window's δ goes to the position of its maximum, the other pixels get 0; with
    overlapping windows (stride < kernel) a pixel that is the maximum of several windows receives
    the sum (004 eq. 15.59). Ties: the first maximum in row-major window order wins, as in PyTorch.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.forward_fused(x, relu=False)

    def forward_fused(self, x: np.ndarray, relu: bool) -> np.ndarray:
        """``max_pool(relu(x))`` in one pass when ``relu`` (used by :class:`~numcnn.layers.Sequential`
        for ReLU → MaxPool2d); :meth:`backward` then returns ``∂E/∂x`` with respect to the ReLU's input."""
        backend = kernels.active()
        y, cache = backend.max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, relu=relu, record=self.training
        )
        self.cache = (backend, cache)
        return y

    def forward_after_conv(self, x: np.ndarray, conv: PoolableConvolution) -> np.ndarray | None:
        """``max_pool(relu(conv(x)))`` in one pass when the backend fuses it (used by
        :class:`~numcnn.layers.Sequential` for Conv2d → ReLU → MaxPool2d), else ``None`` and nothing ran.

        The convolution keeps its own cache; this layer keeps the pooling's, and :meth:`backward` then
        returns ``∂E/∂(convolution output)``, the ReLU's derivative included."""
        fused = conv.forward_pooled(x, self.window(), record=self.training)
        if fused is None:
            return None
        y, self.cache = fused
        return y

    def window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``(kernel_size, stride, padding)``."""
        return self.kernel_size, self.stride, self.padding

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, cache = self.require_cache()
        return backend.max_pool2d_backward(grad_output, cache) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        """Routes ``D`` to each window's maximum, like δ (:func:`~numcnn.functional.curvature.max_pool2d_curvature`)."""
        return max_pool2d_curvature(curvature_output, x, self.kernel_size, self.stride, self.padding), {}


class AvgPool2d(_Pool2d):
    """Average pooling (seed 004 eq. 15.52); padding counts as zeros (``count_include_pad=True``).

    Shape: ``(N, C, H, W)`` → ``(N, C, OH, OW)``.

    Backward: every pixel of a window receives ``δ / (KH·KW)`` (seed 001 eq. 7), summed over the
    windows that contain it.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        backend = kernels.active()
        y, cache = backend.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self.cache = (backend, cache)
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, cache = self.require_cache()
        return backend.avg_pool2d_backward(grad_output, cache) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        """Spreads ``D / (KH·KW)²`` over each window (:func:`~numcnn.functional.curvature.avg_pool2d_curvature`)."""
        return avg_pool2d_curvature(curvature_output, x, self.kernel_size, self.stride, self.padding), {}
