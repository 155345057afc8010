"""2-D convolution (cross-correlation, as in PyTorch) as im2col + matrix product, with its backward pass.

Seed 004 §15.5 derives all three formulas with the unfolding ``φ(x)`` (see :mod:`numcnn.functional.im2col`)
and the weight matrix ``F`` of shape ``(C·KH·KW, F)``:

* forward, eq. 15.25:           ``Y = φ(x) F``                 (one row of Y per output position)
* weight gradient, eq. 15.38:   ``∂E/∂F = φ(x)ᵀ ∂E/∂Y``
* input gradient, eq. 15.49:    ``∂E/∂x = col2im(∂E/∂Y Fᵀ)``  (sum over the windows that saw a pixel)
* bias gradient (000 §3.1.1):   ``∂E/∂b_j = Σ_uv (δ_j)_uv``   (summed over the batch as well)

Seeds 000/002/003 write the same gradients with ``rot180`` and MATLAB's ``conv2``:
``δˡ = conv2(δˡ⁺¹, rot180(k), 'full')`` and ``∂E/∂k = rot180(conv2(x, rot180(δ), 'valid'))``; the
two forms are equal (tests cross-check them), the matrix form is the one that runs fast.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.im2col import col2im, im2col, pair

__all__ = ["Conv2dCache", "check_conv_input", "conv2d_forward", "conv2d_backward"]


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass, and nothing more."""

    columns: np.ndarray  # (N, C, KH, KW, OH, OW): φ(x), for ∂E/∂W
    weight: np.ndarray  # (F, C, KH, KW): for ∂E/∂x
    input_size: tuple[int, int]  # (H, W): the size col2im folds back to
    stride: tuple[int, int]
    padding: tuple[int, int]


def check_conv_input(x: np.ndarray, weight: np.ndarray) -> None:
    """Raise a :class:`ShapeError` unless ``x`` is an ``(N, C, H, W)`` batch with the weight's ``C``."""
    if x.ndim != 4:
        raise ShapeError(f"conv2d input must have shape (N, C, H, W), got {x.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ShapeError(
            f"conv2d input has {x.shape[1]} channels but the weight expects {weight.shape[1]} "
            f"(input shape {x.shape}, weight shape {weight.shape})"
        )


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, Conv2dCache]:
    """``y[n, f] = Σ_c x[n, c] ⋆ weight[f, c] + bias[f]`` (⋆: valid cross-correlation with stride/padding).

    Shape:
        - x: ``(N, C, H, W)``
        - weight: ``(F, C, KH, KW)``; bias: ``(F,)`` or None
        - returns y: ``(N, F, OH, OW)`` and the cache for :func:`conv2d_backward`
    """
    check_conv_input(x, weight)
    filters, _channels, kernel_h, kernel_w = weight.shape
    stride, padding = pair(stride, "stride"), pair(padding, "padding")

    columns = im2col(x, (kernel_h, kernel_w), stride, padding)  # (N, C, KH, KW, OH, OW)
    # φ(x) F of eq. 15.25, contracted over q = (c, i, j) for the whole batch at once.
    y = np.tensordot(columns, weight, axes=((1, 2, 3), (1, 2, 3)))  # (N, OH, OW, F)
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # (N, F, OH, OW)
    if bias is not None:
        y += bias.reshape(1, filters, 1, 1)
    cache = Conv2dCache(columns, weight, (x.shape[2], x.shape[3]), stride, padding)
    return y, cache


def conv2d_backward(
    grad_output: np.ndarray, cache: Conv2dCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of a convolution with respect to its input, weight and bias.

    Shape:
        - grad_output ``∂E/∂y``: ``(N, F, OH, OW)``
        - returns ``(∂E/∂x or None, ∂E/∂W, ∂E/∂b)`` of shapes ``(N, C, H, W)``, ``(F, C, KH, KW)``, ``(F,)``

    Args:
        need_input_grad: skip ``∂E/∂x`` (the most expensive part) when nobody uses it, e.g. in the
            first layer of a network.
    """
    columns = cache.columns
    # ∂E/∂F = φ(x)ᵀ ∂E/∂Y (eq. 15.38), summed over the batch and all output positions.
    grad_weight = np.tensordot(grad_output, columns, axes=((0, 2, 3), (0, 4, 5)))  # (F, C, KH, KW)
    grad_bias = grad_output.sum(axis=(0, 2, 3))  # (F,)

    grad_input = None
    if need_input_grad:
        # ∂E/∂Y Fᵀ for every window, then col2im adds each window back onto its pixels (eq. 15.49).
        grad_columns = np.tensordot(cache.weight, grad_output, axes=((0,), (1,)))  # (C, KH, KW, N, OH, OW)
        grad_columns = grad_columns.transpose(3, 0, 1, 2, 4, 5)  # (N, C, KH, KW, OH, OW)
        grad_input = col2im(grad_columns, cache.input_size, cache.stride, cache.padding)
    return grad_input, grad_weight, grad_bias
