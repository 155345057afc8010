"""Winograd F(2×2, 3×3): 3×3 stride-1 convolutions with 2.25× fewer multiplications, compiled with numba.

Lavin & Gray (2016), *Fast Algorithms for Convolutional Neural Networks*. Cut each output plane into
2×2 tiles; the 4×4 input patch ``d`` under a tile and a 3×3 kernel ``g`` give the tile as

    ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``                                         (Lavin eq. 8)

with the constant matrices below. Summed over the input channels, the element-wise product becomes,
for each of the 16 positions ``ξ`` of the 4×4 transformed tile, one matrix product

    ``M[ξ] (F × T) = U[ξ] (F × C) · V[ξ] (C × T)``,   ``U = G g Gᵀ``,  ``V = Bᵀ d B``  (T: tiles)

that is 16·F·C multiply-adds per tile of four outputs instead of the 36·F·C of seed 004 eq. 15.25.
The identity is exact in exact arithmetic, so the backward passes are its chain rule, and equal the
gradients of eqs. 15.38 and 15.49 (up to rounding):

* ``∂E/∂M = A δ Aᵀ`` (δ's 2×2 tile lifted to 4×4), ``∂E/∂U[ξ] = Σ_T ∂E/∂M[ξ] · V[ξ]ᵀ`` and
  ``∂E/∂g = Gᵀ (∂E/∂U) G`` (eq. 15.38);
* ``∂E/∂V[ξ] = U[ξ]ᵀ · ∂E/∂M[ξ]`` and ``∂E/∂d = B (∂E/∂V) Bᵀ``, the 4×4 patches of neighbouring
  tiles overlapping by two rows or columns and added up (eq. 15.49).

F(2×2, 3×3)'s matrices hold only 0, ±1 and ±½, so in float32 its results differ from the direct
sums by a few units in the last place (Lavin §5; the tests bound it against the reference).

The forward pass is :mod:`numcnn.kernels.numba_winograd_lanes` (the filters in the vector lanes, a
band of tile rows at a time); this module holds the kernel transforms and both backward passes.

Backward, work is shared out in groups of whole images (a count that depends on the shape alone):
the caller runs the groups on the threads of :mod:`numcnn.kernels.gemm` (plain ``njit`` kernels that
release the GIL: ``prange`` versions took three times as long to compile). Each group transforms its
images and δ into ``V`` and ``∂E/∂M`` blocks (the products ``U[ξ]ᵀ ∂E/∂M[ξ]`` and the dot products
of ``∂E/∂M[ξ] V[ξ]ᵀ`` are the register-blocked loops of :mod:`numcnn.kernels.numba_blocked`, over
rows rounded up to whole blocks), and writes its own part of the input gradient and its own
per-group weight gradient, summed in group order by the caller, so any thread count gives bitwise
the same numbers. Padded images have ``Hq = 2·TH + 2`` rows (``TH`` tile rows), so odd output
sizes need no special case: the extra δ entries are zeros. The layout of a group is described below,
before :func:`_load_images`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numcnn.kernels.numba_blocked import PRODUCT_BLOCK_VECTORS, blocked_dots, blocked_products
from numcnn.kernels.simd import vlanes

__all__ = ["weight_transform", "weight_grad_transform", "winograd_backward"]

# Lavin eq. 8 for m = 2, r = 3 (rows of Bᵀ, G and Aᵀ).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def weight_transform(weight: np.ndarray) -> np.ndarray:
    """``U[ξ, f, c] = (G g[f, c] Gᵀ)[ξ]`` for a ``(F, C, 3, 3)`` weight: ``(16, F, C)``, C-contiguous.

    As one product: ``vec(G g Gᵀ) = (G ⊗ G) vec(g)`` for every kernel at once (an einsum over the
    six indices took milliseconds for 64 channels).
    """
    filters, channels = weight.shape[:2]
    kron = np.kron(G, G).astype(weight.dtype)  # (16, 9): [(a, b), (i, j)] = G[a, i] · G[b, j]
    return np.ascontiguousarray((kron @ weight.reshape(filters * channels, 9).T).reshape(16, filters, channels))


def weight_grad_transform(grad_u: np.ndarray) -> np.ndarray:
    """``∂E/∂g[f, c] = Gᵀ (∂E/∂U[·, f, c]) G``: ``(16, F, C)`` → ``(F, C, 3, 3)`` (the adjoint of the above)."""
    _, filters, channels = grad_u.shape
    kron = np.kron(G, G).astype(grad_u.dtype)
    return (grad_u.reshape(16, filters * channels).T @ kron).reshape(filters, channels, 3, 3)


@njit(cache=True, nogil=True)
def _row_width(length, like):
    """``length`` tiles rounded up to whole register blocks of :func:`blocked_products`."""
    block = PRODUCT_BLOCK_VECTORS * vlanes(like)
    return -(-length // block) * block


@njit(cache=True, nogil=True)
def _chunk_view(memory, planes, length, width):
    """``(planes, 16, width)`` rows over ``memory`` for a chunk of ``length`` tiles; the ``width − length``
    tiles past the end are zeroed (harmless to every product and dot: ``0 · V`` is 0 as long as ``V``
    is finite, and ``V`` is zero there too)."""
    view = memory[: planes * 16 * width].reshape(planes, 16, width)
    view[:, :, length:] = 0
    return view


@njit(cache=True, nogil=True)
def _rows_at(planes, xi, width):
    """Where row ``ξ`` of each plane of a ``(planes, 16, width)`` chunk starts in its flat memory."""
    return (np.arange(planes) * 16 + xi) * width


# -- the layout of a group of images -------------------------------------------------------------------
# A group's tiles in tile row r are numbered ``q = g·S + s`` (image g, tile column s < TW), with
# ``S = TW + 1`` slots per image and ``L = count·S``: one *super-row* holds tile row r of every image
# in the group, so each transform is one long vectorised loop per tile row instead of a short one
# per image (a 14-tile row left most of the work to the scalar remainder). Slot ``s = TW`` is a
# spare tile: it reads the last padded columns of its image and the first of the next, its output
# is dropped, and its δ is zero, so it adds nothing to either gradient.
#
# The group's padded images lie side by side, ``(C, Hq, 2·L + 2)``: image g's padded row y is at
# columns ``g·Wq … g·Wq + Wq − 1`` (``Wq = 2·S``), so tile ``q`` starts at column ``2q``; two zero
# columns at the end serve the last spare tile. ``V`` and ``M`` are kept per channel, ``(C, 16, L)``
# and ``(F, 16, L)``, one tile row at a time: each channel's sixteen rows are one 2-D block (one
# base pointer for LLVM, where sixteen separate rows cost more run-time alias checks than it makes).


@njit(cache=True, nogil=True)
def _load_images(src, plane_c, plane_n, shape, padding, first_image, count, padded_w, padded):
    """The group's images into the zeroed padded block, rows offset by ``PH`` and columns by ``PW``."""
    channels, _, height, width = shape
    for g in range(count):
        plane = (first_image + g) * plane_n
        lo = g * padded_w + padding[1]
        for c in range(channels):
            for h in range(height):
                start = plane + c * plane_c + h * width
                row = padded[c, h + padding[0]]
                for w in range(width):  # indices, not slices: a view costs two atomic reference counts
                    row[lo + w] = src[start + w]


