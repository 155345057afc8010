"""Convolutions with the filters in the vector lanes: any stride, no wasted positions.

The direct kernels of :mod:`numcnn.kernels.numba_conv` put *positions* in the vector lanes: a
filter's output is computed over "wide" rows of ``Wp`` entries of which only ``OW`` are kept, and a
stride would leave gaps in the runs they read. On small planes the waste is large -- LeNet-5's
second layer computes 144 entries for 100 outputs (rows 14 wide for 10 outputs, rounded up to whole
register blocks), ``resnet_mnist``'s 7×7 layers 72 for 49 -- and strided convolutions fall back to
im2col + GEMM. Here the lanes hold *filters* instead (eight float32 or four float64 per vector), and
the positions are a list of offsets into the padded image, so a stride is only another list:

* eq. 15.25, forward: ``y[p, f] = b[f] + Σ_k W[k, f] · x_pad[pos[p] + off[k]]``, with ``pos[p] = (oh·SH)·Wp
  + ow·SW`` and ``off[k] = (c·Hp + i)·Wp + j`` for ``k = (c, i, j)``. A block of six positions × two
  vectors of filters (twelve accumulators) stays in registers while ``k`` runs: per tap two vector
  loads of ``W`` and six broadcasts of single pixels for twelve multiply-adds
  (:func:`lane_products`).
* eq. 15.38, weight gradient: ``∂E/∂W[k, f] = Σ_{n,p} x_pad[pos[p] + off[k]] · δ[p, f]``: a block of six
  taps × two vectors of filters, the sum over the images and positions of a group in registers
  (:func:`lane_dots`).
* eq. 15.49, input gradient: ``∂E/∂x_pad[pos[p] + off(i, j), c] += Σ_f δ[p, f] · W[f, c, i, j]``: here the
  *input channels* are in the lanes (a channels-last ``(Hp·Wp, C)`` gradient), a block of six
  positions × two vectors of channels summed over ``f`` in registers, then added into the six
  pixels under tap ``(i, j)`` (:func:`lane_scatter`; a block's six pixels are distinct, so its adds
  never overlap).

Filters (and, for the input gradient, channels) are padded with zeros to whole vectors, and
positions and taps to whole blocks by repeating the last one; what the padding computes is never
read. Each multiply-add is fused and the forward pass sums the taps in the order of
:func:`numcnn.kernels.numba_blocked.blocked_products`, so its outputs equal the wide-row kernel's
bit for bit; the gradients sum in another order (equal to the reference up to rounding, the same on
any thread count).

Per image (``prange``; per group of images for the weight gradient) the padded image, the block
outputs and the transposes to and from the backend's channel-major ``(C, N, H, W)`` arrays stay in
small thread-local buffers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from numcnn.kernels.numba_conv import _load_padded, _tap_offsets
from numcnn.kernels.simd import vadd, vfma, vlanes, vload, vsplat, vsplat_at, vstore, vtranspose_copy

__all__ = [
    "BLOCK",
    "conv_forward_lanes",
    "conv_pool_forward_lanes",
    "conv_weight_grad_lanes",
    "conv_input_grad_lanes",
    "lane_products",
    "lane_dots",
    "lane_scatter",
    "pool_image",
    "store_image",
    "channels_first",
    "channels_last",
]

u64 = np.uint64  # unsigned offsets: no wrap-around test per index (see numcnn.kernels.numba_conv)

#: Positions (or taps) per register block.
BLOCK = 6


@njit(cache=True, nogil=True)
def lane_products(weight, bias, source, offsets, positions, out):
    """``out[p·F + f] = bias[f] + Σ_k weight[k·F + f] · source[positions[p] + offsets[k]]``.

    Shapes: ``weight`` flat ``(K, F)``, ``bias`` ``(F,)`` with ``F`` a multiple of the lanes,
    ``offsets`` ``(K,)``, ``positions`` ``(P,)`` with ``P`` a multiple of :data:`BLOCK`; ``out`` flat
    ``(P, F)``. Pairs of filter vectors first, then a last single vector.
    """
    lanes = vlanes(out)
    filters = bias.shape[0]
    taps = offsets.shape[0]
    count = positions.shape[0]
    pairs_end = filters - filters % (2 * lanes)
    for f in range(0, pairs_end, 2 * lanes):
        b0, b1 = vload(bias, f), vload(bias, f + lanes)
        for p in range(0, count, BLOCK):
            s0, s1, s2 = positions[p], positions[p + 1], positions[p + 2]
            s3, s4, s5 = positions[p + 3], positions[p + 4], positions[p + 5]
            a00, a01, a10, a11, a20, a21 = b0, b1, b0, b1, b0, b1
            a30, a31, a40, a41, a50, a51 = b0, b1, b0, b1, b0, b1
            for k in range(taps):
                w0, w1 = vload(weight, k * filters + f), vload(weight, k * filters + f + lanes)
                o = offsets[k]
                x = vsplat_at(source, s0 + o)
                a00, a01 = vfma(w0, x, a00), vfma(w1, x, a01)
                x = vsplat_at(source, s1 + o)
                a10, a11 = vfma(w0, x, a10), vfma(w1, x, a11)
                x = vsplat_at(source, s2 + o)
                a20, a21 = vfma(w0, x, a20), vfma(w1, x, a21)
                x = vsplat_at(source, s3 + o)
                a30, a31 = vfma(w0, x, a30), vfma(w1, x, a31)
                x = vsplat_at(source, s4 + o)
                a40, a41 = vfma(w0, x, a40), vfma(w1, x, a41)
                x = vsplat_at(source, s5 + o)
                a50, a51 = vfma(w0, x, a50), vfma(w1, x, a51)
            at = p * filters + f
            _store_pair(out, at, lanes, a00, a01)
            _store_pair(out, at + filters, lanes, a10, a11)
            _store_pair(out, at + 2 * filters, lanes, a20, a21)
            _store_pair(out, at + 3 * filters, lanes, a30, a31)
            _store_pair(out, at + 4 * filters, lanes, a40, a41)
            _store_pair(out, at + 5 * filters, lanes, a50, a51)
    if pairs_end < filters:  # one vector of filters left
        f = pairs_end
        b0 = vload(bias, f)
        for p in range(0, count, BLOCK):
            s0, s1, s2 = positions[p], positions[p + 1], positions[p + 2]
            s3, s4, s5 = positions[p + 3], positions[p + 4], positions[p + 5]
            a0, a1, a2, a3, a4, a5 = b0, b0, b0, b0, b0, b0
            for k in range(taps):
                w0 = vload(weight, k * filters + f)
                o = offsets[k]
                a0 = vfma(w0, vsplat_at(source, s0 + o), a0)
                a1 = vfma(w0, vsplat_at(source, s1 + o), a1)
                a2 = vfma(w0, vsplat_at(source, s2 + o), a2)
                a3 = vfma(w0, vsplat_at(source, s3 + o), a3)
                a4 = vfma(w0, vsplat_at(source, s4 + o), a4)
                a5 = vfma(w0, vsplat_at(source, s5 + o), a5)
            at = p * filters + f
            vstore(out, at, a0)
            vstore(out, at + filters, a1)
            vstore(out, at + 2 * filters, a2)
            vstore(out, at + 3 * filters, a3)
            vstore(out, at + 4 * filters, a4)
            vstore(out, at + 5 * filters, a5)


@njit(cache=True, nogil=True, inline="always")
def _store_pair(out, at, lanes, a0, a1):
    vstore(out, at, a0)
    vstore(out, at + lanes, a1)


@njit(cache=True, nogil=True)
def lane_dots(source, shifts, offsets, positions, delta, filters, out):
    """``out[k·F + f] += Σ_s Σ_p source[shifts[s] + positions[p] + offsets[k]] · delta[(s·P + p)·F + f]``.

    Shapes: ``shifts`` ``(S,)`` (the images of a group), ``offsets`` ``(K,)`` with ``K`` a multiple of
    :data:`BLOCK`, ``positions`` ``(P,)``, ``delta`` flat ``(S·P, F)``, ``out`` flat ``(K, F)``; ``F``
    a multiple of the lanes. Pairs of filter vectors, then a last single vector (its own loop: an
    offset held for "the second vector or not" costs the pairs' loop a register, and it spills).
    """
    lanes = vlanes(out)
    taps = offsets.shape[0]
    count = positions.shape[0]
    zero = vsplat(out.dtype.type(0))
    pairs_end = filters - filters % (2 * lanes)
    for f in range(0, pairs_end, 2 * lanes):
        for k in range(0, taps, BLOCK):
            o0, o1, o2 = offsets[k], offsets[k + 1], offsets[k + 2]
            o3, o4, o5 = offsets[k + 3], offsets[k + 4], offsets[k + 5]
            a00, a01, a10, a11, a20, a21 = zero, zero, zero, zero, zero, zero
            a30, a31, a40, a41, a50, a51 = zero, zero, zero, zero, zero, zero
            for s in range(shifts.shape[0]):
                rows = s * count * filters + f
                shift = shifts[s]
                for p in range(count):
                    d0 = vload(delta, rows + p * filters)
                    d1 = vload(delta, rows + p * filters + lanes)
                    at = shift + positions[p]
                    x = vsplat_at(source, at + o0)
                    a00, a01 = vfma(d0, x, a00), vfma(d1, x, a01)
                    x = vsplat_at(source, at + o1)
                    a10, a11 = vfma(d0, x, a10), vfma(d1, x, a11)
                    x = vsplat_at(source, at + o2)
                    a20, a21 = vfma(d0, x, a20), vfma(d1, x, a21)
                    x = vsplat_at(source, at + o3)
                    a30, a31 = vfma(d0, x, a30), vfma(d1, x, a31)
                    x = vsplat_at(source, at + o4)
                    a40, a41 = vfma(d0, x, a40), vfma(d1, x, a41)
                    x = vsplat_at(source, at + o5)
                    a50, a51 = vfma(d0, x, a50), vfma(d1, x, a51)
            at = k * filters + f
            _add_pair(out, at, lanes, a00, a01, True)
            _add_pair(out, at + filters, lanes, a10, a11, True)
            _add_pair(out, at + 2 * filters, lanes, a20, a21, True)
            _add_pair(out, at + 3 * filters, lanes, a30, a31, True)
            _add_pair(out, at + 4 * filters, lanes, a40, a41, True)
            _add_pair(out, at + 5 * filters, lanes, a50, a51, True)
    if pairs_end < filters:
        f = pairs_end
        for k in range(0, taps, BLOCK):
            o0, o1, o2 = offsets[k], offsets[k + 1], offsets[k + 2]
            o3, o4, o5 = offsets[k + 3], offsets[k + 4], offsets[k + 5]
            a0, a1, a2, a3, a4, a5 = zero, zero, zero, zero, zero, zero
            for s in range(shifts.shape[0]):
                rows = s * count * filters + f
                shift = shifts[s]
                for p in range(count):
                    d0 = vload(delta, rows + p * filters)
                    at = shift + positions[p]
                    a0 = vfma(d0, vsplat_at(source, at + o0), a0)
                    a1 = vfma(d0, vsplat_at(source, at + o1), a1)
                    a2 = vfma(d0, vsplat_at(source, at + o2), a2)
                    a3 = vfma(d0, vsplat_at(source, at + o3), a3)
                    a4 = vfma(d0, vsplat_at(source, at + o4), a4)
                    a5 = vfma(d0, vsplat_at(source, at + o5), a5)
            at = k * filters + f
            _add_pair(out, at, lanes, a0, a0, False)
            _add_pair(out, at + filters, lanes, a1, a1, False)
            _add_pair(out, at + 2 * filters, lanes, a2, a2, False)
            _add_pair(out, at + 3 * filters, lanes, a3, a3, False)
            _add_pair(out, at + 4 * filters, lanes, a4, a4, False)
            _add_pair(out, at + 5 * filters, lanes, a5, a5, False)


@njit(cache=True, nogil=True, inline="always")
def _add_pair(out, at, lanes, a0, a1, pair):
    vstore(out, at, vadd(vload(out, at), a0))
    if pair:
        vstore(out, at + lanes, vadd(vload(out, at + lanes), a1))


@njit(cache=True, nogil=True)
def lane_scatter(weight, delta, delta_row, positions, tap_offsets, channels, out):
    """``out[(positions[p] + tap_offsets[t])·C + c] += Σ_f delta[f·delta_row + p] · weight[(t·F + f)·C + c]``.

    Shapes: ``weight`` flat ``(T, F, C)`` (``T = KH·KW`` spatial taps), ``delta`` flat ``(F, delta_row)``
    with ``delta_row`` ≥ ``P``, ``positions`` ``(P,)`` with ``P`` a multiple of :data:`BLOCK`, ``out``
    flat channels-last; ``C`` a multiple of the lanes. The taps run one after the other, as their
    pixels overlap; within a block the six positions' pixels are distinct.
    """
    lanes = vlanes(out)
    count = positions.shape[0]
    filters = weight.shape[0] // (tap_offsets.shape[0] * channels)
    zero = vsplat(out.dtype.type(0))
    pairs_end = channels - channels % (2 * lanes)
    for t in range(tap_offsets.shape[0]):
        shift = tap_offsets[t]
        for c in range(0, pairs_end, 2 * lanes):
            for p in range(0, count, BLOCK):
                a00, a01, a10, a11, a20, a21 = zero, zero, zero, zero, zero, zero
                a30, a31, a40, a41, a50, a51 = zero, zero, zero, zero, zero, zero
                for f in range(filters):
                    at = (t * filters + f) * channels + c
                    w0, w1 = vload(weight, at), vload(weight, at + lanes)
                    row = f * delta_row + p
                    x = vsplat_at(delta, row)
                    a00, a01 = vfma(w0, x, a00), vfma(w1, x, a01)
                    x = vsplat_at(delta, row + 1)
                    a10, a11 = vfma(w0, x, a10), vfma(w1, x, a11)
                    x = vsplat_at(delta, row + 2)
                    a20, a21 = vfma(w0, x, a20), vfma(w1, x, a21)
                    x = vsplat_at(delta, row + 3)
                    a30, a31 = vfma(w0, x, a30), vfma(w1, x, a31)
                    x = vsplat_at(delta, row + 4)
                    a40, a41 = vfma(w0, x, a40), vfma(w1, x, a41)
                    x = vsplat_at(delta, row + 5)
                    a50, a51 = vfma(w0, x, a50), vfma(w1, x, a51)
                _add_pair(out, (positions[p] + shift) * channels + c, lanes, a00, a01, True)
                _add_pair(out, (positions[p + 1] + shift) * channels + c, lanes, a10, a11, True)
                _add_pair(out, (positions[p + 2] + shift) * channels + c, lanes, a20, a21, True)
                _add_pair(out, (positions[p + 3] + shift) * channels + c, lanes, a30, a31, True)
                _add_pair(out, (positions[p + 4] + shift) * channels + c, lanes, a40, a41, True)
                _add_pair(out, (positions[p + 5] + shift) * channels + c, lanes, a50, a51, True)
        if pairs_end < channels:  # one vector of channels left
            c = pairs_end
            for p in range(0, count, BLOCK):
                a0, a1, a2, a3, a4, a5 = zero, zero, zero, zero, zero, zero
                for f in range(filters):
                    w0 = vload(weight, (t * filters + f) * channels + c)
                    row = f * delta_row + p
                    a0 = vfma(w0, vsplat_at(delta, row), a0)
                    a1 = vfma(w0, vsplat_at(delta, row + 1), a1)
                    a2 = vfma(w0, vsplat_at(delta, row + 2), a2)
                    a3 = vfma(w0, vsplat_at(delta, row + 3), a3)
                    a4 = vfma(w0, vsplat_at(delta, row + 4), a4)
                    a5 = vfma(w0, vsplat_at(delta, row + 5), a5)
                _add_pair(out, (positions[p] + shift) * channels + c, lanes, a0, a0, False)
                _add_pair(out, (positions[p + 1] + shift) * channels + c, lanes, a1, a1, False)
                _add_pair(out, (positions[p + 2] + shift) * channels + c, lanes, a2, a2, False)
                _add_pair(out, (positions[p + 3] + shift) * channels + c, lanes, a3, a3, False)
                _add_pair(out, (positions[p + 4] + shift) * channels + c, lanes, a4, a4, False)
                _add_pair(out, (positions[p + 5] + shift) * channels + c, lanes, a5, a5, False)


@njit(cache=True)
def _positions(out_size, stride, padded_w, rounded):
    """Offset in the padded plane of the pixel under each output position's first tap,
    ``(oh·SH)·Wp + ow·SW``; ``rounded`` ≥ ``OH·OW`` entries, the last one repeated."""
    out_h, out_w = out_size
    count = out_h * out_w
    positions = np.empty(rounded, dtype=np.int64)
    for t in range(rounded):
        p = min(t, count - 1)
        positions[t] = (p // out_w) * stride[0] * padded_w + (p % out_w) * stride[1]
    return positions


@njit(cache=True)
def _geometry(shape, kernel, stride, padding):
    """``(Hp, Wp), (OH, OW)`` of a convolution of ``shape = (C, N, H, W)``."""
    padded = (shape[2] + 2 * padding[0], shape[3] + 2 * padding[1])
    out_size = ((padded[0] - kernel[0]) // stride[0] + 1, (padded[1] - kernel[1]) // stride[1] + 1)
    return padded, out_size


@njit(cache=True)
def _image_outputs(src, n, plane_c, plane_n, shape, padding, padded_size, weight, bias, offsets, positions):
    """One image's block outputs ``(P', F')`` (flat), by :func:`lane_products`."""
    padded = np.zeros(shape[0] * padded_size[0] * padded_size[1], dtype=weight.dtype)
    _load_padded(src, n * plane_n, plane_c, shape, padding, padded)
    acc = np.empty(positions.shape[0] * bias.shape[0], dtype=weight.dtype)
    lane_products(weight, bias, padded, offsets, positions, acc)
    return acc


@njit(parallel=True, cache=True)
def conv_forward_lanes(src, plane_c, plane_n, shape, kernel, stride, padding, weight, bias, relu, out):
    """Forward pass (eq. 15.25), any stride; ``out`` flat channel-major ``(F, N, OH, OW)``.

    ``weight`` flat ``(C·KH·KW, F')``, ``bias`` ``(F',)``: ``F`` filters padded with zeros to ``F'``, a
    multiple of the lanes. ``relu``: ``max(y, 0)`` is stored.
    """
    batch = shape[1]
    padded_size, (out_h, out_w) = _geometry(shape, kernel, stride, padding)
    filters_padded = bias.shape[0]
    count = out_h * out_w
    offsets = _tap_offsets(shape[0], kernel, padded_size)
    positions = _positions((out_h, out_w), stride, padded_size[1], -(-count // BLOCK) * BLOCK)
    for n in prange(batch):
        acc = _image_outputs(src, n, plane_c, plane_n, shape, padding, padded_size, weight, bias, offsets, positions)
        store_image(acc, filters_padded, n, batch, count, relu, out)


@njit(cache=True, nogil=True)
def store_image(acc, filters_padded, n, batch, count, relu, out):
    """Image ``n``'s outputs ``acc`` ``(≥ count, F')`` (flat) into channel-major ``out`` ``(F, N, count)``;
    ``relu``: ``max(y, 0)``. A transpose (:func:`channels_first` on one row of ``count`` positions):
    element by element, it took a sixth of resnet_mnist's Winograd forward pass for 16 → 16 at 28×28."""
    filters = out.shape[0] // (batch * count)
    channels_first(acc, filters_padded, (1, count), (0, 0), n, (filters, batch, 1, count), relu, out)


@njit(parallel=True, cache=True)
def conv_pool_forward_lanes(src, plane_c, plane_n, shape, kernel, stride, padding, weight, bias, record, out, argmax):
    """Convolution (eq. 15.25) → ReLU → 2×2 stride-2 max pooling (eq. 15.51), one pass per image.

    As :func:`numcnn.kernels.numba_conv.conv_pool_forward_direct` for a 2×2 window: ``out`` flat
    channel-major ``(F, N, POH, POW)``; with ``record``, ``argmax`` (int32, same layout) gets the
    offset ``row·OW + col`` of each window's first maximum in the convolution's output plane
    (row-major order, strict '>'), or −1 where the ReLU cuts the gradient.
    """
    batch = shape[1]
    padded_size, conv_size = _geometry(shape, kernel, stride, padding)
    offsets = _tap_offsets(shape[0], kernel, padded_size)
    positions = _positions(conv_size, stride, padded_size[1], -(-conv_size[0] * conv_size[1] // BLOCK) * BLOCK)
    for n in prange(batch):
        acc = _image_outputs(src, n, plane_c, plane_n, shape, padding, padded_size, weight, bias, offsets, positions)
        pool_image(acc, bias.shape[0], conv_size, n, batch, record, out, argmax)


@njit(cache=True, nogil=True)
def pool_image(acc, filters_padded, conv_size, n, batch, record, out, argmax):
    """ReLU → 2×2 stride-2 max pooling of image ``n``'s convolution outputs ``acc`` ``(OH·OW, F')``
    (flat) into channel-major ``out`` ``(F, N, OH // 2, OW // 2)``; with ``record``, the maxima's
    places into ``argmax`` (see :func:`conv_pool_forward_lanes`)."""
    conv_h, conv_w = conv_size
    out_h, out_w = conv_h // 2, conv_w // 2
    plane = out_h * out_w
    filters = out.shape[0] // (batch * plane)
    below = np.int32(conv_w)
    # The windows' maxima over whole vectors of filters (contiguous: the loops vectorise), then
    # transposed out to the channel-major planes.
    pooled = np.empty(plane * filters_padded, dtype=out.dtype)
    codes = np.empty(plane * filters_padded if record else 1, dtype=np.int32)
    for p in range(out_h):
        for q in range(out_w):
            corner = 2 * p * conv_w + 2 * q
            t = corner * filters_padded
            u = (p * out_w + q) * filters_padded
            upper_left = acc[t : t + filters_padded]
            upper_right = acc[t + filters_padded : t + 2 * filters_padded]
            lower_left = acc[t + conv_w * filters_padded : t + (conv_w + 1) * filters_padded]
            lower_right = acc[t + (conv_w + 1) * filters_padded : t + (conv_w + 2) * filters_padded]
            best_of = pooled[u : u + filters_padded]
            if record:
                where_of = codes[u : u + filters_padded]
                for f in range(filters_padded):
                    best = upper_left[f]
                    where = np.int32(0)
                    value = upper_right[f]
                    better = value > best
                    where = np.int32(1) if better else where
                    best = value if better else best
                    value = lower_left[f]
                    better = value > best
                    where = below if better else where
                    best = value if better else best
                    value = lower_right[f]
                    better = value > best
                    where = below + np.int32(1) if better else where
                    best = value if better else best
                    alive = best > 0  # the ReLU: zero output, no gradient
                    best_of[f] = best if alive else 0
                    where_of[f] = np.int32(corner) + where if alive else np.int32(-1)
            else:
                for f in range(filters_padded):
                    best = upper_left[f]
                    value = upper_right[f]
                    best = value if value > best else best
                    value = lower_left[f]
                    best = value if value > best else best
                    value = lower_right[f]
                    best = value if value > best else best
                    best_of[f] = best if best > 0 else 0
    for f in range(filters):
        dst = (f * batch + n) * plane
        for u in range(plane):
            out[dst + u] = pooled[u * filters_padded + f]
        if record:
            for u in range(plane):
                argmax[dst + u] = codes[u * filters_padded + f]


@njit(parallel=True, cache=True)
def conv_weight_grad_lanes(src, plane_c, plane_n, shape, kernel, stride, padding, grad, grad_plane_f, grad_plane_n,
                           partial):  # fmt: skip
    """Weight gradients (eq. 15.38), any stride, per group of images: ``partial[g]`` flat ``(K', F')``.

    ``partial.shape = (groups, K'·F')``: ``K = C·KH·KW`` taps rounded up to whole blocks, ``F'`` the
    filters rounded up to whole vectors; the caller sums over the groups (``⌈N / groups⌉``
    consecutive images each) and keeps the first ``K`` rows and ``F`` columns. ``grad`` is δ flat
    with plane strides ``grad_plane_f`` / ``grad_plane_n``; its ``F`` is ``grad``'s.
    """
    channels, batch = shape[0], shape[1]
    groups = partial.shape[0]
    per_group = -(-batch // groups)
    padded_size, (out_h, out_w) = _geometry(shape, kernel, stride, padding)
    count = out_h * out_w
    taps = channels * kernel[0] * kernel[1]
    taps_padded = -(-taps // BLOCK) * BLOCK
    filters_padded = partial.shape[1] // taps_padded
    filters = grad.shape[0] // (batch * count)
    offsets = np.empty(taps_padded, dtype=np.int64)
    offsets[:taps] = _tap_offsets(channels, kernel, padded_size)
    offsets[taps:] = offsets[taps - 1]
    positions = _positions((out_h, out_w), stride, padded_size[1], count)
    image_size = channels * padded_size[0] * padded_size[1]
    for g in prange(groups):
        first = g * per_group
        images = max(0, min(per_group, batch - first))
        padded = np.zeros(images * image_size, dtype=partial.dtype)
        delta = np.zeros(images * count * filters_padded, dtype=partial.dtype)  # (images·P, F'), zero past F
        image_delta = count * filters_padded
        for i in range(images):
            _load_padded(src, (first + i) * plane_n, plane_c, shape, padding, padded[i * image_size :])
            channels_last(
                grad, (first + i) * grad_plane_n, grad_plane_f, filters, (1, count), (0, 0), (1, count),
                delta[i * image_delta : (i + 1) * image_delta],
            )  # fmt: skip
        partial[g] = 0
        lane_dots(padded, np.arange(images) * image_size, offsets, positions, delta, filters_padded, partial[g])


@njit(cache=True, nogil=True)
def channels_first(gx, padded_c, padded_size, padding, n, shape, relu, grad_input):
    """The channels-last padded ``gx`` ``(rows', cols', C')`` (flat) cropped into image ``n`` of the
    channel-major ``grad_input`` ``(C, N, H, W)`` (flat), ``padding`` the crop's offset; ``relu``:
    ``max(value, 0)`` stored. :func:`channels_last` backwards.

    Blocks of ``lanes`` pixels × ``lanes`` channels through registers
    (:func:`~numcnn.kernels.simd.vtranspose_copy`), the leftovers one by one.
    """
    channels, batch, height, width = shape
    lanes = vlanes(gx)
    whole_channels, whole_pixels = channels - channels % lanes, width - width % lanes
    plane_c = batch * height * width
    zero = grad_input.dtype.type(0)
    for h in range(height):
        row = ((h + padding[0]) * padded_size[1] + padding[1]) * padded_c
        for c in range(0, whole_channels, lanes):
            for w in range(0, whole_pixels, lanes):
                dst = (c * batch + n) * height * width + h * width + w
                vtranspose_copy(gx, row + w * padded_c + c, padded_c, grad_input, dst, plane_c, relu)
    for c in range(channels):
        first = whole_pixels if c < whole_channels else 0
        for h in range(height):
            dst = ((c * batch + n) * height + h) * width
            row = ((h + padding[0]) * padded_size[1] + padding[1]) * padded_c + c
            for w in range(first, width):
                value = gx[u64(row + w * padded_c)]
                grad_input[u64(dst + w)] = max(value, zero) if relu else value


@njit(cache=True, nogil=True)
def channels_last(src, plane, plane_c, channels, size, offset, padded_size, out):
    """``channels`` planes of ``size`` (rows, cols) at ``plane`` into the zeroed channels-last ``out``
    ``(rows', cols', C')`` (flat), shifted by ``offset`` (the padding).

    Blocks of ``lanes`` channels × ``lanes`` pixels of a row go through registers
    (:func:`~numcnn.kernels.simd.vtranspose_copy`); the channels and pixels left over one by one.
    (Element by element, the Winograd backward pass's two of these per image and its crop back
    took two fifths of that pass for resnet_mnist's 16 → 16 layer.) With ``size = (1, P)`` and no
    padding it turns ``channels`` rows of ``P`` into ``(P, C')``.
    """
    padded_c = out.shape[0] // (padded_size[0] * padded_size[1])
    lanes = vlanes(out)
    height, width = size
    whole_channels, whole_pixels = channels - channels % lanes, width - width % lanes
    for h in range(height):
        row = ((h + offset[0]) * padded_size[1] + offset[1]) * padded_c
        for c in range(0, whole_channels, lanes):
            for w in range(0, whole_pixels, lanes):
                at = plane + c * plane_c + h * width + w
                vtranspose_copy(src, at, plane_c, out, row + w * padded_c + c, padded_c, False)
    for c in range(channels):
        first = whole_pixels if c < whole_channels else 0
        for h in range(height):
            start = plane + c * plane_c + h * width
            row = ((h + offset[0]) * padded_size[1] + offset[1]) * padded_c + c
            for w in range(first, width):
                out[u64(row + w * padded_c)] = src[u64(start + w)]


@njit(parallel=True, cache=True)
def conv_input_grad_lanes(grad, grad_plane_f, grad_plane_n, shape, kernel, stride, padding, weight, out):
    """Input gradient (eq. 15.49), any stride: δ scattered through the kernels, channels-last per
    image (:func:`lane_scatter`), then cropped and transposed into ``out``, flat channel-major
    ``(C, N, H, W)`` (overwritten).

    ``weight`` flat ``(KH·KW, F, C')``: ``W[f, c, i, j]`` at ``((i·KW + j)·F + f)·C' + c``, the
    channels padded with zeros to ``C'``, a multiple of the lanes.
    """
    batch = shape[1]
    padded_size, (out_h, out_w) = _geometry(shape, kernel, stride, padding)
    padded_h, padded_w = padded_size
    count = out_h * out_w
    rounded = -(-count // BLOCK) * BLOCK
    spatial_taps = kernel[0] * kernel[1]
    filters = grad.shape[0] // (batch * count)
    channels_padded = weight.shape[0] // (spatial_taps * filters)
    tap_offsets = np.empty(spatial_taps, dtype=np.int64)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            tap_offsets[i * kernel[1] + j] = i * padded_w + j
    positions = _positions((out_h, out_w), stride, padded_w, rounded)
    for n in prange(batch):
        delta = np.zeros(filters * rounded, dtype=out.dtype)  # (F, P'): zero past P, so the extra blocks add 0
        for f in range(filters):
            start, at = u64(n * grad_plane_n + f * grad_plane_f), u64(f * rounded)
            for p in range(u64(count)):  # unsigned offsets: a vectorised copy (see numba_conv)
                delta[at + p] = grad[start + p]
        scattered = np.zeros(padded_h * padded_w * channels_padded, dtype=out.dtype)  # (Hp·Wp, C')
        lane_scatter(weight, delta, rounded, positions, tap_offsets, channels_padded, scattered)
        channels_first(scattered, channels_padded, padded_size, padding, n, shape, False, out)
