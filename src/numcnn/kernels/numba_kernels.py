"""Compiled loops for the passes NumPy cannot fuse: im2col, col2im and max pooling.

Imported only by :mod:`numcnn.kernels.numba_backend`, i.e. only when the numba backend is used, so
``import numcnn`` never imports numba. Every kernel is ``@njit(parallel=True, cache=True)``: the
first call compiles (and writes a cache next to this file), later processes load the cache.

Conventions, chosen because they let LLVM vectorise the inner loops:

* Arrays are passed **flat (1-D)**, with the offsets computed by hand. The innermost loop always
  walks one output row ``ow = 0 … OW−1`` with unit (or constant) stride; 2-D indexing into strided
  views did not vectorise in the probes.
* An image batch is described by its flat memory plus two *plane strides*: ``plane_c`` and
  ``plane_n``, the element offsets between consecutive channels and consecutive images. Each
  ``(c, n)`` plane must be a contiguous ``H × W`` block -- true both for C-contiguous NCHW input and
  for the channel-major ``(C, N, H, W)`` memory the fast layers hand on.
* Padding is never materialised: the valid range of ``ow`` for a kernel column ``j`` is computed
  once (:func:`valid_columns`) and the rest of the row is written as zeros (im2col) or skipped.
* ``prange`` runs over independent tasks (a kernel offset and image for im2col, a ``(c, n)`` plane
  for col2im and pooling), so no two threads ever write the same element.

Indices follow seed 004 eqs. 15.23–15.24 with stride and padding:
``row = p_row·SH + i − PH``, ``col = p_col·SW + j − PW``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["valid_columns", "im2col_kernel", "col2im_kernel", "max_pool_forward_kernel", "max_pool_backward_kernel"]


@njit(cache=True, inline="always")
def valid_columns(j, width, stride_w, pad_w, out_w):
    """``[lo, hi)``: the output columns ``ow`` whose input column ``ow·SW + j − PW`` lies inside ``[0, W)``."""
    first = pad_w - j  # ow·SW must be >= PW − j
    lo = 0 if first <= 0 else (first + stride_w - 1) // stride_w
    last = width - 1 + pad_w - j  # ow·SW must be <= W − 1 + PW − j
    hi = 0 if last < 0 else min(out_w, last // stride_w + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def copy_run(dst, src, count, stride):
    """``dst[t] = src[t·stride]`` for ``t < count`` (unit stride gets its own loop so it vectorises)."""
    if stride == 1:
        for t in range(count):
            dst[t] = src[t]
    else:
        for t in range(count):
            dst[t] = src[t * stride]


@njit(cache=True, inline="always")
def add_run(dst, src, count, stride):
    """``dst[t·stride] += src[t]`` for ``t < count``."""
    if stride == 1:
        for t in range(count):
            dst[t] += src[t]
    else:
        for t in range(count):
            dst[t * stride] += src[t]


@njit(parallel=True, cache=True)
def im2col_kernel(src, plane_c, plane_n, shape, window, out):
    """``out[c, i, j, n, p, q] = x_padded[n, c, p·SH + i, q·SW + j]`` (kernel-major unfolding).

    ``shape = (C, N, H, W)``, ``window = (KH, KW, SH, SW, PH, PW, OH, OW)``; ``out`` flat, of length
    ``C·KH·KW·N·OH·OW``.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    for task in prange(channels * kernel_h * kernel_w * batch):  # task = ((c·KH + i)·KW + j)·N + n
        n = task % batch
        j = (task // batch) % kernel_w
        i = (task // (batch * kernel_w)) % kernel_h
        c = task // (batch * kernel_w * kernel_h)
        plane = c * plane_c + n * plane_n
        lo, hi = valid_columns(j, width, stride_w, pad_w, out_w)
        for p in range(out_h):
            dst = out[(task * out_h + p) * out_w : (task * out_h + p + 1) * out_w]
            row = p * stride_h + i - pad_h
            if row < 0 or row >= height:  # the whole row of windows lies in the padding
                dst[:] = 0
                continue
            dst[:lo] = 0
            dst[hi:] = 0
            first = plane + row * width + lo * stride_w + j - pad_w  # input pixel under column lo
            copy_run(dst[lo:hi], src[first : first + (hi - lo - 1) * stride_w + 1], hi - lo, stride_w)


@njit(parallel=True, cache=True)
def col2im_kernel(cols, shape, window, out):
    """Adjoint of :func:`im2col_kernel` (eq. 15.49): add every window entry back onto its pixel.

    ``cols`` flat ``(C, KH, KW, N, OH, OW)``; ``out`` flat channel-major ``(C, N, H, W)``, overwritten.
    One task per ``(c, n)`` plane, so the additions of overlapping windows never race.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    plane_size = height * width
    for task in prange(channels * batch):  # task = c·N + n
        c = task // batch
        n = task % batch
        plane = task * plane_size
        out[plane : plane + plane_size] = 0
        for i in range(kernel_h):
            for j in range(kernel_w):
                lo, hi = valid_columns(j, width, stride_w, pad_w, out_w)
                if hi <= lo:
                    continue
                source = (((c * kernel_h + i) * kernel_w + j) * batch + n) * out_h * out_w
                for p in range(out_h):
                    row = p * stride_h + i - pad_h
                    if row < 0 or row >= height:
                        continue
                    first = plane + row * width + lo * stride_w + j - pad_w
                    values = cols[source + p * out_w + lo : source + p * out_w + hi]
                    add_run(out[first : first + (hi - lo - 1) * stride_w + 1], values, hi - lo, stride_w)


@njit(parallel=True, cache=True)
def max_pool_forward_kernel(src, plane_c, plane_n, shape, window, relu, out, argmax):
    """Max pooling (eq. 15.51) of ``relu(x)`` if ``relu`` else ``x``, recording where each maximum was.

    ``out`` flat channel-major ``(C, N, OH, OW)``; ``argmax`` (int32, same layout) holds the flat index
    ``row·W + col`` of the window's *first* maximum in row-major order inside its ``(c, n)`` plane,
    or −1 when no gradient flows (the fused ReLU cut it: maximum <= 0). Padding never wins.

    One output at a time with the running maximum in registers: with a whole row of windows in
    arrays the compiler has to assume they alias the input and re-reads them (probed 4× slower).
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    for task in prange(channels * batch):
        c = task // batch
        n = task % batch
        plane = c * plane_c + n * plane_n
        for p in range(out_h):
            top = p * stride_h - pad_h
            i_lo, i_hi = max(0, -top), min(kernel_h, height - top)  # window rows inside the image
            dst = (task * out_h + p) * out_w
            for q in range(out_w):
                left = q * stride_w - pad_w
                j_lo, j_hi = max(0, -left), min(kernel_w, width - left)
                # Start from the first real pixel, then strict '>' keeps the first maximum.
                where = (top + i_lo) * width + left + j_lo
                best = src[plane + where]
                for i in range(i_lo, i_hi):
                    base = (top + i) * width + left
                    for j in range(j_lo, j_hi):
                        value = src[plane + base + j]
                        if value > best:
                            best = value
                            where = base + j
                if relu and not best > 0:
                    out[dst + q] = 0
                    argmax[dst + q] = -1
                else:
                    out[dst + q] = best
                    argmax[dst + q] = where


@njit(parallel=True, cache=True)
def max_pool_backward_kernel(grad, plane_c, plane_n, argmax, shape, out_size, out):
    """Route each window's gradient to its recorded maximum; overlapping windows add (eq. 15.59).

    ``grad`` flat with plane strides ``plane_c``/``plane_n`` (planes of ``OH·OW``); ``out`` flat
    channel-major ``(C, N, H, W)``, overwritten.
    """
    channels, batch, height, width = shape
    out_h, out_w = out_size
    plane_size = height * width
    pooled_size = out_h * out_w
    for task in prange(channels * batch):
        c = task // batch
        n = task % batch
        image = out[task * plane_size : (task + 1) * plane_size]
        image[:] = 0
        values = grad[c * plane_c + n * plane_n : c * plane_c + n * plane_n + pooled_size]
        positions = argmax[task * pooled_size : (task + 1) * pooled_size]
        for k in range(pooled_size):
            position = positions[k]
            if position >= 0:
                image[position] += values[k]