@njit(cache=True, nogil=True)
def _input_transform(padded, r, lo, length, v, scratch):
    """``V[c, ξ, lo + q] = (Bᵀ d B)[ξ]`` for the tiles of tile row ``r``; ``scratch`` is ``(4, 2·L + 2)``.

    ``Bᵀ`` (rows (1, 0, −1, 0), (0, 1, 1, 0), (0, −1, 1, 0), (0, 1, 0, −1)) acts on four padded rows
    at once, then on the columns of each tile.
    """
    channels = padded.shape[0]
    run = padded.shape[2]
    t0, t1, t2, t3 = scratch[0], scratch[1], scratch[2], scratch[3]
    for c in range(channels):
        d0, d1, d2, d3 = padded[c, 2 * r], padded[c, 2 * r + 1], padded[c, 2 * r + 2], padded[c, 2 * r + 3]
        for x in range(run):
            t0[x] = d0[x] - d2[x]
            t1[x] = d1[x] + d2[x]
            t2[x] = d2[x] - d1[x]
            t3[x] = d1[x] - d3[x]
        for a in range(4):
            row = scratch[a]
            hi = lo + length
            v0, v1 = v[c, 4 * a, lo:hi], v[c, 4 * a + 1, lo:hi]
            v2, v3 = v[c, 4 * a + 2, lo:hi], v[c, 4 * a + 3, lo:hi]
            for q in range(length):
                e0, e1, e2, e3 = row[2 * q], row[2 * q + 1], row[2 * q + 2], row[2 * q + 3]
                v0[q] = e0 - e2
                v1[q] = e1 + e2
                v2[q] = e2 - e1
                v3[q] = e1 - e3


