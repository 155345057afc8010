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

__all__ = [
    "im2col_kernel",
    "col2im_kernel",
    "im2col_images_kernel",
    "col2im_images_kernel",
    "max_pool_forward_kernel",
    "max_pool_backward_kernel",
    "max_pool_2x2_kernel",
    "relu_forward_kernel",
    "relu_backward_kernel",
    "sgd_update_kernel",
]


@njit(cache=True, inline="always")
def valid_columns(j, width, stride_w, pad_w, out_w):
    """``[lo, hi)``: the output columns ``ow`` whose input column ``ow·SW + j − PW`` lies inside ``[0, W)``."""
    first = pad_w - j  # ow·SW must be >= PW − j
    lo = 0 if first <= 0 else (first + stride_w - 1) // stride_w
    last = width - 1 + pad_w - j  # ow·SW must be <= W − 1 + PW − j
    hi = 0 if last < 0 else min(out_w, last // stride_w + 1)
    return lo, max(lo, hi)


# Unsigned offsets: numba checks every *signed* index for a negative value (Python's wrap-around),
# a branch that keeps LLVM from vectorising the loop; with uint64 offsets the check disappears
# (probed 2.5× faster). Mixing uint64 with int64 would give float64, hence the explicit casts.
u64 = np.uint64


@njit(parallel=True, cache=True)
def im2col_kernel(src, plane_c, plane_n, shape, window, out):
    """``out[c, i, j, n, p, q] = x_padded[n, c, p·SH + i, q·SW + j]`` (kernel-major unfolding).

    ``shape = (C, N, H, W)``, ``window = (KH, KW, SH, SW, PH, PW, OH, OW)``; ``out`` flat, of length
    ``C·KH·KW·N·OH·OW``.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w, stride_w, pad_w, out_w = window[0], window[1], window[3], window[5], window[7]
    # One task per row (c, i, j) of the unfolding, all images: for layers with small planes (a 4×4
    # input, say) a task per image and row cost more in bookkeeping than in copying.
    for tap in prange(channels * kernel_h * kernel_w):  # tap = (c·KH + i)·KW + j
        j = tap % kernel_w
        i = (tap // kernel_w) % kernel_h
        c = tap // (kernel_w * kernel_h)
        lo, hi = valid_columns(j, width, stride_w, pad_w, out_w)
        for n in range(batch):
            _unfold_row(src, plane_c, plane_n, height, width, window, c, i, j, n, tap * batch + n, lo, hi, out)


@njit(cache=True, inline="always")
def _unfold_row(src, plane_c, plane_n, height, width, window, c, i, j, n, task, lo, hi, out):
    """The ``OH·OW`` entries of unfolding row ``(c, i, j)`` for image ``n`` (flat task ``tap·N + n``)."""
    _, _, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    for p in range(out_h):
        dst = u64((task * out_h + p) * out_w)
        row = p * stride_h + i - pad_h
        if row < 0 or row >= height:  # the whole row of windows lies in the padding
            lo_p, hi_p = out_w, out_w
        else:
            lo_p, hi_p = lo, hi
        for q in range(u64(0), u64(lo_p)):
            out[dst + q] = 0
        if hi_p > lo_p:
            # input pixel under output column q: first + q·SW (first may be "negative" before lo)
            first = u64(c * plane_c + n * plane_n + row * width + lo * stride_w + j - pad_w)
            run = dst + u64(lo)
            if stride_w == 1:
                for t in range(u64(0), u64(hi_p - lo_p)):
                    out[run + t] = src[first + t]
            else:
                step = u64(stride_w)
                for t in range(u64(0), u64(hi_p - lo_p)):
                    out[run + t] = src[first + t * step]
        for q in range(u64(hi_p), u64(out_w)):
            out[dst + q] = 0


@njit(parallel=True, cache=True)
def col2im_kernel(cols, shape, window, out):
    """Adjoint of :func:`im2col_kernel` (eq. 15.49): add every window entry back onto its pixel.

    ``cols`` flat ``(C, KH, KW, N, OH, OW)``; ``out`` flat channel-major ``(C, N, H, W)``, overwritten.
    Each ``(c, n)`` plane is one task's, so the additions of overlapping windows never race.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = window[0], window[1]
    plane_size = height * width
    # Small planes: several images per task, so that bookkeeping does not outweigh the additions.
    per_task = max(1, min(batch, 4096 // max(1, plane_size * kernel_h * kernel_w)))
    blocks = (batch + per_task - 1) // per_task
    for block in prange(channels * blocks):
        c = block // blocks
        first_image = (block % blocks) * per_task
        for n in range(first_image, min(batch, first_image + per_task)):
            _fold_plane(cols, c, n, batch, height, width, window, out, u64((c * batch + n) * plane_size))


@njit(cache=True, inline="always")
def _fold_plane(cols, c, n, batch, height, width, window, out, plane):
    """Plane ``(c, n)`` of :func:`col2im_kernel`'s output, at flat offset ``plane`` of ``out``; ``cols``
    holds ``batch`` images."""
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    plane_size = height * width
    for k in range(u64(0), u64(plane_size)):
        out[plane + k] = 0
    for i in range(kernel_h):
        for j in range(kernel_w):
            lo, hi = valid_columns(j, width, stride_w, pad_w, out_w)
            source = (((c * kernel_h + i) * kernel_w + j) * batch + n) * out_h * out_w
            for p in range(out_h):
                row = p * stride_h + i - pad_h
                if row < 0 or row >= height or hi <= lo:
                    continue
                first = plane + u64(row * width + lo * stride_w + j - pad_w)
                values = u64(source + p * out_w + lo)
                step = u64(stride_w)
                for t in range(u64(0), u64(hi - lo)):
                    out[first + t * step] += cols[values + t]


@njit(nogil=True, cache=True)
def im2col_images_kernel(src, plane_c, plane_n, shape, window, first, count, out):
    """:func:`im2col_kernel` for images ``first … first + count − 1`` only, on the calling thread:
    ``out`` flat ``(C, KH, KW, count, OH, OW)``. For the cache-blocked convolutions, which unfold a
    few images at a time, each thread its own (numba releases the GIL here)."""
    channels, _, height, width = shape
    kernel_h, kernel_w, stride_w, pad_w, out_w = window[0], window[1], window[3], window[5], window[7]
    for tap in range(channels * kernel_h * kernel_w):
        j = tap % kernel_w
        i = (tap // kernel_w) % kernel_h
        c = tap // (kernel_w * kernel_h)
        lo, hi = valid_columns(j, width, stride_w, pad_w, out_w)
        for m in range(count):
            _unfold_row(src, plane_c, plane_n, height, width, window, c, i, j, first + m, tap * count + m, lo, hi, out)


@njit(nogil=True, cache=True)
def col2im_images_kernel(cols, shape, window, first, count, out):
    """The adjoint of :func:`im2col_images_kernel`: ``cols`` flat ``(C, KH, KW, count, OH, OW)`` folded onto
    the planes of images ``first … first + count − 1`` of ``out`` (flat channel-major ``(C, N, H, W)``)."""
    channels, batch, height, width = shape
    plane_size = height * width
    for c in range(channels):
        for m in range(count):
            _fold_plane(cols, c, m, count, height, width, window, out, u64((c * batch + first + m) * plane_size))


@njit(parallel=True, cache=True)
def max_pool_forward_kernel(src, plane_c, plane_n, shape, window, relu, record, out, argmax):
    """Max pooling (eq. 15.51) of ``relu(x)`` if ``relu`` else ``x``, recording where each maximum was.

    ``out`` flat channel-major ``(C, N, OH, OW)``; if ``record``, ``argmax`` (int32, same layout) gets the
    flat index ``row·W + col`` of the window's *first* maximum in row-major order inside its
    ``(c, n)`` plane, or −1 when no gradient flows (the fused ReLU cut it: maximum <= 0). Padding
    never wins. Inference passes ``record=False``: backward will not run, so nothing is recorded.

    One output at a time with the running maximum in registers (a row of windows kept in arrays
    was slower: the compiler must assume they alias the input). Windows that lie wholly inside
    the image -- all but a border -- skip the clipping arithmetic.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w = window
    inner_lo, inner_hi = valid_columns(0, width - kernel_w + 1, stride_w, pad_w, out_w)  # q with a whole window row
    for task in prange(channels * batch):
        c = task // batch
        n = task % batch
        plane = c * plane_c + n * plane_n
        for p in range(out_h):
            top = p * stride_h - pad_h
            i_lo, i_hi = max(0, -top), min(kernel_h, height - top)  # window rows inside the image
            dst = u64((task * out_h + p) * out_w)
            for q in range(out_w):
                left = q * stride_w - pad_w
                if inner_lo <= q < inner_hi:
                    j_lo, j_hi = 0, kernel_w
                else:
                    j_lo, j_hi = max(0, -left), min(kernel_w, width - left)
                # Start from the first real pixel, then strict '>' keeps the first maximum.
                corner = (top + i_lo) * width + left
                where = corner + j_lo
                best = src[u64(plane + where)]
                for i in range(i_lo, i_hi):
                    row = u64(plane + corner + (i - i_lo) * width)
                    for j in range(u64(j_lo), u64(j_hi)):
                        value = src[row + j]
                        # Selects, not a branch: on real data which pixel wins is unpredictable,
                        # and a mispredicted branch per window costs more than the comparisons.
                        better = value > best
                        where = (corner + (i - i_lo) * width + np.int64(j)) if better else where
                        best = value if better else best
                if relu and not best > 0:
                    best = 0
                    where = -1
                out[dst + u64(q)] = best
                if record:
                    argmax[dst + u64(q)] = where


@njit(parallel=True, cache=True)
def max_pool_2x2_kernel(src, plane_c, plane_n, shape, out_size, relu, record, out, argmax):
    """:func:`max_pool_forward_kernel` for the commonest window: 2×2, stride 2, no padding.

    The same comparisons in the same order (row-major, strict '>'), written out for the four
    pixels, so that the loop over a row of windows has no inner loops and LLVM vectorises it
    (probed about 5× faster on the exercise 15.6 layers).
    """
    channels, batch, _, width = shape
    out_h, out_w = out_size
    for task in prange(channels * batch):
        c = task // batch
        n = task % batch
        plane = u64(c * plane_c + n * plane_n)
        for p in range(out_h):
            top = u64(2 * p * width)
            dst = u64((task * out_h + p) * out_w)
            for q in range(u64(out_w)):
                corner = top + u64(2) * q
                best = src[plane + corner]
                where = np.int64(corner)
                value = src[plane + corner + u64(1)]
                better = value > best
                where = np.int64(corner + u64(1)) if better else where
                best = value if better else best
                value = src[plane + corner + u64(width)]
                better = value > best
                where = np.int64(corner + u64(width)) if better else where
                best = value if better else best
                value = src[plane + corner + u64(width + 1)]
                better = value > best
                where = np.int64(corner + u64(width + 1)) if better else where
                best = value if better else best
                if relu and not best > 0:
                    best = 0
                    where = -1
                out[dst + q] = best
                if record:
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
        plane = u64(task * plane_size)
        for k in range(u64(0), u64(plane_size)):
            out[plane + k] = 0
        source = u64(c * plane_c + n * plane_n)
        index = u64(task * pooled_size)
        for k in range(u64(0), u64(pooled_size)):
            position = argmax[index + k]
            if position >= 0:
                out[plane + u64(position)] += grad[source + k]


@njit(parallel=True, cache=True)
def relu_forward_kernel(src, plane_c, plane_n, shape, out):
    """``out = max(x, 0)``, flat channel-major ``(C, N, H, W)``; NaN stays NaN (as ``np.maximum``), so a
    diverging run still sees it."""
    channels, batch, height, width = shape
    plane = height * width
    for task in prange(channels * batch):
        start = u64((task // batch) * plane_c + (task % batch) * plane_n)
        dst = u64(task * plane)
        for k in range(u64(plane)):
            value = src[start + k]
            out[dst + k] = 0 if value <= 0 else value


@njit(parallel=True, cache=True)
def add_relu_kernel(first, first_c, first_n, second, second_c, second_n, shape, out):
    """``out = max(a + b, 0)``, flat channel-major ``(C, N, H, W)``; ``a`` and ``b`` in any plane
    layout (their ``plane_c`` / ``plane_n`` strides). One pass where the sum and the ReLU took two."""
    channels, batch, height, width = shape
    plane = height * width
    for task in prange(channels * batch):
        c, n = task // batch, task % batch
        a = u64(c * first_c + n * first_n)
        b = u64(c * second_c + n * second_n)
        dst = u64(task * plane)
        for k in range(u64(plane)):
            value = first[a + k] + second[b + k]
            out[dst + k] = 0 if value <= 0 else value


@njit(parallel=True, cache=True)
def relu_backward_kernel(grad, plane_c, plane_n, output, shape, out):
    """``∂E/∂x = δ · [y > 0]`` with ``y`` (the forward output) flat channel-major; ``out`` likewise."""
    channels, batch, height, width = shape
    plane = height * width
    for task in prange(channels * batch):
        start = u64((task // batch) * plane_c + (task % batch) * plane_n)
        dst = u64(task * plane)
        for k in range(u64(plane)):
            out[dst + k] = grad[start + k] * (1 if output[dst + k] > 0 else 0)


@njit(parallel=True, cache=True)
def sgd_update_kernel(param, grad, velocity, lr, momentum, weight_decay, use_velocity):
    """:meth:`numcnn.kernels.interface.Backend.sgd_update` on flat arrays in one pass over memory
    (NumPy's four in-place operations read and write the parameters and the velocity ten times over:
    2.0 against 0.45 ms for SK-2's 1.7M parameters, two threads). The scalars come in the arrays'
    dtype and nothing is fused (numba leaves ``a·b + c`` as two roundings without ``fastmath``),
    so the bits equal NumPy's. ``velocity`` is ignored unless ``use_velocity``."""
    for i in prange(param.shape[0]):
        direction = grad[i]
        if weight_decay != 0:
            direction = direction + weight_decay * param[i]
        if use_velocity:
            direction = velocity[i] * momentum + direction
            velocity[i] = direction
        param[i] = param[i] - lr * direction
