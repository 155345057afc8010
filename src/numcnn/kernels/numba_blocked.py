"""The two register-blocked loops the direct convolutions spend their time in.

Direct convolution (:mod:`numcnn.kernels.numba_conv`) reduces to sums over *rows*: runs of
contiguous elements of a flat array, each named by the offset where it starts. Naming rows by
offsets lets one loop serve a tap of a padded image (a run that starts ``(c·Hp + i)·Wp + j`` in)
and a row of δ alike. (Winograd's products used these loops too until they moved to the filters-in-
lanes loops of :mod:`numcnn.kernels.numba_lanes`, a band of tiles at a time.)

* :func:`blocked_products` -- ``out_row[f] = bias[f] + Σ_k weight[f, k] · row[k]``: eq. 15.25 on wide
  rows (and, over δ, eq. 15.49).
* :func:`blocked_dots` -- ``out[i, j] += a_row[i] · b_row[j]``: eq. 15.38's weight gradient.

Both hold a block of twelve vector accumulators in registers while the loop over the summed index
runs (:mod:`numcnn.kernels.simd` explains why that needs explicit vectors): four output rows × three
vectors of positions, or four rows × three rows of dot products. Per step that is seven vector
loads or broadcasts for twelve multiply-adds, so the loop runs at the multiply-add units' speed,
where the loops they replaced loaded and stored their accumulators at every step (probed 1.4–2×
faster on the exercise 15.6, LeNet-5 and ``resnet_mnist`` layers).

Row lengths are whole blocks: the callers round their rows up (three vectors for the products, one
for the dots) and keep the extra entries harmless -- zeros, or outputs nobody reads -- and keep every
row's whole rounded run inside its array. Multiply-adds are fused (one rounding), and the dots add
their lanes at the end: the sums equal the reference's up to rounding, the same on any thread count.
"""

from __future__ import annotations

from numba import njit

from numcnn.kernels.simd import vadd, vfma, vlanes, vload, vsplat, vstore, vsum

__all__ = ["PRODUCT_BLOCK_VECTORS", "blocked_products", "blocked_dots"]

#: Vectors of positions per block of :func:`blocked_products`: rows there are a multiple of this × lanes.
PRODUCT_BLOCK_VECTORS = 3


