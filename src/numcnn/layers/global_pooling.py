"""``GlobalAvgPool2d``: a parameter-free layer around :mod:`numcnn.functional.global_pooling`."""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.curvature import global_avg_pool2d_curvature
from numcnn.functional.global_pooling import global_avg_pool2d_backward, global_avg_pool2d_forward
from numcnn.layers.base import Layer

__all__ = ["GlobalAvgPool2d"]


class GlobalAvgPool2d(Layer):
    """Average every feature map to one value: ``(N, C, H, W)`` → ``(N, C)``.

    Backward spreads ``δ[n, c] / (H·W)`` over the map. Used at the end of residual networks in place
    of fully connected layers (seed 004 exercise 15.4 (c)); its output feeds a ``Linear`` directly.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.cache = global_avg_pool2d_forward(x)
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        input_size = self.require_cache()
        return global_avg_pool2d_backward(grad_output, input_size) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        """Spreads ``D[n, c] / (H·W)²`` over the map."""
        return global_avg_pool2d_curvature(curvature_output, x), {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ShapeError(f"GlobalAvgPool2d expects (C, H, W) samples, got {input_shape}")
        return (input_shape[0],)