@njit(cache=True, nogil=True)
def _load_grad(grad, grad_plane_f, grad_plane_n, out_size, first_image, count, padded_w, padded_grad):
    """δ of the group into the zeroed ``(F, 2·TH, 2·L)`` block, image g from column ``g·Wq``."""
    out_h, out_w = out_size
    filters = padded_grad.shape[0]
    for g in range(count):
        for f in range(filters):
            for p in range(out_h):
                start = (first_image + g) * grad_plane_n + f * grad_plane_f + p * out_w
                row = padded_grad[f, p]
                first = g * padded_w
                for x in range(out_w):
                    row[first + x] = grad[start + x]


@njit(cache=True, nogil=True)
def _grad_transform(padded_grad, r, lo, length, dm):
    """``∂E/∂M[f, ξ, lo + q] = (A δ Aᵀ)[ξ]`` for the tiles of tile row ``r``.

    ``A``'s rows are (1, 0), (1, 1), (1, −1), (0, −1). δ beyond ``(OH, OW)`` and at the spare tiles
    is zero (the block was zeroed). Four passes, one per row of ``A``, each writing four rows of
    ``∂E/∂M`` (fewer streams per loop vectorise better).
    """
    filters = padded_grad.shape[0]
    hi = lo + length
    for f in range(filters):
        upper, lower = padded_grad[f, 2 * r], padded_grad[f, 2 * r + 1]
        for a in range(4):
            d0, d1 = dm[f, 4 * a, lo:hi], dm[f, 4 * a + 1, lo:hi]
            d2, d3 = dm[f, 4 * a + 2, lo:hi], dm[f, 4 * a + 3, lo:hi]
            for q in range(length):
                # Row a of A on the tile's rows: (g0, g0 + g1, g0 − g1, −g1); then A on the columns.
                if a == 0:
                    h0, h1 = upper[2 * q], upper[2 * q + 1]
                elif a == 1:
                    h0, h1 = upper[2 * q] + lower[2 * q], upper[2 * q + 1] + lower[2 * q + 1]
                elif a == 2:
                    h0, h1 = upper[2 * q] - lower[2 * q], upper[2 * q + 1] - lower[2 * q + 1]
                else:
                    h0, h1 = -lower[2 * q], -lower[2 * q + 1]
                d0[q], d1[q], d2[q], d3[q] = h0, h0 + h1, h0 - h1, -h1