@njit(cache=True, nogil=True)
def blocked_products(weight, bias, source, source_rows, out, out_rows, width, accumulate=False):
    """``out[out_rows[f] + t] = bias[f] + Σ_k weight[f, k] · source[source_rows[k] + t]`` for ``t < width``;
    with ``accumulate``, ``+=`` instead of ``=``.

    Shapes: ``weight`` ``(F, K)``, ``bias`` ``(F,)``, ``source_rows`` ``(K,)``, ``out_rows`` ``(F,)``;
    ``source`` and ``out`` flat. ``width`` is a multiple of :data:`PRODUCT_BLOCK_VECTORS` × lanes.
    Blocks of positions are the outer loop, so a block's ``K`` source runs are read from the cache
    by every group of four filters. Output rows may overlap when accumulating (a scatter): each
    row's block is added in turn, in order.
    """
    lanes = vlanes(out)
    step = PRODUCT_BLOCK_VECTORS * lanes
    filters, taps = weight.shape
    for t in range(0, width, step):
        for f in range(0, filters - filters % 4, 4):
            a00 = vsplat(bias[f])
            a10 = vsplat(bias[f + 1])
            a20 = vsplat(bias[f + 2])
            a30 = vsplat(bias[f + 3])
            a01, a02, a11, a12, a21, a22, a31, a32 = a00, a00, a10, a10, a20, a20, a30, a30
            for k in range(taps):
                at = source_rows[k] + t
                x0, x1, x2 = vload(source, at), vload(source, at + lanes), vload(source, at + 2 * lanes)
                w = vsplat(weight[f, k])
                a00, a01, a02 = vfma(w, x0, a00), vfma(w, x1, a01), vfma(w, x2, a02)
                w = vsplat(weight[f + 1, k])
                a10, a11, a12 = vfma(w, x0, a10), vfma(w, x1, a11), vfma(w, x2, a12)
                w = vsplat(weight[f + 2, k])
                a20, a21, a22 = vfma(w, x0, a20), vfma(w, x1, a21), vfma(w, x2, a22)
                w = vsplat(weight[f + 3, k])
                a30, a31, a32 = vfma(w, x0, a30), vfma(w, x1, a31), vfma(w, x2, a32)
            _store3(out, out_rows[f] + t, lanes, a00, a01, a02, accumulate)
            _store3(out, out_rows[f + 1] + t, lanes, a10, a11, a12, accumulate)
            _store3(out, out_rows[f + 2] + t, lanes, a20, a21, a22, accumulate)
            _store3(out, out_rows[f + 3] + t, lanes, a30, a31, a32, accumulate)
        if filters % 4 >= 2:  # a leftover pair: six accumulators (0.85× two single rows; LeNet-5's 6 = 4 + 2)
            f = filters - filters % 4
            a00 = vsplat(bias[f])
            a10 = vsplat(bias[f + 1])
            a01, a02, a11, a12 = a00, a00, a10, a10
            for k in range(taps):
                at = source_rows[k] + t
                x0, x1, x2 = vload(source, at), vload(source, at + lanes), vload(source, at + 2 * lanes)
                w = vsplat(weight[f, k])
                a00, a01, a02 = vfma(w, x0, a00), vfma(w, x1, a01), vfma(w, x2, a02)
                w = vsplat(weight[f + 1, k])
                a10, a11, a12 = vfma(w, x0, a10), vfma(w, x1, a11), vfma(w, x2, a12)
            _store3(out, out_rows[f] + t, lanes, a00, a01, a02, accumulate)
            _store3(out, out_rows[f + 1] + t, lanes, a10, a11, a12, accumulate)
        if filters % 2:  # a last, odd filter
            f = filters - 1
            a0 = vsplat(bias[f])
            a1, a2 = a0, a0
            for k in range(taps):
                at = source_rows[k] + t
                w = vsplat(weight[f, k])
                a0 = vfma(w, vload(source, at), a0)
                a1 = vfma(w, vload(source, at + lanes), a1)
                a2 = vfma(w, vload(source, at + 2 * lanes), a2)
            _store3(out, out_rows[f] + t, lanes, a0, a1, a2, accumulate)


@njit(cache=True, nogil=True, inline="always")
def _store3(out, at, lanes, a0, a1, a2, accumulate):
    if accumulate:
        a0 = vadd(vload(out, at), a0)
        a1 = vadd(vload(out, at + lanes), a1)
        a2 = vadd(vload(out, at + 2 * lanes), a2)
    vstore(out, at, a0)
    vstore(out, at + lanes, a1)
    vstore(out, at + 2 * lanes, a2)


