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
of ``L = (OH − 1)·Wp + OW`` elements. Every sum above becomes a sum over such runs -- the forward
pass a product ``W_mat · runs`` and the weight gradient dot products of δ's rows with the runs --
which :mod:`numcnn.kernels.numba_blocked` computes with a block of accumulators held in vector
registers. The ``Wp − OW`` extra entries per row are computed and thrown away (forward), or are
zeros in δ so they add nothing (backward).

One task per image (``prange`` over ``n``), or per group of images for the weight gradient; each
task keeps its padded images and accumulators in small thread-local arrays that stay in the L1/L2
cache. Weight gradients are written per group and summed afterwards, so no two threads write the
same element.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from numcnn.kernels.numba_blocked import PRODUCT_BLOCK_VECTORS, blocked_dots, blocked_products
from numcnn.kernels.simd import vadd, veven, vlanes, vload, vodd, vselect_greater, vsplat, vstore, vstore_int32

u64 = np.uint64  # unsigned offsets: no wrap-around test per index, so LLVM vectorises the copies

__all__ = ["conv_forward_direct", "conv_pool_forward_direct", "conv_weight_grad_direct", "conv_input_grad_direct"]


@njit(cache=True, inline="always")
def _load_padded(src, plane, plane_c, shape, padding, padded):
    """Copy image ``n`` (at ``plane``) into the zeroed ``(C, Hp, Wp)`` flat buffer ``padded``."""
    channels, _, height, width = shape
    pad_h, pad_w = padding
    padded_w = width + 2 * pad_w
    padded_plane = (height + 2 * pad_h) * padded_w
    for c in range(channels):
        for h in range(height):
            at = u64(plane + c * plane_c + h * width)
            start = u64(c * padded_plane + (h + pad_h) * padded_w + pad_w)
            for w in range(u64(width)):
                padded[start + w] = src[at + w]


@njit(cache=True, inline="always")
def _load_wide_delta(grad, plane, plane_f, filters, out_size, padded_w, wide):
    """Copy δ of one image into ``(F, L)`` wide rows, zeros in the ``Wp − OW`` gap of each row."""
    out_h, out_w = out_size
    flat = wide.reshape(-1)
    row_len = wide.shape[1]
    for f in range(filters):
        for p in range(out_h):
            at = u64(plane + f * plane_f + p * out_w)
            start = u64(f * row_len + p * padded_w)
            for q in range(u64(out_w)):
                flat[start + q] = grad[at + q]


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
def conv_forward_direct(src, plane_c, plane_n, shape, kernel, padding, weight, bias, relu, out):
    """Forward pass (eq. 15.25), stride 1; ``out`` flat channel-major ``(F, N, OH, OW)``.

    ``weight`` is the ``(F, C·KH·KW)`` matrix ``W_mat``; ``bias`` has ``F`` entries (zeros for none);
    ``relu``: ``max(y, 0)`` is stored (a following ReLU fused into the copy out of the wide rows).
    """
    _channels, batch, height, width = shape
    padded_w = width + 2 * padding[1]
    out_h, out_w = height + 2 * padding[0] - kernel[0] + 1, padded_w - kernel[1] + 1
    zero = out.dtype.type(0)
    rows = _image_rows(shape, kernel, padding, weight)
    for n in prange(batch):
        acc = _conv_image(src, n * plane_n, plane_c, shape, padding, weight, bias, rows).reshape(-1)
        # The rows out of the wide rows, by unsigned offsets: a slice assignment per row, or signed
        # indices (each tested for wrap-around), took twice as long (the stem of resnet_mnist: the
        # copy, 3.2 MB, cost twice its products).
        for f in range(rows[2].shape[0]):
            for p in range(out_h):
                dst = u64(((f * batch + n) * out_h + p) * out_w)
                at = u64(rows[2][f] + p * padded_w)
                if relu:
                    for q in range(u64(out_w)):
                        out[dst + q] = max(acc[at + q], zero)
                else:
                    for q in range(u64(out_w)):
                        out[dst + q] = acc[at + q]