@njit(cache=True, nogil=True)
def _input_grad_transform(dv, r, lo, length, split):
    """``∂E/∂d = B (∂E/∂V) Bᵀ`` for the tiles of tile row ``r``, added into ``split`` ``(C, Hq, 2, L + 1)``.

    ``B``'s rows are (1, 0, 0, 0), (0, 1, −1, 1), (−1, 1, 1, 0), (0, 0, 0, −1). ``split`` keeps each
    padded row as its even and odd columns: a tile's columns 2q, 2q + 1, 2q + 2, 2q + 3 are
    ``[0, q], [1, q], [0, q + 1], [1, q + 1]``, each added in its own unit-stride pass (neighbouring
    tiles overlap by two columns, and tile rows by two rows: they are added one after the other).
    """
    channels = split.shape[0]
    hi = lo + length
    for c in range(channels):
        v0, v1 = dv[c, 0, lo:hi], dv[c, 1, lo:hi]
        v2, v3 = dv[c, 2, lo:hi], dv[c, 3, lo:hi]
        v4, v5 = dv[c, 4, lo:hi], dv[c, 5, lo:hi]
        v6, v7 = dv[c, 6, lo:hi], dv[c, 7, lo:hi]
        v8, v9 = dv[c, 8, lo:hi], dv[c, 9, lo:hi]
        v10, v11 = dv[c, 10, lo:hi], dv[c, 11, lo:hi]
        v12, v13 = dv[c, 12, lo:hi], dv[c, 13, lo:hi]
        v14, v15 = dv[c, 14, lo:hi], dv[c, 15, lo:hi]
        for i in range(4):
            row = split[c, 2 * r + i]
            even, odd = row[0], row[1]
            # Row i of B ∂E/∂V (one combination of its rows a, for each column b), then Bᵀ on the columns.
            if i == 0:
                _add_columns(v0, v1, v2, v3, even, odd)
            elif i == 1:
                for q in range(length):
                    e0, e1 = v4[q] - v8[q] + v12[q], v5[q] - v9[q] + v13[q]
                    e2, e3 = v6[q] - v10[q] + v14[q], v7[q] - v11[q] + v15[q]
                    even[q] += e0
                    odd[q] += e1 - e2 + e3
                for q in range(length):
                    e0, e1 = v4[q] - v8[q] + v12[q], v5[q] - v9[q] + v13[q]
                    e2, e3 = v6[q] - v10[q] + v14[q], v7[q] - v11[q] + v15[q]
                    even[q + 1] += e1 + e2 - e0
                    odd[q + 1] -= e3
            elif i == 2:
                for q in range(length):
                    e0, e1 = v4[q] + v8[q] - v0[q], v5[q] + v9[q] - v1[q]
                    e2, e3 = v6[q] + v10[q] - v2[q], v7[q] + v11[q] - v3[q]
                    even[q] += e0
                    odd[q] += e1 - e2 + e3
                for q in range(length):
                    e0, e1 = v4[q] + v8[q] - v0[q], v5[q] + v9[q] - v1[q]
                    e2, e3 = v6[q] + v10[q] - v2[q], v7[q] + v11[q] - v3[q]
                    even[q + 1] += e1 + e2 - e0
                    odd[q + 1] -= e3
            else:
                for q in range(length):
                    even[q] -= v12[q]
                    odd[q] -= v13[q] - v14[q] + v15[q]
                for q in range(length):
                    even[q + 1] -= v13[q] + v14[q] - v12[q]
                    odd[q + 1] += v15[q]


@njit(cache=True, nogil=True)
def _add_columns(e0, e1, e2, e3, even, odd):
    """Bᵀ on the columns of one tile row ``(e0, e1, e2, e3)`` of every tile, added into the split row."""
    for q in range(e0.shape[0]):
        even[q] += e0[q]
        odd[q] += e1[q] - e2[q] + e3[q]
    for q in range(e0.shape[0]):
        even[q + 1] += e1[q] + e2[q] - e0[q]
        odd[q + 1] -= e3[q]


