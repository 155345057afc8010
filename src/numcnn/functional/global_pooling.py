"""Global average pooling: each feature map averaged to one number.

It is average pooling (seed 004 eq. 15.52) with the window as large as the map, and it is what
ResNet and GoogLeNet use instead of VGG's fully connected layers (004 exercise 15.4 (c)): no
parameters, and the classifier no longer depends on the input's spatial size.

* forward:  ``y[n, c] = (1/(H·W)) Σ_uv x[n, c, u, v]``
* backward: ``∂E/∂x[n, c, u, v] = ∂E/∂y[n, c] / (H·W)`` -- the ``δ/m`` share of seed 001 eq. 7
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError

__all__ = ["global_avg_pool2d_forward", "global_avg_pool2d_backward"]


def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Shape: x ``(N, C, H, W)`` → y ``(N, C)``; the cache is the map size ``(H, W)``."""
    if x.ndim != 4:
        raise ShapeError(f"global average pooling expects (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=(2, 3)), (x.shape[2], x.shape[3])


def global_avg_pool2d_backward(grad_output: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Shape: ``(N, C)`` → ``(N, C, H, W)``, every pixel of a map receiving ``δ[n, c] / (H·W)``."""
    height, width = input_size
    share = grad_output / (height * width)
    return np.broadcast_to(share[:, :, None, None], (*grad_output.shape, height, width)).copy()