@njit(parallel=True, cache=True)
def conv_weight_grad_direct(
    src, plane_c, plane_n, shape, kernel, padding, grad, grad_plane_f, grad_plane_n, partial, taps_first=False
):
    """Weight gradients (eq. 15.38), stride 1, per group of images: ``partial[g, f, k]``; the caller sums
    over ``g``. ``partial.shape[0]`` sets the groups: ``⌈N / groups⌉`` consecutive images each.

    Each ``∂E/∂W[f, k]`` of one image is the dot product of δ's wide row ``f`` with tap ``k``'s run of
    the padded image; a group's images are the segments of one
    :func:`~numcnn.kernels.numba_blocked.blocked_dots`, so the lanes of its accumulators are added once
    per group, not per image (small planes have short dots). The sums run in ``partial``'s dtype and
    are reordered: equal to the reference up to rounding, the same on any thread count. ``grad`` is δ
    flat with plane strides ``grad_plane_f`` / ``grad_plane_n``.

    ``taps_first``: ``partial[g, k, f]`` instead, the taps as the dots' rows. The dots take four rows
    at a time; a leftover row runs three chains of multiply-adds, too few to hide their latency, so
    the side with fewer leftover rows goes first (LeNet-5's first layer: 25 taps = 6·4 + 1 rather
    than 6 filters = 4 + 2). Each sum runs in the same order either way: the same bits.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    groups = partial.shape[0]
    filters = partial.shape[1] if not taps_first else partial.shape[2]
    per_group = -(-batch // groups)
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    lanes = vlanes(partial)
    rounded = -(-length // lanes) * lanes  # δ's rows are zero past ``length``: the extra products add 0
    image_size = channels * padded_h * padded_w + rounded - length  # a padded image and its tail
    offsets = _tap_offsets(channels, kernel, (padded_h, padded_w))
    delta_rows = np.arange(filters) * rounded
    for g in prange(groups):
        first = g * per_group
        count = max(0, min(per_group, batch - first))
        padded = np.zeros(count * image_size, dtype=partial.dtype)
        wide = np.zeros((count * filters, rounded), dtype=partial.dtype)
        for i in range(count):
            _load_padded(src, (first + i) * plane_n, plane_c, shape, padding, padded[i * image_size :])
            deltas = wide[i * filters : (i + 1) * filters]
            _load_wide_delta(grad, (first + i) * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, deltas)
        partial[g] = 0
        images = np.arange(count)
        delta_shifts, image_shifts = images * filters * rounded, images * image_size
        if taps_first:
            blocked_dots(padded, offsets, image_shifts, wide.reshape(-1), delta_rows, delta_shifts, rounded, partial[g])
        else:
            blocked_dots(wide.reshape(-1), delta_rows, delta_shifts, padded, offsets, image_shifts, rounded, partial[g])


@njit(parallel=True, cache=True)
def conv_input_grad_direct(grad, grad_plane_f, grad_plane_n, shape, kernel, padding, weight, out):
    """Input gradient (eq. 15.49), stride 1: scatter ``W[f, c, i, j]·δ[f]`` onto the padded image, crop.

    For each tap ``k = (c, i, j)`` the run of the padded gradient under it gets ``Σ_f W[f, k] · δ_wide[f]``:
    a product with the taps as its output rows, at the taps' offsets, accumulated
    (:func:`~numcnn.kernels.numba_blocked.blocked_products` with ``accumulate``; four taps' blocks in
    registers, the sum over the filters there, then added into the runs one tap after the other, as
    the runs overlap). ``shape = (C, N, H, W)`` of the input; ``out`` flat channel-major
    ``(C, N, H, W)``, overwritten.
    """
    channels, batch, height, width = shape
    kernel_h, kernel_w = kernel
    pad_h, pad_w = padding
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * pad_h, width + 2 * pad_w
    out_h, out_w = padded_h - kernel_h + 1, padded_w - kernel_w + 1
    length = (out_h - 1) * padded_w + out_w
    block = PRODUCT_BLOCK_VECTORS * vlanes(out)
    rounded = -(-length // block) * block
    # Taps in (i, j, c) order: the four runs a block adds lie in four channels' planes, not one
    # element apart (a load that overlaps a just-stored vector in part stalls until the store is done).
    order = np.arange(channels * kernel_h * kernel_w).reshape(channels, kernel_h * kernel_w).T.copy().reshape(-1)
    offsets = _tap_offsets(channels, kernel, (padded_h, padded_w))[order]
    weight_t = np.ascontiguousarray(weight.T[order])  # (taps, F): the product's weight
    no_bias = np.zeros(weight_t.shape[0], dtype=out.dtype)
    delta_rows = np.arange(filters) * rounded
    for n in prange(batch):
        wide = np.zeros((filters, rounded), dtype=out.dtype)  # zero past ``length``: the extra runs add 0
        _load_wide_delta(grad, n * grad_plane_n, grad_plane_f, filters, (out_h, out_w), padded_w, wide)
        padded = np.zeros(channels * padded_h * padded_w + rounded - length, dtype=out.dtype)
        blocked_products(weight_t, no_bias, wide.reshape(-1), delta_rows, padded, offsets, rounded, True)
        for c in range(channels):
            for h in range(height):
                dst = u64(((c * batch + n) * height + h) * width)
                start = u64((c * padded_h + h + pad_h) * padded_w + pad_w)
                for w in range(u64(width)):
                    out[dst + w] = padded[start + w]


@njit(parallel=True, cache=True)
def conv_pool_forward_direct(src, plane_c, plane_n, shape, kernel, padding, weight, bias, pool, record, out, argmax):
    """Convolution (eq. 15.25, stride 1) → ReLU → max pooling (eq. 15.51) in one pass per image.

    The convolution's output never reaches memory: each image's accumulator rows (still in the
    cache) are pooled directly, with the ReLU folded in as in the fused ReLU → MaxPool2d step.
    ``pool = (KH, KW, SH, SW, PH, PW, POH, POW)`` of the pooling layer; ``out`` flat channel-major
    ``(F, N, POH, POW)``; if ``record``, ``argmax`` (int32, same layout) gets the flat index
    ``row·OW + col`` of each window's first maximum in the *convolution's* output plane, or −1
    where the ReLU cuts the gradient -- exactly what the separate pooling kernel records.
    """
    _channels, batch, height, width = shape
    filters = weight.shape[0]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    conv_h, conv_w = padded_h - kernel[0] + 1, padded_w - kernel[1] + 1
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw, out_h, out_w = pool
    no_padding = pool_ph == 0 and pool_pw == 0
    length = (conv_h - 1) * padded_w + conv_w
    count = length - (pool_kh - 1) * padded_w - (pool_kw - 1)  # window corners with the window inside
    two_by_two = (pool_kh, pool_kw, pool_sh, pool_sw) == (2, 2, 2, 2) and no_padding
    rows = _image_rows(shape, kernel, padding, weight)
    columns = _lane_columns(weight)  # once per call: the 2×2 pooling runs per image and filter
    for n in prange(batch):
        acc = _conv_image(src, n * plane_n, plane_c, shape, padding, weight, bias, rows)
        best = np.empty(max(count, 1), dtype=acc.dtype)  # per-corner maxima (padding-free pooling)
        which = np.empty(max(count, 1), dtype=np.int32)
        for f in range(filters):
            dst = (f * batch + n) * out_h * out_w
            if two_by_two:
                _pool_2x2(acc[f], padded_w, conv_w, (out_h, out_w), record, out, argmax, dst, columns)
            elif no_padding and not record:  # inference: the maxima alone vectorise better
                _window_maxima_values(acc[f], padded_w, (pool_kh, pool_kw), best)
                _pick_pooled(
                    best, which, padded_w, conv_w, (pool_sh, pool_sw), (out_h, out_w), record, out, argmax, dst
                )
            elif no_padding:
                _window_maxima(acc[f], padded_w, conv_w, (pool_kh, pool_kw), best, which)
                _pick_pooled(
                    best, which, padded_w, conv_w, (pool_sh, pool_sw), (out_h, out_w), record, out, argmax, dst
                )
            else:
                _pool_row_scalar(acc[f], padded_w, (conv_h, conv_w), pool, record, out, argmax, dst)


@njit(cache=True)
def _pool_2x2(row, padded_w, conv_w, out_size, record, out, argmax, dst, columns):
    """ReLU → 2×2 stride-2 max pooling of one wide row, the windows written out (the comparisons and
    their order of :func:`numcnn.kernels.numba_kernels.max_pool_2x2_kernel`: row-major, strict '>');
    ``argmax`` gets the offsets in the convolution's ``(OH, OW)`` plane, −1 where the ReLU cuts δ.
    Rows of at least a vector of windows take :func:`_pool_2x2_vectors` (``columns``: :func:`_lane_columns`),
    narrower ones the loops below."""
    out_h, out_w = out_size
    if out_w >= vlanes(row):
        _pool_2x2_vectors(row, padded_w, conv_w, out_size, record, out, argmax, dst, columns)
        return
    if not record:  # the maxima alone: the same values, a loop LLVM vectorises (stride-2 loads)
        zero = row.dtype.type(0)
        for p in range(out_h):
            upper = row[2 * p * padded_w : 2 * p * padded_w + 2 * out_w]
            lower = row[(2 * p + 1) * padded_w : (2 * p + 1) * padded_w + 2 * out_w]
            pooled = out[dst + p * out_w : dst + (p + 1) * out_w]
            for q in range(out_w):
                best = upper[2 * q]
                value = upper[2 * q + 1]
                best = value if value > best else best
                value = lower[2 * q]
                best = value if value > best else best
                value = lower[2 * q + 1]
                best = value if value > best else best
                pooled[q] = best if best > zero else zero
        return
    below = np.int32(conv_w)  # the offset of a window's lower row in the convolution's plane
    for p in range(out_h):
        upper = row[2 * p * padded_w : 2 * p * padded_w + 2 * out_w]
        lower = row[(2 * p + 1) * padded_w : (2 * p + 1) * padded_w + 2 * out_w]
        pooled = out[dst + p * out_w : dst + (p + 1) * out_w]
        places = argmax[dst + p * out_w : dst + (p + 1) * out_w]
        corner = np.int32(2 * p * conv_w)
        for q in range(out_w):
            best = upper[2 * q]
            where = np.int32(0)
            value = upper[2 * q + 1]
            better = value > best
            where = np.int32(1) if better else where
            best = value if better else best
            value = lower[2 * q]
            better = value > best
            where = below if better else where
            best = value if better else best
            value = lower[2 * q + 1]
            better = value > best
            where = below + np.int32(1) if better else where
            best = value if better else best
            alive = best > 0  # the ReLU: zero output, no gradient
            pooled[q] = best if alive else 0
            places[q] = corner + np.int32(2 * q) + where if alive else np.int32(-1)


@njit(cache=True)
def _lane_columns(like):
    """``2·lane`` for each lane of a vector of ``like``'s dtype: a window's first column, from the vector's first."""
    return np.arange(0, 2 * vlanes(like), 2).astype(like.dtype)


