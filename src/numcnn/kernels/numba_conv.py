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


@njit(cache=True)
def _tap_offsets(channels, kernel, padded_size):
    """Flat offset of the pixel under wide position 0 for each tap ``k = (c·KH + i)·KW + j``."""
    kernel_h, kernel_w = kernel
    padded_h, padded_w = padded_size
    offsets = np.empty(channels * kernel_h * kernel_w, dtype=np.int64)
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                offsets[(c * kernel_h + i) * kernel_w + j] = (c * padded_h + i) * padded_w + j
    return offsets


@njit(parallel=True, cache=True)
def conv_forward_direct(src, plane_c, plane_n, shape, kernel, padding, weight, bias, out):
    """Forward pass (eq. 15.25), stride 1; ``out`` flat channel-major ``(F, N, OH, OW)``.

    ``weight`` is the ``(F, C·KH·KW)`` matrix ``W_mat``; ``bias`` has ``F`` entries (zeros for none).
    Taps are added four at a time: each pass over a filter's accumulator row then reads and
    writes it once per four multiply-adds instead of once per one (probed 1.5× faster).
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    taps = channels * kernel_h * kernel_w
    offsets = _tap_offsets(channels, kernel, (padded_h, padded_w))
    for n in prange(batch):
        padded = np.zeros(channels * padded_h * padded_w, dtype=out.dtype)
        _load_padded(src, n * plane_n, plane_c, shape, padding, padded)
        acc = np.empty((filters, length), dtype=out.dtype)
        for f in range(filters):
            row = acc[f]
            row[:] = bias[f]
            k = 0
            while k + 4 <= taps:
                w0, w1, w2, w3 = weight[f, k], weight[f, k + 1], weight[f, k + 2], weight[f, k + 3]
                p0 = padded[offsets[k] : offsets[k] + length]
                p1 = padded[offsets[k + 1] : offsets[k + 1] + length]
                p2 = padded[offsets[k + 2] : offsets[k + 2] + length]
                p3 = padded[offsets[k + 3] : offsets[k + 3] + length]
                for t in range(length):
                    row[t] += (w0 * p0[t] + w1 * p1[t]) + (w2 * p2[t] + w3 * p3[t])
                k += 4
            for k in range(k, taps):
                w0 = weight[f, k]
                p0 = padded[offsets[k] : offsets[k] + length]
                for t in range(length):
                    row[t] += w0 * p0[t]
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
    ``zero`` is ``0`` of the working dtype, so the sums run in float32 for float32 data. Four dot
    products share each pass over δ's row.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    filters = partial.shape[1]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    taps = channels * kernel_h * kernel_w
    offsets = _tap_offsets(channels, kernel, (padded_h, padded_w))
    for n in prange(batch):
        padded = np.zeros(channels * padded_h * padded_w, dtype=partial.dtype)
        _load_padded(src, n * plane_n, plane_c, shape, padding, padded)
        wide = np.zeros((filters, length), dtype=partial.dtype)
        _load_wide_delta(grad, n * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, wide)
        for f in range(filters):
            row = wide[f]
            k = 0
            while k + 4 <= taps:
                p0 = padded[offsets[k] : offsets[k] + length]
                p1 = padded[offsets[k + 1] : offsets[k + 1] + length]
                p2 = padded[offsets[k + 2] : offsets[k + 2] + length]
                p3 = padded[offsets[k + 3] : offsets[k + 3] + length]
                s0 = s1 = s2 = s3 = zero
                for t in range(length):
                    d = row[t]
                    s0 += d * p0[t]
                    s1 += d * p1[t]
                    s2 += d * p2[t]
                    s3 += d * p3[t]
                partial[n, f, k], partial[n, f, k + 1], partial[n, f, k + 2], partial[n, f, k + 3] = s0, s1, s2, s3
                k += 4
            for k in range(k, taps):
                p0 = padded[offsets[k] : offsets[k] + length]
                s0 = zero
                for t in range(length):
                    s0 += row[t] * p0[t]
                partial[n, f, k] = s0


@njit(parallel=True, cache=True)
def conv_input_grad_direct(grad, grad_plane_f, grad_plane_n, shape, kernel, padding, weight, out):
    """Input gradient (eq. 15.49), stride 1: scatter ``W[f, c, i, j]·δ[f]`` onto the padded image, crop.

    ``shape = (C, N, H, W)`` of the input; ``out`` flat channel-major ``(C, N, H, W)``, overwritten.
    Four filters' contributions are added per pass over a tap's run of pixels.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    pad_h, pad_w = padding
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * pad_h, width + 2 * pad_w
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    taps = channels * kernel_h * kernel_w
    offsets = _tap_offsets(channels, kernel, (padded_h, padded_w))
    for n in prange(batch):
        wide = np.zeros((filters, length), dtype=out.dtype)
        _load_wide_delta(grad, n * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, wide)
        padded = np.zeros(channels * padded_h * padded_w, dtype=out.dtype)
        for k in range(taps):
            target = padded[offsets[k] : offsets[k] + length]
            f = 0
            while f + 4 <= filters:
                w0, w1, w2, w3 = weight[f, k], weight[f + 1, k], weight[f + 2, k], weight[f + 3, k]
                d0, d1, d2, d3 = wide[f], wide[f + 1], wide[f + 2], wide[f + 3]
                for t in range(length):
                    target[t] += (w0 * d0[t] + w1 * d1[t]) + (w2 * d2[t] + w3 * d3[t])
                f += 4
            for f in range(f, filters):
                w0 = weight[f, k]
                d0 = wide[f]
                for t in range(length):
                    target[t] += w0 * d0[t]
        for c in range(channels):
            for h in range(height):
                dst = ((c * batch + n) * height + h) * width
                start = (c * padded_h + h + pad_h) * padded_w + pad_w
                out[dst : dst + width] = padded[start : start + width]
