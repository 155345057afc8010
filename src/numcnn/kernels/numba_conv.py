"""Direct (im2col-free) stride-1 convolution kernels, compiled with numba.

For a layer with few input channels and large images -- LeNet's first layer has ``C·KH·KW = 25``
rows of ``φ(x)ᵀ`` but 784 positions per image -- the im2col matrix is 25 times the input and the
matrix products that read it are limited by memory traffic, not arithmetic. These kernels compute
the same three sums of seed 004 without ever forming ``φ(x)``:

* eq. 15.25 ``y[f, p, q] = b[f] + Σ_{c,i,j} W[f, c, i, j] · x_pad[c, p + i, q + j]``
* eq. 15.38 ``∂E/∂W[f, c, i, j] = Σ_{n,p,q} δ[f, n, p, q] · x_pad[c, n, p + i, q + j]``
* eq. 15.49 ``∂E/∂x_pad[c, p + i, q + j] += W[f, c, i, j] · δ[f, p, q]`` (the same scatter col2im does)

**The wide-row trick.** Per image the padded input is a contiguous ``(C, Hp, Wp)`` block. Index the
output positions by ``t = p·Wp + q`` ("wide" rows of ``Wp`` instead of ``OW`` entries); then for a fixed
``(c, i, j)`` the pixel under position ``t`` is ``x_pad_flat[c·Hp·Wp + i·Wp + j + t]``: one contiguous run
of ``L = (OH − 1)·Wp + OW`` elements. Every sum above becomes a long unit-stride loop (an axpy or a
dot product) that LLVM vectorises. The ``Wp − OW`` extra entries per row are computed and thrown
away (forward), or are zeros in δ so they add nothing (backward).

One task per image (``prange`` over ``n``); each task keeps its padded image and accumulators in
small thread-local arrays that stay in the L1/L2 cache. Weight gradients are written per image and
summed afterwards, so no two threads write the same element.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["conv_forward_direct", "conv_weight_grad_direct", "conv_input_grad_direct"]


@njit(cache=True, inline="always")
def _load_padded(src, plane, plane_c, shape, padding, padded):
    """Copy image ``n`` (at ``plane``) into the zeroed ``(C, Hp, Wp)`` flat buffer ``padded``."""
    channels, _, height, width = shape
    pad_h, pad_w = padding
    padded_w = width + 2 * pad_w
    padded_plane = (height + 2 * pad_h) * padded_w
    for c in range(channels):
        for h in range(height):
            row_in = src[plane + c * plane_c + h * width : plane + c * plane_c + (h + 1) * width]
            start = c * padded_plane + (h + pad_h) * padded_w + pad_w
            row_out = padded[start : start + width]
            for w in range(width):
                row_out[w] = row_in[w]


@njit(cache=True, inline="always")
def _load_wide_delta(grad, plane, plane_f, filters, out_size, padded_w, wide):
    """Copy δ of one image into ``(F, L)`` wide rows, zeros in the ``Wp − OW`` gap of each row."""
    out_h, out_w = out_size
    for f in range(filters):
        for p in range(out_h):
            row_in = grad[plane + f * plane_f + p * out_w : plane + f * plane_f + (p + 1) * out_w]
            row_out = wide[f, p * padded_w : p * padded_w + out_w]
            for q in range(out_w):
                row_out[q] = row_in[q]


@njit(parallel=True, cache=True)
def conv_forward_direct(src, plane_c, plane_n, shape, kernel, padding, weight, bias, out):
    """Forward pass (eq. 15.25), stride 1; ``out`` flat channel-major ``(F, N, OH, OW)``.

    ``weight`` is the ``(F, C·KH·KW)`` matrix ``W_mat``; ``bias`` has ``F`` entries (zeros for none).
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    for n in prange(batch):
        padded = np.zeros(channels * padded_h * padded_w, dtype=out.dtype)
        _load_padded(src, n * plane_n, plane_c, shape, padding, padded)
        acc = np.empty((filters, length), dtype=out.dtype)
        for f in range(filters):
            acc[f, :] = bias[f]
        for c in range(channels):
            for i in range(kernel_h):
                for j in range(kernel_w):
                    start = (c * padded_h + i) * padded_w + j
                    pixels = padded[start : start + length]
                    k = (c * kernel_h + i) * kernel_w + j
                    for f in range(filters):
                        w = weight[f, k]
                        row = acc[f]
                        for t in range(length):
                            row[t] += w * pixels[t]
        for f in range(filters):
            for p in range(out_h):
                dst = ((f * batch + n) * out_h + p) * out_w
                out[dst : dst + out_w] = acc[f, p * padded_w : p * padded_w + out_w]


@njit(parallel=True, cache=True, fastmath=True)
def conv_weight_grad_direct(
    src, plane_c, plane_n, shape, kernel, padding, grad, grad_plane_f, grad_plane_n, zero, partial
):
    """Per-image weight gradients (eq. 15.38), stride 1: ``partial[n, f, k]``; the caller sums over ``n``.

    ``grad`` is δ flat with plane strides ``grad_plane_f`` / ``grad_plane_n``. ``fastmath`` lets LLVM
    vectorise the dot products (it reorders their sums: equal to the reference up to rounding).
    ``zero`` is ``0`` of the working dtype, so the sums run in float32 for float32 data.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    filters = partial.shape[1]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    for n in prange(batch):
        padded = np.zeros(channels * padded_h * padded_w, dtype=partial.dtype)
        _load_padded(src, n * plane_n, plane_c, shape, padding, padded)
        wide = np.zeros((filters, length), dtype=partial.dtype)
        _load_wide_delta(grad, n * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, wide)
        for c in range(channels):
            for i in range(kernel_h):
                for j in range(kernel_w):
                    start = (c * padded_h + i) * padded_w + j
                    pixels = padded[start : start + length]
                    k = (c * kernel_h + i) * kernel_w + j
                    for f in range(filters):
                        row = wide[f]
                        total = zero
                        for t in range(length):
                            total += row[t] * pixels[t]
                        partial[n, f, k] = total


@njit(parallel=True, cache=True)
def conv_input_grad_direct(grad, grad_plane_f, grad_plane_n, shape, kernel, padding, weight, out):
    """Input gradient (eq. 15.49), stride 1: scatter ``W[f, c, i, j]·δ[f]`` onto the padded image, crop.

    ``shape = (C, N, H, W)`` of the input; ``out`` flat channel-major ``(C, N, H, W)``, overwritten.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    pad_h, pad_w = padding
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * pad_h, width + 2 * pad_w
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    for n in prange(batch):
        wide = np.zeros((filters, length), dtype=out.dtype)
        _load_wide_delta(grad, n * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, wide)
        padded = np.zeros(channels * padded_h * padded_w, dtype=out.dtype)
        for c in range(channels):
            for i in range(kernel_h):
                for j in range(kernel_w):
                    start = (c * padded_h + i) * padded_w + j
                    target = padded[start : start + length]
                    k = (c * kernel_h + i) * kernel_w + j
                    for f in range(filters):
                        w = weight[f, k]
                        row = wide[f]
                        for t in range(length):
                            target[t] += w * row[t]
        for c in range(channels):
            for h in range(height):
                dst = ((c * batch + n) * height + h) * width
                start = (c * padded_h + h + pad_h) * padded_w + pad_w
                out[dst : dst + width] = padded[start : start + width]