@njit(cache=True)
def _pool_2x2_vectors(row, padded_w, conv_w, out_size, record, out, argmax, dst, columns):
    """:func:`_pool_2x2`, a vector of windows at a time: the same comparisons in the same order
    (row-major, strict '>', NaN never wins), so the same maxima and (``record``) places.

    The scalar loop with ``record`` took half of LeNet-5's first layer's fused forward pass (its
    selects between four candidates and their places did not vectorise; same process, 300
    alternations: 0.41 → 0.29 ms for the layer, 0.93–0.95 of the training step; without ``record``,
    which LLVM did vectorise, 0.94 of the layer). Here :func:`~numcnn.kernels.simd.veven` /
    :func:`~numcnn.kernels.simd.vodd` split two vectors of a row into the windows' left and right
    columns, and the places are formed as floats (whole numbers far below 2²⁴: exact) and stored
    as int32. Each row is whole vectors, the last one flush with its end (an overlap writes the
    same values twice); rows narrower than a vector take the scalar loop.
    """
    out_h, out_w = out_size
    lanes = vlanes(row)
    zero = vsplat(row.dtype.type(0))
    one = vsplat(row.dtype.type(1))
    lower_left = vsplat(row.dtype.type(conv_w))  # offsets in the convolution's plane
    lower_right = vsplat(row.dtype.type(conv_w + 1))
    cut = vsplat(row.dtype.type(-1))  # where the ReLU cuts the gradient
    for p in range(out_h):
        upper_at = 2 * p * padded_w
        lower_at = upper_at + padded_w
        q = 0
        while q < out_w:
            q = min(q, out_w - lanes)
            left, right = vload(row, upper_at + 2 * q), vload(row, upper_at + 2 * q + lanes)
            best, candidate = veven(left, right), vodd(left, right)
            where = vselect_greater(candidate, best, one, zero)
            best = vselect_greater(candidate, best, candidate, best)
            left, right = vload(row, lower_at + 2 * q), vload(row, lower_at + 2 * q + lanes)
            candidate = veven(left, right)
            where = vselect_greater(candidate, best, lower_left, where)
            best = vselect_greater(candidate, best, candidate, best)
            candidate = vodd(left, right)
            where = vselect_greater(candidate, best, lower_right, where)
            best = vselect_greater(candidate, best, candidate, best)
            at = dst + p * out_w + q
            vstore(out, at, vselect_greater(best, zero, best, zero))
            if record:
                place = vadd(vadd(vsplat(row.dtype.type(2 * p * conv_w + 2 * q)), vload(columns, 0)), where)
                vstore_int32(argmax, at, vselect_greater(best, zero, place, cut))
            q += lanes


