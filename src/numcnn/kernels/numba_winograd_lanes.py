"""Winograd F(2×2, 3×3) with the filters (or channels) in the vector lanes: forward and both gradients.

The same identity as :mod:`numcnn.kernels.numba_winograd` (Lavin & Gray 2016, eq. 8): for each 2×2
output tile and the 4×4 input patch ``d`` under it, ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``; summed
over the input channels, for each of the 16 points ξ of the transformed tile,

    ``M[ξ][t, f] = Σ_c V[ξ][c, t] · U[ξ][c, f]``,   ``V = Bᵀ d B``,  ``U = G g Gᵀ``

-- 16·F·C multiply-adds per tile of four outputs instead of eq. 15.25's 36·F·C. The passes this
module replaced (issue 10, sixth session) transformed up to 512 tiles at a time, and their ``V`` and
``M`` blocks (16·(C + F) floats per tile: 2.6 MB for SK-2's 40 → 40 layer) went through the L3
cache between the transforms and the products, which ran at half their in-cache speed. Here one
image's tiles are taken a *band* at a time (a few dozen tiles: ``V`` and ``M`` a few tens of kB),
so everything between the image and its output stays in the L1 and L2 caches. Forward:

1. The padded image is stored with its even and odd columns apart (``split``, ``(C, Hq, 2, S + 1)``,
   ``S`` tile slots per tile row, a whole number of vectors), so that the four columns of every
   tile of a row, ``2s … 2s + 3``, are four unit-stride runs: ``even[s]``, ``odd[s]``,
   ``even[s + 1]``, ``odd[s + 1]``. The input transform then runs on whole vectors of tiles (16
   loads, 32 additions and 16 stores per channel and vector).
2. The 16 products are :func:`numcnn.kernels.numba_lanes.lane_products`: the filters in the lanes,
   six tiles × two vectors of filters in registers while the channels run.
3. The output transform ``Aᵀ M A + b`` runs on whole vectors of filters, straight out of the
   products' ``(tiles, F')`` rows, into the image's ``(OH·OW, F')`` outputs, which the lanes
   kernels' epilogues store (with the ReLU) or pool (:func:`numcnn.kernels.numba_lanes.store_image`,
   :func:`~numcnn.kernels.numba_lanes.pool_image`).

The forward pass forms every sum in the order of the forward pass it replaced (the same transforms,
the channels in order with fused multiply-adds from zero, the same output transform): its outputs
were the same bits, checked on 24 shapes and both dtypes when it was replaced. The backward passes
(below :func:`winograd_forward_lanes`) sum in another order, equal to the reference up to rounding.
The tests bound both against the reference and check that the pooled forward pass equals pooling
the unpooled one, bit for bit. Images (groups of images, for the weight gradient) run in parallel
(``prange``), each in thread-local buffers: any thread count gives the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from numcnn.kernels.numba_lanes import (
    BLOCK,
    channels_first,
    channels_last,
    lane_dots,
    lane_products,
    pool_image,
    store_image,
)
from numcnn.kernels.simd import vadd, veven, vlanes, vload, vodd, vsplat, vstore, vsub

# Unsigned offsets in the element-by-element copies: numba tests every signed index for wrap-around.
u64 = np.uint64

__all__ = [
    "EPILOGUE_NONE", "EPILOGUE_POOL", "EPILOGUE_POOL_RECORD", "EPILOGUE_RELU",
    "lanes_weight_transform", "band_rows_for", "winograd_forward_lanes", "winograd_backward_lanes",
]  # fmt: skip


def lanes_weight_transform(u: np.ndarray, lanes: int) -> np.ndarray:
    """``U`` ``(16, F, C)`` as the products here read it: ``(16, C·F')``, filters padded with zeros to
    ``F'``, a multiple of ``lanes``."""
    points, filters, channels = u.shape
    padded = -(-filters // lanes) * lanes
    out = np.zeros((points, channels, padded), dtype=u.dtype)
    out[:, :, :filters] = u.transpose(0, 2, 1)
    return out.reshape(points, channels * padded)


def band_rows_for(out_size: tuple[int, int], tiles_per_band: int) -> int:
    """Tile rows per band: about ``tiles_per_band`` tiles, at least one row."""
    tiles_h, tiles_w = (out_size[0] + 1) // 2, (out_size[1] + 1) // 2
    return max(1, min(tiles_h, tiles_per_band // tiles_w))


@njit(cache=True, nogil=True)
def _load_split(src, plane, plane_c, shape, padding, slots, split):
    """Image ``n`` (at ``plane``) into the zeroed ``split`` ``(C, Hq, 2, S + 1)`` (flat): padded column
    ``j`` of padded row ``y`` at ``[c, y, j % 2, j // 2]``.

    Slot ``s`` of parity ``p`` holds image column ``w = 2s + p − PW``. Where ``2·lanes`` consecutive
    columns lie inside the row, one pair of vector loads fills ``lanes`` slots of both parities
    (:func:`~numcnn.kernels.simd.veven` / :func:`~numcnn.kernels.simd.vodd`), from the left and once
    more flush with the row's right end (an overlap writes the same values twice); the few slots
    left at the edges are copied one by one. (Element by element, this copy took a quarter of
    the forward pass for resnet_mnist's 16 → 16 layer: ~10 instructions per pixel.)
    """
    channels, _, height, width = shape
    rows = split.shape[0] // (channels * 2 * (slots + 1))
    row_len = slots + 1
    pad_w = padding[1]
    lanes = vlanes(split)
    span = 2 * lanes  # image columns per pair of vector loads
    first_vector = (pad_w + 1) // 2  # the first slot whose columns 2s − PW, 2s + 1 − PW are ≥ 0
    last_vector = (width - span + pad_w) // 2  # the last slot whose span ends inside the row
    for c in range(channels):
        for h in range(height):
            start = plane + c * plane_c + h * width
            base = (c * rows + h + padding[0]) * 2 * row_len
            done_from, done_to = first_vector, first_vector  # slots [from, to) copied by vectors
            if width >= span and last_vector >= first_vector:
                s = first_vector
                while s <= last_vector:
                    _split_span(src, start + 2 * s - pad_w, split, base + s, row_len)
                    s += lanes
                if s - lanes < last_vector:  # flush with the right end
                    _split_span(src, start + 2 * last_vector - pad_w, split, base + last_vector, row_len)
                done_to = last_vector + lanes
            for parity in range(2):
                # Slots whose column is inside the image: a branch-free stride-2 loop (a
                # division per pixel took three times as long).
                first = (pad_w - parity + 1) // 2
                last = (width - 1 + pad_w - parity) // 2
                row = base + parity * row_len
                for s in range(first, min(last + 1, done_from)):
                    split[u64(row + s)] = src[u64(start + 2 * s + parity - pad_w)]
                for s in range(max(first, done_to), last + 1):
                    split[u64(row + s)] = src[u64(start + 2 * s + parity - pad_w)]


@njit(cache=True, nogil=True, inline="always")
def _split_span(src, at, split, even_at, row_len):
    """``2·lanes`` consecutive pixels from ``src[at]``: the even ones at ``split[even_at]``, the odd ones a row on."""
    lanes = vlanes(split)
    a, b = vload(src, at), vload(src, at + lanes)
    vstore(split, even_at, veven(a, b))
    vstore(split, even_at + row_len, vodd(a, b))


@njit(cache=True, nogil=True)
def _band_input_transform(split, channels, rows, slots, first_row, band_rows, band, plane, v):
    """``V[ξ, c, k·S + s] = (Bᵀ d B)[ξ]`` for the tiles of tile rows ``first_row + k``, ``k < band_rows``:
    ``v`` flat, ``V[ξ]`` a ``(C, band)`` block at ``ξ·plane`` (``plane`` ≥ ``C·band``), ``band`` ≥
    ``band_rows·S`` (a last band may have fewer rows).

    ``Bᵀ``'s rows (1, 0, −1, 0), (0, 1, 1, 0), (0, −1, 1, 0), (0, 1, 0, −1) act on the patch's rows
    ``d0 … d3`` (each column ``j`` of the patch a vector over the tiles), then ``B`` on its columns.
    """
    lanes = vlanes(v)
    row_len = slots + 1
    for c in range(channels):
        for k in range(band_rows):
            first = (c * rows + 2 * (first_row + k)) * 2 * row_len
            for s in range(0, slots, lanes):
                # Row i of the patch: columns 2s, 2s + 1, 2s + 2, 2s + 3 of every tile in the vector.
                at = first + s
                d00, d01, d02, d03 = vload(split, at), vload(split, at + row_len), vload(split, at + 1), vload(
                    split, at + row_len + 1
                )
                at += 2 * row_len
                d10, d11, d12, d13 = vload(split, at), vload(split, at + row_len), vload(split, at + 1), vload(
                    split, at + row_len + 1
                )
                at += 2 * row_len
                d20, d21, d22, d23 = vload(split, at), vload(split, at + row_len), vload(split, at + 1), vload(
                    split, at + row_len + 1
                )
                at += 2 * row_len
                d30, d31, d32, d33 = vload(split, at), vload(split, at + row_len), vload(split, at + 1), vload(
                    split, at + row_len + 1
                )
                _patch_points(
                    d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33,
                    v, c * band + k * slots + s, plane,
                )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _patch_points(d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, v, at, plane):
    """``V = Bᵀ d B`` of a 4×4 patch ``d`` (each entry a vector: of tiles forward, of channels
    backward): ``V[ξ]`` at ``at + ξ·plane`` in ``v``. Row a of ``Bᵀ d``, then ``B`` on its columns:
    ``V[4a + b]``."""
    _columns(vsub(d00, d20), vsub(d01, d21), vsub(d02, d22), vsub(d03, d23), v, at, plane)
    _columns(vadd(d10, d20), vadd(d11, d21), vadd(d12, d22), vadd(d13, d23), v, at + 4 * plane, plane)
    _columns(vsub(d20, d10), vsub(d21, d11), vsub(d22, d12), vsub(d23, d13), v, at + 8 * plane, plane)
    _columns(vsub(d10, d30), vsub(d11, d31), vsub(d12, d32), vsub(d13, d33), v, at + 12 * plane, plane)


@njit(cache=True, nogil=True, inline="always")
def _columns(e0, e1, e2, e3, v, at, plane):
    """``B`` on the columns of one row ``(e0, e1, e2, e3)`` of ``Bᵀ d``: four points of ``V``, ``plane`` apart."""
    vstore(v, at, vsub(e0, e2))
    vstore(v, at + plane, vadd(e1, e2))
    vstore(v, at + 2 * plane, vsub(e2, e1))
    vstore(v, at + 3 * plane, vsub(e1, e3))


@njit(cache=True, nogil=True)
def _band_output_transform(m, most, filters_padded, bias, tiles_w, first_row, band_rows, out_size, acc):
    """``y = Aᵀ M A + b`` for the band's tiles, into the image's outputs ``acc`` ``(OH·OW, F')`` (flat).

    ``m`` flat ``(16, most, F')``, tile ``k·TW + s`` of the band at row ``k·TW + s``. ``Aᵀ``'s rows
    (1, 1, 1, 0) and (0, 1, −1, −1), on the rows of ``M`` and then on its columns. Outputs beyond
    ``(OH, OW)`` are dropped.
    """
    lanes = vlanes(m)
    out_h, out_w = out_size
    step = most * filters_padded  # from one point ξ to the next
    for k in range(band_rows):
        row = 2 * (first_row + k)
        for s in range(tiles_w):
            col = 2 * s
            right = col + 1 < out_w
            lower = row + 1 < out_h
            upper_at = (row * out_w + col) * filters_padded
            lower_at = upper_at + out_w * filters_padded
            for f in range(0, filters_padded, lanes):
                at = (k * tiles_w + s) * filters_padded + f
                b = vload(bias, f)
                m0, m1, m2, m3 = vload(m, at), vload(m, at + step), vload(m, at + 2 * step), vload(m, at + 3 * step)
                m4, m5, m6, m7 = (
                    vload(m, at + 4 * step), vload(m, at + 5 * step), vload(m, at + 6 * step), vload(m, at + 7 * step)
                )  # fmt: skip
                m8, m9, m10, m11 = (
                    vload(m, at + 8 * step), vload(m, at + 9 * step), vload(m, at + 10 * step), vload(m, at + 11 * step)
                )  # fmt: skip
                s0, s1 = vadd(vadd(m0, m4), m8), vadd(vadd(m1, m5), m9)
                s2, s3 = vadd(vadd(m2, m6), m10), vadd(vadd(m3, m7), m11)
                vstore(acc, upper_at + f, vadd(vadd(vadd(b, s0), s1), s2))
                if right:
                    vstore(acc, upper_at + filters_padded + f, vsub(vsub(vadd(b, s1), s2), s3))
                if lower:
                    m12, m13 = vload(m, at + 12 * step), vload(m, at + 13 * step)
                    m14, m15 = vload(m, at + 14 * step), vload(m, at + 15 * step)
                    s0, s1 = vsub(vsub(m4, m8), m12), vsub(vsub(m5, m9), m13)
                    s2, s3 = vsub(vsub(m6, m10), m14), vsub(vsub(m7, m11), m15)
                    vstore(acc, lower_at + f, vadd(vadd(vadd(b, s0), s1), s2))
                    if right:
                        vstore(acc, lower_at + filters_padded + f, vsub(vsub(vadd(b, s1), s2), s3))


@njit(cache=True, nogil=True)
def _image_outputs(src, n, plane_c, plane_n, shape, padding, out_size, u, bias, band_rows):
    """Image ``n``'s convolution outputs ``(OH·OW, F')`` (flat), by bands of ``band_rows`` tile rows."""
    channels = shape[0]
    filters_padded = bias.shape[0]
    lanes = vlanes(bias)
    tiles_h, tiles_w = (out_size[0] + 1) // 2, (out_size[1] + 1) // 2
    slots = -(-tiles_w // lanes) * lanes
    rows = 2 * tiles_h + 2
    split = np.zeros(channels * rows * 2 * (slots + 1), dtype=bias.dtype)
    _load_split(src, n * plane_n, plane_c, shape, padding, slots, split)
    acc = np.empty(out_size[0] * out_size[1] * filters_padded, dtype=bias.dtype)
    band = band_rows * slots
    # One ξ's (C, band) block, plus a cache line: blocks a multiple of 4 KiB apart (64 channels × 32
    # tiles) put the transform's sixteen store streams in one set of the 8-way L1 cache, which
    # then misses on every store (resnet_mnist's 64 → 64 at 7×7: the input transform took 2×).
    plane = channels * band + 2 * lanes  # 64 bytes
    v = np.empty(16 * plane, dtype=bias.dtype)
    most = -(-band_rows * tiles_w // BLOCK) * BLOCK  # a band's tiles, rounded up to whole blocks
    m = np.empty(16 * most * filters_padded, dtype=bias.dtype)
    points = m.reshape((16, most * filters_padded))  # M[ξ] (tiles, F'), a row per ξ
    no_bias = np.zeros(filters_padded, dtype=bias.dtype)  # the bias is added by the output transform
    offsets = np.empty((16, channels), dtype=np.int64)  # where V[ξ][c] starts in v
    for xi in range(16):
        for c in range(channels):
            offsets[xi, c] = xi * plane + c * band
    for first_row in range(0, tiles_h, band_rows):
        rows_here = min(band_rows, tiles_h - first_row)
        tiles = rows_here * tiles_w
        positions = np.empty(-(-tiles // BLOCK) * BLOCK, dtype=np.int64)
        for t in range(positions.shape[0]):
            q = min(t, tiles - 1)  # the last tile repeated up to a whole block (never read back)
            positions[t] = (q // tiles_w) * slots + q % tiles_w
        _band_input_transform(split, channels, rows, slots, first_row, rows_here, band, plane, v)
        for xi in range(16):  # M[ξ] = V[ξ]ᵀ U[ξ]
            lane_products(u[xi], no_bias, v, offsets[xi], positions, points[xi])
        _band_output_transform(m, most, filters_padded, bias, tiles_w, first_row, rows_here, out_size, acc)
    return acc


#: What :func:`winograd_forward_lanes` does with the convolution's outputs.
EPILOGUE_NONE = 0
EPILOGUE_RELU = 1  # max(y, 0)
EPILOGUE_POOL = 2  # ReLU → 2×2 stride-2 max pooling
EPILOGUE_POOL_RECORD = 3  # the same, recording the maxima's places for backward


@njit(parallel=True, cache=True)
def winograd_forward_lanes(src, plane_c, plane_n, shape, padding, out_size, u, bias, band_rows, epilogue, out, argmax):
    """Eq. 15.25 for a 3×3 stride-1 convolution: ``out`` flat channel-major ``(F, N, OH, OW)``, or
    ``(F, N, OH // 2, OW // 2)`` for the pooling epilogues.

    ``u`` from :func:`lanes_weight_transform` ``(16, C·F')``, ``bias`` ``(F',)`` (zeros past ``F``).
    ``epilogue``: ``EPILOGUE_NONE``, ``EPILOGUE_RELU`` (``max(y, 0)`` stored), ``EPILOGUE_POOL``
    (convolution → ReLU → 2×2 stride-2 max pooling), ``EPILOGUE_POOL_RECORD`` (the same, with the
    maxima's places in ``argmax``, as :func:`numcnn.kernels.numba_lanes.conv_pool_forward_lanes`
    stores them; ``argmax`` is not touched otherwise). One kernel for all four: each ``prange``
    kernel costs seconds of numba's first compilation.
    """
    batch = shape[1]
    count = out_size[0] * out_size[1]
    for n in prange(batch):
        acc = _image_outputs(src, n, plane_c, plane_n, shape, padding, out_size, u, bias, band_rows)
        if epilogue >= EPILOGUE_POOL:
            pool_image(acc, bias.shape[0], out_size, n, batch, epilogue == EPILOGUE_POOL_RECORD, out, argmax)
        else:
            store_image(acc, bias.shape[0], n, batch, count, epilogue == EPILOGUE_RELU, out)


# -- backward: both gradients, channels-last, the channels (or filters) in the lanes ---------------
#
# Per image, the padded input and δ are first turned channels-last, ``(Hq·Wq, C')`` and
# ``(2·TH·2·TW, F')`` (channels and filters padded with zeros to whole vectors), so that a tile's
# 4×4 patch is sixteen vector loads of ``C'`` channels and its transforms run on whole vectors of
# channels (of filters, for δ). A band of tiles at a time (any tiles: no rows needed here):
#
# * ``V[ξ][p, c]`` (``Bᵀ d B``) and ``∂E/∂M[ξ][p, f] = (A δ Aᵀ)[ξ]``;
# * eq. 15.38: ``∂E/∂U[ξ][c, f] += Σ_p V[ξ][p, c] · ∂E/∂M[ξ][p, f]``
#   (:func:`numcnn.kernels.numba_lanes.lane_dots`: six channels × two vectors of filters);
# * eq. 15.49: ``∂E/∂V[ξ][p, c] = Σ_f ∂E/∂M[ξ][p, f] · U[ξ][c, f]``
#   (:func:`~numcnn.kernels.numba_lanes.lane_products`, the channels in the lanes), and
#   ``B (∂E/∂V) Bᵀ`` added into the channels-last padded gradient, tile after tile (neighbouring
#   patches overlap), which is cropped and turned channel-major at the end.


@njit(cache=True, nogil=True)
def _tile_input_transform(x, padded_w, padded_c, r, s, step, at, v):
    """``V[ξ] = (Bᵀ d B)[ξ]`` for the tile at tile row ``r``, column ``s``, every vector of channels:
    ``V[ξ]`` at ``at + ξ·step`` in ``v`` (flat)."""
    lanes = vlanes(v)
    corner = (2 * r * padded_w + 2 * s) * padded_c
    row = padded_w * padded_c
    for c in range(0, padded_c, lanes):
        p = corner + c
        d00, d01, d02, d03 = vload(x, p), vload(x, p + padded_c), vload(x, p + 2 * padded_c), vload(x, p + 3 * padded_c)
        p += row
        d10, d11, d12, d13 = vload(x, p), vload(x, p + padded_c), vload(x, p + 2 * padded_c), vload(x, p + 3 * padded_c)
        p += row
        d20, d21, d22, d23 = vload(x, p), vload(x, p + padded_c), vload(x, p + 2 * padded_c), vload(x, p + 3 * padded_c)
        p += row
        d30, d31, d32, d33 = vload(x, p), vload(x, p + padded_c), vload(x, p + 2 * padded_c), vload(x, p + 3 * padded_c)
        _patch_points(
            d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, v, at + c, step
        )


@njit(cache=True, nogil=True, inline="always")
def _lift(g0, g1, zero, dm, at, step):
    """``A`` on one row ``(h0, h1)`` of ``A δ``: four points of ``∂E/∂M``, ``step`` apart."""
    vstore(dm, at, g0)
    vstore(dm, at + step, vadd(g0, g1))
    vstore(dm, at + 2 * step, vsub(g0, g1))
    vstore(dm, at + 3 * step, vsub(zero, g1))


@njit(cache=True, nogil=True)
def _tile_grad_transform(delta, delta_w, padded_f, r, s, step, at, dm):
    """``∂E/∂M[ξ] = (A δ Aᵀ)[ξ]`` for the tile at ``(r, s)``: ``A``'s rows (1, 0), (1, 1), (1, −1), (0, −1)."""
    lanes = vlanes(dm)
    zero = vsplat(dm.dtype.type(0))
    corner = (2 * r * delta_w + 2 * s) * padded_f
    below = delta_w * padded_f
    for f in range(0, padded_f, lanes):
        p = corner + f
        g00, g01 = vload(delta, p), vload(delta, p + padded_f)
        g10, g11 = vload(delta, p + below), vload(delta, p + below + padded_f)
        out = at + f
        _lift(g00, g01, zero, dm, out, step)
        _lift(vadd(g00, g10), vadd(g01, g11), zero, dm, out + 4 * step, step)
        _lift(vsub(g00, g10), vsub(g01, g11), zero, dm, out + 8 * step, step)
        _lift(vsub(zero, g10), vsub(zero, g11), zero, dm, out + 12 * step, step)


@njit(cache=True, nogil=True)
def _tile_input_grad(dv, step, at, padded_w, padded_c, r, s, grad):
    """``B (∂E/∂V) Bᵀ`` for the tile at ``(r, s)`` added into the channels-last padded gradient ``grad``.

    ``B``'s rows (1, 0, 0, 0), (0, 1, −1, 1), (−1, 1, 1, 0), (0, 0, 0, −1): on the rows of ``∂E/∂V``
    (``∂E/∂V[ξ]`` at ``at + ξ·step``), then on the columns.
    """
    lanes = vlanes(dv)
    corner = (2 * r * padded_w + 2 * s) * padded_c
    row = padded_w * padded_c
    for c in range(0, padded_c, lanes):
        q = at + c
        x0, x1, x2, x3 = vload(dv, q), vload(dv, q + step), vload(dv, q + 2 * step), vload(dv, q + 3 * step)
        x4, x5, x6, x7 = vload(dv, q + 4 * step), vload(dv, q + 5 * step), vload(dv, q + 6 * step), vload(
            dv, q + 7 * step
        )
        x8, x9, x10, x11 = vload(dv, q + 8 * step), vload(dv, q + 9 * step), vload(dv, q + 10 * step), vload(
            dv, q + 11 * step
        )
        x12, x13, x14, x15 = vload(dv, q + 12 * step), vload(dv, q + 13 * step), vload(dv, q + 14 * step), vload(
            dv, q + 15 * step
        )
        p = corner + c
        _add_row(x0, x1, x2, x3, grad, p, padded_c)
        _add_row(
            vadd(vsub(x4, x8), x12), vadd(vsub(x5, x9), x13), vadd(vsub(x6, x10), x14), vadd(vsub(x7, x11), x15),
            grad, p + row, padded_c,
        )  # fmt: skip
        _add_row(
            vsub(vadd(x4, x8), x0), vsub(vadd(x5, x9), x1), vsub(vadd(x6, x10), x2), vsub(vadd(x7, x11), x3),
            grad, p + 2 * row, padded_c,
        )  # fmt: skip
        zero = vsplat(dv.dtype.type(0))
        _add_row(vsub(zero, x12), vsub(zero, x13), vsub(zero, x14), vsub(zero, x15), grad, p + 3 * row, padded_c)


@njit(cache=True, nogil=True, inline="always")
def _add_row(e0, e1, e2, e3, grad, at, padded_c):
    """``Bᵀ`` on the columns of one row ``(e0, e1, e2, e3)``, added into four pixels of ``grad``."""
    vstore(grad, at, vadd(vload(grad, at), e0))
    vstore(grad, at + padded_c, vadd(vload(grad, at + padded_c), vadd(vsub(e1, e2), e3)))
    vstore(grad, at + 2 * padded_c, vadd(vload(grad, at + 2 * padded_c), vsub(vadd(e1, e2), e0)))
    vstore(grad, at + 3 * padded_c, vsub(vload(grad, at + 3 * padded_c), e3))


@njit(parallel=True, cache=True)
def winograd_backward_lanes(
    src, plane_c, plane_n, shape, padding, grad, grad_plane_f, grad_plane_n, out_size, u_t, band_tiles,
    need_input, partial, grad_input,
):  # fmt: skip
    """Both gradients of a 3×3 stride-1 convolution through the Winograd identity, per group of images.

    ``u_t``: ``U`` as ``(16, F·C')`` (``U[ξ]ᵀ``, channels padded with zeros to whole vectors).
    ``partial`` ``(groups, 16·C6·F')``: group ``g``'s (``⌈N / groups⌉`` consecutive images) ``∂E/∂U``
    as ``(16, C6, F')``, ``C6`` the channels rounded up to whole blocks of six, ``F'`` the filters
    to whole vectors; the caller sums the groups in order. With ``need_input``, ``grad_input``
    (flat channel-major ``(C, N, H, W)``) gets ``∂E/∂x``. ``band_tiles``: tiles per band.
    """
    channels, batch, height, width = shape
    lanes = vlanes(u_t)
    filters = u_t.shape[1] // (-(-channels // lanes) * lanes)
    padded_c = u_t.shape[1] // filters
    groups = partial.shape[0]
    per_group = -(-batch // groups)
    channels_6 = -(-channels // BLOCK) * BLOCK
    filters_padded = partial.shape[1] // (16 * channels_6)
    tiles_h, tiles_w = (out_size[0] + 1) // 2, (out_size[1] + 1) // 2
    tiles = tiles_h * tiles_w
    padded_size = (2 * tiles_h + 2, 2 * tiles_w + 2)
    delta_size = (2 * tiles_h, 2 * tiles_w)
    band = -(-min(band_tiles, tiles) // BLOCK) * BLOCK  # a band's rows in V, ∂E/∂M, ∂E/∂V
    channel_offsets = np.empty(channels_6, dtype=np.int64)  # the dots' six channels at a time
    for c in range(channels_6):
        channel_offsets[c] = min(c, channels - 1)  # the last repeated (its rows are never read)
    filter_offsets = np.arange(filters)
    point_shifts = (np.arange(16) * band * padded_c).reshape((16, 1))  # where V[ξ] starts, one segment
    for g in prange(groups):
        first = g * per_group
        images = max(0, min(per_group, batch - first))
        x = np.empty(padded_size[0] * padded_size[1] * padded_c, dtype=u_t.dtype)
        delta = np.empty(delta_size[0] * delta_size[1] * filters_padded, dtype=u_t.dtype)
        gx = np.empty(padded_size[0] * padded_size[1] * padded_c if need_input else 1, dtype=u_t.dtype)
        v = np.empty(16 * band * padded_c, dtype=u_t.dtype)
        dm = np.empty(16 * band * filters_padded, dtype=u_t.dtype)
        dv = np.empty(16 * band * padded_c if need_input else 16, dtype=u_t.dtype)
        dm_rows = dm.reshape((16, band * filters_padded))
        dv_rows = dv.reshape((16, dv.shape[0] // 16))
        u_rows = u_t
        sums = partial[g]
        sums[:] = 0
        sums_rows = sums.reshape((16, channels_6 * filters_padded))
        no_bias = np.zeros(padded_c, dtype=u_t.dtype)
        for i in range(images):
            n = first + i
            x[:] = 0
            channels_last(src, n * plane_n, plane_c, channels, (height, width), padding, padded_size, x)
            delta[:] = 0
            channels_last(grad, n * grad_plane_n, grad_plane_f, filters, out_size, (0, 0), delta_size, delta)
            if need_input:
                gx[:] = 0
            for lo in range(0, tiles, band):
                count = min(band, tiles - lo)
                for p in range(count):
                    r, s = (lo + p) // tiles_w, (lo + p) % tiles_w
                    _tile_input_transform(x, padded_size[1], padded_c, r, s, band * padded_c, p * padded_c, v)
                    _tile_grad_transform(
                        delta, delta_size[1], filters_padded, r, s, band * filters_padded, p * filters_padded, dm
                    )
                positions = np.arange(count) * padded_c
                for xi in range(16):  # ∂E/∂U[ξ] += V[ξ]ᵀ ∂E/∂M[ξ]
                    dm_xi, sums_xi = dm_rows[xi], sums_rows[xi]
                    lane_dots(v, point_shifts[xi], channel_offsets, positions, dm_xi, filters_padded, sums_xi)
                if need_input:
                    rounded = -(-count // BLOCK) * BLOCK
                    tile_rows = np.empty(rounded, dtype=np.int64)
                    for p in range(rounded):
                        tile_rows[p] = min(p, count - 1) * filters_padded
                    for xi in range(16):  # ∂E/∂V[ξ] = ∂E/∂M[ξ] U[ξ]ᵀ
                        lane_products(u_rows[xi], no_bias, dm_rows[xi], filter_offsets, tile_rows, dv_rows[xi])
                    for p in range(count):
                        r, s = (lo + p) // tiles_w, (lo + p) % tiles_w
                        _tile_input_grad(dv, band * padded_c, p * padded_c, padded_size[1], padded_c, r, s, gx)
            if need_input:
                channels_first(gx, padded_c, padded_size, padding, n, shape, False, grad_input)
