"""Convolution in batch-last memory (numpy backend): seed 004's three matrix products, cache-blocked.

With ``x`` batch-last (:mod:`numcnn.kernels.batch_last`) and ``φ(x)ᵀ`` of shape ``(C·KH·KW, OH·OW·N)``
(columns in ``(p, q, n)`` order):

* eq. 15.25, forward: ``Y = [W_mat | b] · [φ(x)ᵀ; 1]`` -- the bias rides along as a row of ones, so
  there is no separate bias pass, and ``Y`` ``(F, OH·OW·N)`` is the output in batch-last order;
* eq. 15.38, weight gradient: ``[∂E/∂W_mat | ∂E/∂b] = δ · [φ(x)ᵀ; 1]ᵀ`` with δ as ``(F, OH·OW·N)`` --
  the bias gradient comes out of the same product;
* eq. 15.49, input gradient, grouped by kernel row ``i`` (about twice as fast in NumPy as col2im's
  ``KH·KW`` short strided additions): spread δ along the padded
  width, ``E[(f, j), (p, q·SW + j, n)] = δ[f, p, q, n]`` (zero elsewhere), then
  ``G = W_rows · E`` with ``W_rows[(c, i), (f, j)] = W[f, c, i, j]`` and
  ``∂E/∂x_pad[c, p·SH + i, :, :] += G[(c, i), p, :, :]`` -- one product and ``KH`` additions of
  whole padded rows (``Wp·N`` elements each).

The unfolding is never stored: both the forward product and the weight gradient copy a band of
output rows' columns into a small reused buffer (``block_bytes``, sized for the L2 cache) and
multiply it while it is still cached. The cache keeps only the padded input, 25× smaller for a
5×5 kernel than its unfolding, so no large array is allocated per step. Any kernel size, stride,
padding and channel count; the runs copied are ``OW·N`` long for stride 1 and ``N`` long otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.functional.im2col import conv_output_size_2d
from numcnn.kernels.batch_last import (
    Workspace,
    as_nchw,
    batch_last,
    pad_batch_last,
    window_view,
)

__all__ = ["BatchLastConvCache", "conv2d_forward", "conv2d_backward"]


class BatchLastConvCache(NamedTuple):
    padded: np.ndarray  # (C, Hp, Wp, N): the padded input (the input itself when unpadded and batch-last)
    weight: np.ndarray  # (F, C, KH, KW)
    input_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    has_bias: bool


def _band_rows(rows: int, out_w: int, n: int, itemsize: int, block_bytes: int) -> int:
    """Output rows per band so that a band's columns ``(rows, band·OW·N)`` take about ``block_bytes``."""
    return max(1, block_bytes // (rows * out_w * n * itemsize))


def _unfold_band(windows: np.ndarray, start: int, stop: int, columns: np.ndarray, rows: int) -> np.ndarray:
    """Copy output rows ``[start, stop)`` of the unfolding into ``columns``; return the filled
    ``(rows[+1], m)`` part."""
    channels, kernel_h, kernel_w, _, out_w, n = windows.shape
    part = columns[:, : (stop - start) * out_w * n]
    np.copyto(part[:rows].reshape(channels, kernel_h, kernel_w, stop - start, out_w, n), windows[:, :, :, start:stop])
    return part


def conv2d_forward(x, weight, bias, stride, padding, block_bytes: int, workspace: Workspace):
    """``y = W ⋆ x + b`` (eq. 15.25).

    Shape:
        - x: ``(N, C, H, W)``, any memory layout; weight ``(F, C, KH, KW)``; bias ``(F,)`` or None
        - returns ``(y, cache)``: y ``(N, F, OH, OW)``, the NCHW view of batch-last memory
    """
    n = x.shape[0]
    filters, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = conv_output_size_2d(x.shape[2:], (kernel_h, kernel_w), stride, padding)
    padded = pad_batch_last(x, padding)
    windows = window_view(padded, (kernel_h, kernel_w), stride, (out_h, out_w))
    rows = weight[0].size
    has_bias = bias is not None
    matrix = weight.reshape(filters, rows)
    if has_bias:
        matrix = np.concatenate([matrix, bias.reshape(filters, 1)], axis=1)  # [W_mat | b]
    band = _band_rows(rows + has_bias, out_w, n, x.dtype.itemsize, block_bytes)
    columns = workspace.get("columns", (rows + has_bias, band * out_w * n), x.dtype)
    if has_bias:
        columns[rows] = 1
    y = np.empty((filters, out_h, out_w, n), dtype=x.dtype)
    products = y.reshape(filters, -1)
    step = out_w * n
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        part = _unfold_band(windows, start, stop, columns, rows)
        np.matmul(matrix, part, out=products[:, start * step : stop * step])
    cache = BatchLastConvCache(padded, weight, tuple(x.shape[2:]), tuple(stride), tuple(padding), has_bias)
    return as_nchw(y), cache


def conv2d_backward(
    grad_output, cache: BatchLastConvCache, need_input_grad: bool, block_bytes: int, workspace: Workspace
):
    """Gradients of :func:`conv2d_forward`: eq. 15.38, ``∂E/∂b = Σ δ`` and eq. 15.49.

    Shape:
        - grad_output ``(N, F, OH, OW)``, any memory layout (no copy when batch-last)
        - returns ``(∂E/∂x (N, C, H, W) or None, ∂E/∂W (F, C, KH, KW), ∂E/∂b (F,))``
    """
    weight = cache.weight
    filters = weight.shape[0]
    rows = weight[0].size
    delta = batch_last(grad_output)  # (F, OH, OW, N)
    gradients = _weight_gradient(cache, delta, block_bytes, workspace)  # (F, rows [+ 1])
    grad_weight = gradients[:, :rows].reshape(weight.shape)
    # Without a bias the layer ignores ∂E/∂b; it is still returned, like on the other backends.
    grad_bias = gradients[:, rows] if cache.has_bias else delta.reshape(filters, -1).sum(axis=1)
    grad_input = _input_gradient(delta, cache, workspace) if need_input_grad else None
    return grad_input, grad_weight, grad_bias


def _weight_gradient(
    cache: BatchLastConvCache, delta: np.ndarray, block_bytes: int, workspace: Workspace
) -> np.ndarray:
    """``δ · [φ(x)ᵀ; 1]ᵀ`` ``(F, C·KH·KW [+ 1])``, unfolding the input again a cached band at a time."""
    filters, out_h, out_w, n = delta.shape
    kernel = cache.weight.shape[2:]
    rows = cache.weight[0].size
    total_rows = rows + cache.has_bias
    windows = window_view(cache.padded, kernel, cache.stride, (out_h, out_w))
    band = _band_rows(total_rows, out_w, n, delta.itemsize, block_bytes)
    columns = workspace.get("columns", (total_rows, band * out_w * n), delta.dtype)
    if cache.has_bias:
        columns[rows] = 1
    partial = workspace.get("partial", (total_rows, filters), delta.dtype)
    result = np.zeros((total_rows, filters), dtype=delta.dtype)
    flat_delta = delta.reshape(filters, -1)
    step = out_w * n
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        part = _unfold_band(windows, start, stop, columns, rows)
        # (columns · δᵀ) rather than δ · columnsᵀ: OpenBLAS is faster with the long axis shared
        # as the inner dimension of two row-major operands.
        np.matmul(part, flat_delta[:, start * step : stop * step].T, out=partial)
        result += partial
    return result.T


def _input_gradient(delta: np.ndarray, cache: BatchLastConvCache, workspace: Workspace) -> np.ndarray:
    """``∂E/∂x`` (eq. 15.49) by kernel rows, see the module docstring; returns the NCHW view of batch-last memory."""
    weight = cache.weight
    filters, channels, kernel_h, kernel_w = weight.shape
    _, out_h, out_w, n = delta.shape
    (h, w), (stride_h, stride_w), (pad_h, pad_w) = cache.input_size, cache.stride, cache.padding
    padded_h, padded_w = h + 2 * pad_h, w + 2 * pad_w
    # E is written at the same positions every time (they depend on the shape and the stride
    # only), so its other entries stay zero from the first use on.
    spread = workspace.get("spread", (filters, kernel_w, out_h, padded_w, n), delta.dtype, zeroed=True, tag=stride_w)
    for j in range(kernel_w):
        spread[:, j, :, j : j + stride_w * (out_w - 1) + 1 : stride_w] = delta
    weight_rows = weight.transpose(1, 2, 0, 3).reshape(channels * kernel_h, filters * kernel_w)  # [(c, i), (f, j)]
    products = workspace.get("row_products", (channels * kernel_h, out_h * padded_w * n), delta.dtype)
    np.matmul(weight_rows, spread.reshape(filters * kernel_w, -1), out=products)
    products = products.reshape(channels, kernel_h, out_h, padded_w, n)
    grad = np.zeros((channels, padded_h, padded_w, n), dtype=delta.dtype)
    for i in range(kernel_h):  # output row p, kernel row i → padded row p·SH + i
        grad[:, i : i + stride_h * (out_h - 1) + 1 : stride_h] += products[:, i]
    return as_nchw(grad[:, pad_h : pad_h + h, pad_w : pad_w + w])