@njit(cache=True)
def _window_maxima(row, padded_w, conv_w, pool_kernel, best, which):
    """For *every* window corner ``t`` of a wide row: its maximum and the offset of its first maximum.

    Whole contiguous runs, one per window offset (row-major order; strict '>' keeps the first
    maximum): vectorised, unlike a loop over the pooled outputs with their stride. Computing all
    corners costs ``stride²`` times more comparisons and still wins (probed 1.4×).
    """
    count = best.shape[0]
    best[:] = row[:count]
    which[:] = 0
    for i in range(pool_kernel[0]):
        for j in range(pool_kernel[1]):
            if i == 0 and j == 0:
                continue
            shifted = row[i * padded_w + j : i * padded_w + j + count]
            code = np.int32(i * conv_w + j)  # the offset in the convolution's own (OH, OW) plane
            for t in range(count):
                value = shifted[t]
                better = value > best[t]
                best[t] = value if better else best[t]
                which[t] = code if better else which[t]


@njit(cache=True)
def _window_maxima_values(row, padded_w, pool_kernel, best):
    """:func:`_window_maxima` without the offsets, for inference (nothing to route a gradient to)."""
    count = best.shape[0]
    best[:] = row[:count]
    for i in range(pool_kernel[0]):
        for j in range(pool_kernel[1]):
            if i == 0 and j == 0:
                continue
            shifted = row[i * padded_w + j : i * padded_w + j + count]
            for t in range(count):
                best[t] = max(best[t], shifted[t])