@njit(cache=True, nogil=True)
def blocked_dots(a, a_rows, a_shifts, b, b_rows, b_shifts, width, out):
    """``out[i, j] += Σ_s Σ_{t < width} a[a_rows[i] + a_shifts[s] + t] · b[b_rows[j] + b_shifts[s] + t]``.

    Shapes: ``a_rows`` ``(I,)``, ``b_rows`` ``(J,)``, ``a_shifts`` and ``b_shifts`` ``(S,)``, ``out``
    ``(I, J)``; ``a`` and ``b`` flat; ``width`` a multiple of lanes. The ``S`` segments (the images of
    a group, for a weight gradient) share the accumulators, so their lanes are added once, at the end.
    """
    lanes = vlanes(out)
    zero = out.dtype.type(0)
    rows, cols, segments = a_rows.shape[0], b_rows.shape[0], a_shifts.shape[0]
    whole_cols = cols - cols % 3
    for i in range(0, rows - rows % 4, 4):
        for j in range(0, whole_cols, 3):
            s00 = vsplat(zero)
            s01, s02, s10, s11, s12, s20 = s00, s00, s00, s00, s00, s00
            s21, s22, s30, s31, s32 = s00, s00, s00, s00, s00
            for s in range(segments):
                sa, sb = a_shifts[s], b_shifts[s]
                r0, r1, r2, r3 = a_rows[i] + sa, a_rows[i + 1] + sa, a_rows[i + 2] + sa, a_rows[i + 3] + sa
                c0, c1, c2 = b_rows[j] + sb, b_rows[j + 1] + sb, b_rows[j + 2] + sb
                for t in range(0, width, lanes):
                    x0, x1, x2 = vload(b, c0 + t), vload(b, c1 + t), vload(b, c2 + t)
                    e = vload(a, r0 + t)
                    s00, s01, s02 = vfma(e, x0, s00), vfma(e, x1, s01), vfma(e, x2, s02)
                    e = vload(a, r1 + t)
                    s10, s11, s12 = vfma(e, x0, s10), vfma(e, x1, s11), vfma(e, x2, s12)
                    e = vload(a, r2 + t)
                    s20, s21, s22 = vfma(e, x0, s20), vfma(e, x1, s21), vfma(e, x2, s22)
                    e = vload(a, r3 + t)
                    s30, s31, s32 = vfma(e, x0, s30), vfma(e, x1, s31), vfma(e, x2, s32)
            out[i, j] += vsum(s00)
            out[i, j + 1] += vsum(s01)
            out[i, j + 2] += vsum(s02)
            out[i + 1, j] += vsum(s10)
            out[i + 1, j + 1] += vsum(s11)
            out[i + 1, j + 2] += vsum(s12)
            out[i + 2, j] += vsum(s20)
            out[i + 2, j + 1] += vsum(s21)
            out[i + 2, j + 2] += vsum(s22)
            out[i + 3, j] += vsum(s30)
            out[i + 3, j + 1] += vsum(s31)
            out[i + 3, j + 2] += vsum(s32)
        for j in range(whole_cols, cols):  # leftover columns, four rows at a time
            s0 = vsplat(zero)
            s1, s2, s3 = s0, s0, s0
            for s in range(segments):
                sa = a_shifts[s]
                r0, r1, r2, r3 = a_rows[i] + sa, a_rows[i + 1] + sa, a_rows[i + 2] + sa, a_rows[i + 3] + sa
                c0 = b_rows[j] + b_shifts[s]
                for t in range(0, width, lanes):
                    x = vload(b, c0 + t)
                    s0, s1 = vfma(vload(a, r0 + t), x, s0), vfma(vload(a, r1 + t), x, s1)
                    s2, s3 = vfma(vload(a, r2 + t), x, s2), vfma(vload(a, r3 + t), x, s3)
            out[i, j] += vsum(s0)
            out[i + 1, j] += vsum(s1)
            out[i + 2, j] += vsum(s2)
            out[i + 3, j] += vsum(s3)
    for i in range(rows - rows % 4, rows):  # leftover rows, three columns at a time
        for j in range(0, whole_cols, 3):
            s0 = vsplat(zero)
            s1, s2 = s0, s0
            for s in range(segments):
                r0, sb = a_rows[i] + a_shifts[s], b_shifts[s]
                c0, c1, c2 = b_rows[j] + sb, b_rows[j + 1] + sb, b_rows[j + 2] + sb
                for t in range(0, width, lanes):
                    e = vload(a, r0 + t)
                    s0 = vfma(e, vload(b, c0 + t), s0)
                    s1 = vfma(e, vload(b, c1 + t), s1)
                    s2 = vfma(e, vload(b, c2 + t), s2)
            out[i, j] += vsum(s0)
            out[i, j + 1] += vsum(s1)
            out[i, j + 2] += vsum(s2)
        for j in range(whole_cols, cols):
            s0 = vsplat(zero)
            for s in range(segments):
                r0, c0 = a_rows[i] + a_shifts[s], b_rows[j] + b_shifts[s]
                for t in range(0, width, lanes):
                    s0 = vfma(vload(a, r0 + t), vload(b, c0 + t), s0)
            out[i, j] += vsum(s0)