@njit(cache=True, nogil=True)
def _store_input_grad(split, padding, first_image, count, shape, scratch, out):
    """Interleave the group's padded gradients and crop them into ``out`` (flat channel-major ``(C, N, H, W)``)."""
    channels, batch, height, width = shape
    length = split.shape[3] - 1
    padded_w = 2 * (length // count)
    for c in range(channels):
        for h in range(height):
            even, odd = split[c, h + padding[0], 0], split[c, h + padding[0], 1]
            for q in range(length):
                scratch[2 * q] = even[q]
                scratch[2 * q + 1] = odd[q]
            for g in range(count):
                dst = ((c * batch + first_image + g) * height + h) * width
                first = g * padded_w + padding[1]
                for w in range(width):
                    out[dst + w] = scratch[first + w]


@njit(cache=True)
def _group_geometry(batch, group, per_group, out_size, chunk_tiles):
    """``(first image, count, TH, Wq, L, tile rows per chunk)`` of one group."""
    start = group * per_group
    count = min(per_group, batch - start)
    tiles_h = (out_size[0] + 1) // 2
    slots = (out_size[1] + 1) // 2 + 1
    length = count * slots
    return start, count, tiles_h, 2 * slots, length, max(1, min(tiles_h, chunk_tiles // length))


@njit(cache=True, nogil=True)
def winograd_backward(
    src, plane_c, plane_n, shape, padding, grad, grad_plane_f, grad_plane_n, out_size, u_t, per_group,
    chunk_tiles, groups, need_input, partial, grad_input,
):  # fmt: skip
    """Both gradients of a 3×3 stride-1 convolution (eqs. 15.38 and 15.49 through the Winograd identity).

    ``partial[group]`` ``(16, F, C)`` gets ``∂E/∂U`` summed over the group's tiles (the caller sums the
    groups in order and applies :func:`weight_grad_transform`); if ``need_input``, ``grad_input``
    flat channel-major ``(C, N, H, W)`` gets ``∂E/∂x``. ``u_t`` is ``U`` with F and C swapped ``(16, C, F)``.
    """
    channels, batch, _, _ = shape
    filters = u_t.shape[2]
    for group in range(groups[0], groups[1]):
        start, count, tiles_h, padded_w, length, chunk = _group_geometry(batch, group, per_group, out_size, chunk_tiles)
        padded = np.zeros((channels, 2 * tiles_h + 2, 2 * length + 2), dtype=u_t.dtype)
        padded_grad = np.zeros((filters, 2 * tiles_h, 2 * length), dtype=u_t.dtype)
        scratch = np.empty((4, 2 * length + 2), dtype=u_t.dtype)
        v_memory = np.empty(channels * 16 * _row_width(chunk * length, u_t), dtype=u_t.dtype)
        dm_memory = np.empty(filters * 16 * _row_width(chunk * length, u_t), dtype=u_t.dtype)
        no_bias = np.zeros(channels, dtype=u_t.dtype)
        one_segment = np.zeros(1, dtype=np.int64)
        _load_images(src, plane_c, plane_n, shape, padding, start, count, padded_w, padded)
        _load_grad(grad, grad_plane_f, grad_plane_n, out_size, start, count, padded_w, padded_grad)
        split = np.zeros((channels, 2 * tiles_h + 2, 2, length + 1) if need_input else (1, 1, 1, 1), dtype=u_t.dtype)
        sums = partial[group]
        sums[:, :, :] = 0
        for first_row in range(0, tiles_h, chunk):
            rows = min(chunk, tiles_h - first_row)
            width = _row_width(rows * length, u_t)
            v = _chunk_view(v_memory, channels, rows * length, width)
            dm = _chunk_view(dm_memory, filters, rows * length, width)
            for k in range(rows):
                _input_transform(padded, first_row + k, k * length, length, v, scratch)
                _grad_transform(padded_grad, first_row + k, k * length, length, dm)
            for xi in range(16):  # ∂E/∂U[ξ] += ∂E/∂M[ξ] V[ξ]ᵀ
                dm_rows, v_rows = _rows_at(filters, xi, width), _rows_at(channels, xi, width)
                blocked_dots(dm_memory, dm_rows, one_segment, v_memory, v_rows, one_segment, width, sums[xi])
                if need_input:  # ∂E/∂V[ξ] = U[ξ]ᵀ ∂E/∂M[ξ], over V[ξ] (no longer needed)
                    blocked_products(u_t[xi], no_bias, dm_memory, dm_rows, v_memory, v_rows, width)
            if need_input:
                for k in range(rows):
                    _input_grad_transform(v, first_row + k, k * length, length, split)
        if need_input:
            _store_input_grad(split, padding, start, count, shape, scratch[0], grad_input)