@njit(cache=True)
def _pick_pooled(best, which, padded_w, conv_w, pool_stride, out_size, record, out, argmax, dst):
    """The pooled outputs are the window corners ``t = p·SH·Wp + q·SW``; apply the ReLU there."""
    out_h, out_w = out_size
    for p in range(out_h):
        for q in range(out_w):
            t = p * pool_stride[0] * padded_w + q * pool_stride[1]
            value = best[t]
            alive = value > 0  # the ReLU: zero output, no gradient
            out[dst + p * out_w + q] = value if alive else 0
            if record:
                corner = p * pool_stride[0] * conv_w + q * pool_stride[1]
                argmax[dst + p * out_w + q] = corner + which[t] if alive else -1


@njit(cache=True)
def _pool_row_scalar(row_acc, padded_w, conv_size, pool, record, out, argmax, dst):
    """Pooling with padding, one output at a time (windows may overhang the convolution's output)."""
    conv_h, conv_w = conv_size
    pool_kh, pool_kw, pool_sh, pool_sw, pool_ph, pool_pw, out_h, out_w = pool
    for p in range(out_h):
        top = p * pool_sh - pool_ph
        i_lo, i_hi = max(0, -top), min(pool_kh, conv_h - top)
        for q in range(out_w):
            left = q * pool_sw - pool_pw
            j_lo, j_hi = max(0, -left), min(pool_kw, conv_w - left)
            where = (top + i_lo) * conv_w + left + j_lo
            best = row_acc[(top + i_lo) * padded_w + left + j_lo]
            for i in range(i_lo, i_hi):
                for j in range(j_lo, j_hi):
                    value = row_acc[(top + i) * padded_w + left + j]
                    better = value > best
                    where = ((top + i) * conv_w + left + j) if better else where
                    best = value if better else best
            alive = best > 0  # the ReLU: zero output, no gradient
            out[dst + p * out_w + q] = best if alive else 0
            if record:
                argmax[dst + p * out_w + q] = where if alive else -1


