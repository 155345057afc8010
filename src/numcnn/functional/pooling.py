"""Max and average pooling over ``KH × KW`` windows, with overlapping windows and padding.

Seed 004 §15.6 defines both poolings (eqs. 15.51, 15.52) and their backward pass through a sparse
indicator matrix ``S(x)`` (eqs. 15.56–15.59): ``∂E/∂vec(x) = S(x)ᵀ ∂E/∂vec(y)``. A column of ``S`` can
hold several ones when windows overlap (stride < size), so an input pixel that is the maximum
of two windows receives the *sum* of both gradients. Here ``S(x)ᵀ`` is applied as: scatter each
window's gradient into its column, then :func:`~numcnn.functional.im2col.col2im` adds the columns
back onto the image -- the same adjoint that the convolution uses.

Seed 001 draws the same result as "upsample δ": average pooling spreads ``δ / m`` over the ``m``
pixels of a window; max pooling hands δ to the recorded argmax and zero to the rest.
(Seed 000's ``up(δ) = δ ⊗ 1ₙₓₙ`` copies δ *unscaled*; that is right for its *sum* subsampling,
not for an average -- see :mod:`numcnn.layers` ``Subsample2d``.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.functional.im2col import check_window, col2im, im2col, pair

__all__ = [
    "pool_window_settings",
    "MaxPool2dCache",
    "AvgPool2dCache",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]


class MaxPool2dCache(NamedTuple):
    argmax: np.ndarray  # (N, C, OH, OW): flat index i·KW + j of the maximum inside each window
    input_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


class AvgPool2dCache(NamedTuple):
    input_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def pool_window_settings(
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int],
    layer: str = "pooling",
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated ``(kernel, stride, padding)`` pairs; ``stride=None`` means non-overlapping windows."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    check_window(kernel, stride, padding, layer)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        # Otherwise a window could lie entirely in the padding and have no real pixel at all.
        raise ConfigurationError(f"{layer}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, MaxPool2dCache]:
    """``y[n, c, p, q] = max`` of the window at output position ``(p, q)`` (eq. 15.51).

    Tie rule: when several pixels of a window share the maximum, the *first* in row-major order
    (smallest ``i``, then smallest ``j``) receives the gradient -- ``np.argmax`` semantics, and the
    rule PyTorch's CPU kernel follows. Padding is ``-inf``, so it is never the maximum.

    Shape:
        - x: ``(N, C, H, W)``; returns y: ``(N, C, OH, OW)`` (``stride`` defaults to ``kernel_size``)
    """
    kernel, stride, padding = pool_window_settings(kernel_size, stride, padding)
    columns = im2col(x, kernel, stride, padding, pad_value=-np.inf)  # (N, C, KH, KW, OH, OW)
    n, c, _, _, out_h, out_w = columns.shape
    windows = columns.reshape(n, c, kernel[0] * kernel[1], out_h, out_w)  # (N, C, KH·KW, OH, OW)
    argmax = windows.argmax(axis=2)  # (N, C, OH, OW)
    y = np.take_along_axis(windows, argmax[:, :, None], axis=2)[:, :, 0]
    return y, MaxPool2dCache(argmax, (x.shape[2], x.shape[3]), kernel, stride, padding)


def max_pool2d_backward(grad_output: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """Route each window's gradient to its argmax; overlapping windows add up (eq. 15.59).

    Shape:
        - grad_output: ``(N, C, OH, OW)``; returns ``(N, C, H, W)``
    """
    n, c, out_h, out_w = grad_output.shape
    kernel_h, kernel_w = cache.kernel_size
    grad_windows = np.zeros((n, c, kernel_h * kernel_w, out_h, out_w), dtype=grad_output.dtype)
    np.put_along_axis(grad_windows, cache.argmax[:, :, None], grad_output[:, :, None], axis=2)
    grad_columns = grad_windows.reshape(n, c, kernel_h, kernel_w, out_h, out_w)
    return col2im(grad_columns, cache.input_size, cache.stride, cache.padding)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, AvgPool2dCache]:
    """``y[n, c, p, q] = (1 / (KH·KW)) Σ`` over the window (eq. 15.52).

    Padding counts as zeros in the average (PyTorch's ``count_include_pad=True``), so every
    window divides by ``KH·KW``.

    Shape:
        - x: ``(N, C, H, W)``; returns y: ``(N, C, OH, OW)``
    """
    kernel, stride, padding = pool_window_settings(kernel_size, stride, padding)
    columns = im2col(x, kernel, stride, padding)  # (N, C, KH, KW, OH, OW)
    y = columns.mean(axis=(2, 3))
    return y, AvgPool2dCache((x.shape[2], x.shape[3]), kernel, stride, padding)


def avg_pool2d_backward(grad_output: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    """Spread ``δ / (KH·KW)`` evenly over each window and add overlaps (seed 001, eq. 7).

    Shape:
        - grad_output: ``(N, C, OH, OW)``; returns ``(N, C, H, W)``
    """
    n, c, out_h, out_w = grad_output.shape
    kernel_h, kernel_w = cache.kernel_size
    share = grad_output / (kernel_h * kernel_w)  # ∂ average / ∂ x_k = 1/m for each of the m pixels
    grad_columns = np.broadcast_to(share[:, :, None, None], (n, c, kernel_h, kernel_w, out_h, out_w))
    return col2im(grad_columns, cache.input_size, cache.stride, cache.padding)
