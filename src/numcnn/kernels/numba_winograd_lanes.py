"""Winograd F(2×2, 3×3) forward with the filters in the vector lanes, a band of tile rows at a time.

The same identity as :mod:`numcnn.kernels.numba_winograd` (Lavin & Gray 2016, eq. 8): for each 2×2
output tile and the 4×4 input patch ``d`` under it, ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``; summed
over the input channels, for each of the 16 points ξ of the transformed tile,

    ``M[ξ][t, f] = Σ_c V[ξ][c, t] · U[ξ][c, f]``,   ``V = Bᵀ d B``,  ``U = G g Gᵀ``

-- 16·F·C multiply-adds per tile of four outputs instead of eq. 15.25's 36·F·C. What differs from the
backward passes of :mod:`numcnn.kernels.numba_winograd` is how the work is laid out. They transform
up to 512 tiles at a time, and their ``V`` and ``M`` blocks (16·(C + F) floats per tile: 2.6 MB for
SK-2's 40 → 40 layer) go through the L3 cache between the transforms and the products (which ran at
half their in-cache speed in this forward pass's previous version, laid out that way). Here one
image's tiles are taken a *band* of tile rows at a time (a few dozen tiles: ``V`` and ``M`` a few
tens of kB), so everything between the image and its output stays in the L1 and L2 caches:

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

Every sum is formed in the order of the forward pass this one replaced (the transforms of
:mod:`numcnn.kernels.numba_winograd`, the channels in order with fused multiply-adds from zero, the
same output transform): its outputs were the same bits, checked on 24 shapes and both dtypes when
it was replaced. The tests bound them against the reference and check that the pooled pass equals
pooling the unpooled one, bit for bit. Images run in parallel (``prange``), each in thread-local
buffers: any thread count gives the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from numcnn.kernels.numba_lanes import BLOCK, lane_products, pool_image, store_image
from numcnn.kernels.simd import vadd, vlanes, vload, vstore, vsub

__all__ = [
    "EPILOGUE_NONE", "EPILOGUE_POOL", "EPILOGUE_POOL_RECORD", "EPILOGUE_RELU",
    "lanes_weight_transform", "band_rows_for", "winograd_forward_lanes",
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
    ``j`` of padded row ``y`` at ``[c, y, j % 2, j // 2]``."""
    channels, _, height, width = shape
    rows = split.shape[0] // (channels * 2 * (slots + 1))
    row_len = slots + 1
    pad_w = padding[1]
    for c in range(channels):
        for h in range(height):
            start = plane + c * plane_c + h * width
            base = (c * rows + h + padding[0]) * 2 * row_len
            for parity in range(2):
                # Slots s whose column j = 2s + parity is image column w = j − PW, 0 ≤ w < W: a
                # branch-free stride-2 loop (a division per pixel took three times as long).
                first = (pad_w - parity + 1) // 2
                last = (width - 1 + pad_w - parity) // 2
                row = base + parity * row_len
                for s in range(first, last + 1):
                    split[row + s] = src[start + 2 * s + parity - pad_w]


@njit(cache=True, nogil=True)
def _band_input_transform(split, channels, rows, slots, first_row, band_rows, band, v):
    """``V[ξ, c, k·S + s] = (Bᵀ d B)[ξ]`` for the tiles of tile rows ``first_row + k``, ``k < band_rows``:
    ``v`` flat ``(16, C, band)``, ``band`` ≥ ``band_rows·S`` (a last band may have fewer rows).

    ``Bᵀ``'s rows (1, 0, −1, 0), (0, 1, 1, 0), (0, −1, 1, 0), (0, 1, 0, −1) act on the patch's rows
    ``d0 … d3`` (each column ``j`` of the patch a vector over the tiles), then ``B`` on its columns.
    """
    lanes = vlanes(v)
    row_len = slots + 1
    plane = channels * band  # one ξ's (C, band) block
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
                out = c * band + k * slots + s
                # Row a of Bᵀ d, then B on its columns: V[4a + b].
                _columns(vsub(d00, d20), vsub(d01, d21), vsub(d02, d22), vsub(d03, d23), v, out, plane)
                _columns(vadd(d10, d20), vadd(d11, d21), vadd(d12, d22), vadd(d13, d23), v, out + 4 * plane, plane)
                _columns(vsub(d20, d10), vsub(d21, d11), vsub(d22, d12), vsub(d23, d13), v, out + 8 * plane, plane)
                _columns(vsub(d10, d30), vsub(d11, d31), vsub(d12, d32), vsub(d13, d33), v, out + 12 * plane, plane)


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
    v = np.empty(16 * channels * band, dtype=bias.dtype)
    most = -(-band_rows * tiles_w // BLOCK) * BLOCK  # a band's tiles, rounded up to whole blocks
    m = np.empty(16 * most * filters_padded, dtype=bias.dtype)
    points = m.reshape((16, most * filters_padded))  # M[ξ] (tiles, F'), a row per ξ
    no_bias = np.zeros(filters_padded, dtype=bias.dtype)  # the bias is added by the output transform
    offsets = np.empty((16, channels), dtype=np.int64)  # where V[ξ][c] starts in v
    for xi in range(16):
        for c in range(channels):
            offsets[xi, c] = (xi * channels + c) * band
    for first_row in range(0, tiles_h, band_rows):
        rows_here = min(band_rows, tiles_h - first_row)
        tiles = rows_here * tiles_w
        positions = np.empty(-(-tiles // BLOCK) * BLOCK, dtype=np.int64)
        for t in range(positions.shape[0]):
            q = min(t, tiles - 1)  # the last tile repeated up to a whole block (never read back)
            positions[t] = (q // tiles_w) * slots + q % tiles_w
        _band_input_transform(split, channels, rows, slots, first_row, rows_here, band, v)
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