@njit(cache=True)
def _image_rows(shape, kernel, padding, weight):
    """What every image's :func:`_conv_image` shares: the taps' offsets, the wide rows' length ``L``
    rounded up to whole register blocks (``L'``), and where each filter's row starts in the output."""
    padded_h, padded_w = shape[2] + 2 * padding[0], shape[3] + 2 * padding[1]
    length = (padded_h - kernel[0]) * padded_w + padded_w - kernel[1] + 1
    block = PRODUCT_BLOCK_VECTORS * vlanes(weight)
    rounded = -(-length // block) * block
    return _tap_offsets(shape[0], kernel, (padded_h, padded_w)), rounded, np.arange(weight.shape[0]) * rounded


@njit(cache=True)
def _conv_image(src, plane, plane_c, shape, padding, weight, bias, rows):
    """The wide ``(F, L')`` output rows of one image (see the module docstring), by
    :func:`~numcnn.kernels.numba_blocked.blocked_products` over the taps' runs; ``rows`` is
    :func:`_image_rows`; ``L' >= L`` is ``L`` rounded up to whole register blocks, and the entries
    past ``L`` are to be ignored."""
    offsets, rounded, starts = rows
    channels, _, height, width = shape
    padded_size = (height + 2 * padding[0]) * (width + 2 * padding[1])
    # The last block reads up to ``L' − L`` entries past the last tap's run (at most one block): zeros.
    padded = np.zeros(channels * padded_size + PRODUCT_BLOCK_VECTORS * vlanes(weight), dtype=weight.dtype)
    _load_padded(src, plane, plane_c, shape, padding, padded)
    acc = np.empty(weight.shape[0] * rounded, dtype=weight.dtype)
    blocked_products(weight, bias, padded, offsets, acc, starts, rounded)
    return acc.reshape(weight.shape[0], rounded)
