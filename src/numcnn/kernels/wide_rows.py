"""Stride-1 convolution on *wide rows*: im2col whose copies are long contiguous runs (numpy backend).

NumPy copies and element-wise passes cost a roughly fixed overhead per innermost *run* of
contiguous elements. The kernel-major unfolding of :mod:`numcnn.kernels.unfold` copies runs only
``OW`` long (10 for LeNet-5's second layer: 96,000 runs per batch of 64), and that overhead, not the
bytes, dominated the layer. For stride 1 the runs can be made a whole image long:

Index the output by ``t = p·Wp + q`` (``Wp`` = padded width), i.e. compute each output row on the
full padded width and ignore its last ``Wp − OW = KW − 1`` entries. Then, with the padded input
flattened per channel (``x_flat[c, n·Hp·Wp + r·Wp + w]``), the unfolding is

    ``cols[(c, i, j), (n, t)] = x_flat[c, n·Hp·Wp + i·Wp + j + t]``,   ``t = 0 … OH·Wp − 1``

-- one contiguous run of ``L = OH·Wp`` elements per ``(c, i, j, n)``. The price is ``Wp / OW`` more
columns in the matrix products (1.4× for LeNet-5's second layer), so the numpy backend uses this
form only while ``Wp ≤ 2·OW``. The "wide" outputs ``q ≥ OW`` read pixels of the next row (or, for the
last image, of ``KW − 1`` zeros appended to the buffer); they are computed and never used.

The three products of seed 004 in this layout (``F`` filters, ``D`` = δ on wide rows, zero at ``q ≥ OW``):

* eq. 15.25, forward: ``Y = [W_mat | b] · [cols; 1]`` -- the bias rides along as an extra row of
  ones, so there is no separate bias pass;
* eq. 15.38, weight gradient: ``[∂E/∂W | ∂E/∂b] = D · [cols; 1]ᵀ`` -- the bias gradient comes out of
  the same product. OpenBLAS handles this very long inner dimension (``N·L``) poorly, so it is
  split into cache-sized chunks multiplied as one stacked ``matmul`` and summed;
* eq. 15.49, input gradient, grouped by kernel row ``i`` (as in
  :func:`~numcnn.kernels.unfold.input_gradient_by_rows`):
  ``∂E/∂x_flat[c, n, (p + i)·Wp + w] += Σ_{f, j} W[f, c, i, j] · E[(f, j), (n, p, w)]`` with
  ``E[(f, j), s] = D[f, s − j]``. Because ``D`` is zero on the wide columns, shifting a whole
  row of ``D`` right by ``j`` is exactly "spread δ along the padded width": ``E`` is ``F·KW`` long
  contiguous copies, then one product and ``KH`` additions of whole image-long runs.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from numcnn.kernels.unfold import channel_major, output_size

__all__ = [
    "WideConvCache",
    "WideGeometry",
    "Workspace",
    "wide_conv_forward",
    "wide_conv_backward",
    "wide_geometry",
    "wide_rows_pay_off",
]


class WideGeometry(NamedTuple):
    """Sizes of a stride-1 convolution on wide rows (padded input ``Hp × Wp``, output ``OH × OW``)."""

    height: int  # H
    width: int  # W
    pad_h: int
    pad_w: int
    kernel_h: int
    kernel_w: int
    out_h: int
    out_w: int

    @property
    def padded_h(self) -> int:
        return self.height + 2 * self.pad_h

    @property
    def padded_w(self) -> int:
        return self.width + 2 * self.pad_w

    @property
    def image(self) -> int:
        """Elements of one padded image, ``Hp·Wp``."""
        return self.padded_h * self.padded_w

    @property
    def run(self) -> int:
        """Wide output elements per image, ``L = OH·Wp``."""
        return self.out_h * self.padded_w


def wide_geometry(input_size, kernel, padding) -> WideGeometry:
    out_h, out_w = output_size(input_size, kernel, (1, 1), padding)
    return WideGeometry(*input_size, *padding, *kernel, out_h, out_w)


def wide_rows_pay_off(input_size, kernel, stride, padding) -> bool:
    """Whether the numpy backend runs this convolution on wide rows: stride 1 and at most twice as
    many columns as the compact unfolding (``Wp ≤ 2·OW``)."""
    if tuple(stride) != (1, 1):
        return False
    out_h, out_w = output_size(input_size, kernel, (1, 1), padding)
    return out_h >= 1 and out_w >= 1 and input_size[1] + 2 * padding[1] <= 2 * out_w


class Workspace:
    """Scratch arrays reused across calls, one set per thread and per ``(name, shape, dtype)``.

    ``zeroed=True`` arrays are zero when first made; callers keep the parts they never write
    zero (the wide columns of ``D``), so those need no clearing on later calls.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], dtype, zeroed: bool = False) -> np.ndarray:
        arrays = self._local.__dict__.setdefault("arrays", {})
        key = (name, shape, np.dtype(dtype).str)
        array = arrays.get(key)
        if array is None:
            if len(arrays) > 64:  # many shapes (e.g. varying batch sizes): start again
                arrays.clear()
            array = arrays[key] = (np.zeros if zeroed else np.empty)(shape, dtype=dtype)
        return array


class WideConvCache(NamedTuple):
    flat: np.ndarray  # (C, N·Hp·Wp + KW − 1): the padded input, see _padded_flat
    columns: np.ndarray | None  # (C·KH·KW [+ 1 ones row], N·L): [φ(x)ᵀ; 1], or None: unfold again
    weight: np.ndarray  # (F, C, KH, KW)
    geometry: WideGeometry
    has_bias: bool


def _padded_flat(cm: np.ndarray, g: WideGeometry) -> np.ndarray:
    """``(C, N, H, W)`` → ``(C, N·Hp·Wp + KW − 1)``: zero border, then ``KW − 1`` zeros read only by wide outputs."""
    channels, n = cm.shape[:2]
    flat = np.empty((channels, n * g.image + g.kernel_w - 1), dtype=cm.dtype)
    flat[:, n * g.image :] = 0
    padded = flat[:, : n * g.image].reshape(channels, n, g.padded_h, g.padded_w)
    h, w, ph, pw = g.height, g.width, g.pad_h, g.pad_w
    if ph or pw:  # border strips only; the interior is written once below
        padded[:, :, :ph] = 0
        padded[:, :, ph + h :] = 0
        padded[:, :, ph : ph + h, :pw] = 0
        padded[:, :, ph : ph + h, pw + w :] = 0
    padded[:, :, ph : ph + h, pw : pw + w] = cm
    return flat


def _columns_view(flat: np.ndarray, n: int, g: WideGeometry) -> np.ndarray:
    """Read-only view ``(C, KH, KW, N, L)``: ``view[c, i, j, n, t] = flat[c, n·Hp·Wp + i·Wp + j + t]``."""
    s_c, item = flat.strides
    shape = (flat.shape[0], g.kernel_h, g.kernel_w, n, g.run)
    strides = (s_c, g.padded_w * item, item, g.image * item, item)
    return as_strided(flat, shape=shape, strides=strides, writeable=False)


def wide_conv_forward(x: np.ndarray, weight: np.ndarray, bias, padding, block_bytes: int, store: bool, workspace):
    """Stride-1 convolution ``y = W ⋆ x + b`` (eq. 15.25) on wide rows.

    Shape:
        - x: ``(N, C, H, W)``, any memory layout; weight: ``(F, C, KH, KW)``; bias: ``(F,)`` or None
        - returns ``(y, cache)``: y ``(N, F, OH, OW)``, the NCHW view of channel-major wide rows
          ``(F, N, OH, Wp)[..., :OW]``

    The unfolding and the product run a block of images at a time (``block_bytes`` of columns), so
    each block is still in the L2 cache when the product reads it.
    """
    n = x.shape[0]
    filters = weight.shape[0]
    g = wide_geometry(x.shape[2:], weight.shape[2:], padding)
    flat = _padded_flat(channel_major(x), g)
    windows = _columns_view(flat, n, g)
    rows = weight[0].size
    has_bias = bias is not None
    block = max(1, block_bytes // ((rows + has_bias) * g.run * x.dtype.itemsize))
    if store:
        columns = np.empty((rows + has_bias, n * g.run), dtype=x.dtype)
    else:
        columns = workspace.get("columns", (rows + has_bias, block * g.run), x.dtype)
    matrix = weight.reshape(filters, rows)
    if has_bias:
        columns[rows] = 1
        matrix = np.concatenate([matrix, bias.reshape(filters, 1)], axis=1)  # [W_mat | b]
    y = np.empty((filters, n * g.run), dtype=x.dtype)
    for start in range(0, n, block):
        stop = min(n, start + block)
        span = slice(start * g.run, stop * g.run)
        part = columns[:, span] if store else columns[:, : (stop - start) * g.run]
        np.copyto(part[:rows].reshape(windows.shape[:3] + (stop - start, g.run)), windows[:, :, :, start:stop])
        np.matmul(matrix, part, out=y[:, span])
    wide = y.reshape(filters, n, g.out_h, g.padded_w)
    cache = WideConvCache(flat, columns if store else None, weight, g, has_bias)
    return wide[..., : g.out_w].transpose(1, 0, 2, 3), cache


def _recomputed_weight_gradient(cache: WideConvCache, delta: np.ndarray, block_bytes: int, workspace) -> np.ndarray:
    """``D · [φ(x)ᵀ; 1]ᵀ`` unfolding the input again, a cache-sized block of images at a time."""
    g, weight = cache.geometry, cache.weight
    rows = weight[0].size + cache.has_bias
    filters = delta.shape[0]
    n = delta.shape[1] // g.run
    windows = _columns_view(cache.flat, n, g)
    block = max(1, block_bytes // (rows * g.run * delta.itemsize))
    columns = workspace.get("columns", (rows, block * g.run), delta.dtype)
    if cache.has_bias:
        columns[-1] = 1
    partial = workspace.get("partial", (rows, filters), delta.dtype)
    result = np.zeros((rows, filters), dtype=delta.dtype)
    for start in range(0, n, block):
        stop = min(n, start + block)
        part = columns[:, : (stop - start) * g.run]
        np.copyto(part[: weight[0].size].reshape(windows.shape[:3] + (stop - start, g.run)), windows[:, :, :, start:stop])
        np.matmul(part, delta[:, start * g.run : stop * g.run].T, out=partial)
        result += partial
    return result.T


# Below this many output elements (F · rows) OpenBLAS multiplies a very long inner dimension
# poorly (LeNet-5's first layer, 6 × 26 outputs over 57,344 columns: 0.7–0.9 ms in one product,
# 0.27 ms in 64 small ones); above it (the second layer, 16 × 151) one product is faster.
SMALL_OUTPUT = 1024


def _weight_gradient(columns: np.ndarray, delta: np.ndarray, chunk_bytes: int) -> np.ndarray:
    """``D · columnsᵀ``; for a small output with the long inner dimension cut into cache-sized chunks.

    Shape: columns ``(R, S)``, delta ``(F, S)`` (rows may be strided) → ``(F, R)``. One stacked
    ``matmul`` multiplies all whole chunks of ``chunk_bytes`` of columns, and the partial
    products are summed; a remainder shorter than a chunk is one more product.
    """
    rows, total = columns.shape
    filters = delta.shape[0]
    if rows * filters > SMALL_OUTPUT:
        return (columns @ delta.T).T  # long rows as the shared inner dimension of both operands
    chunk = max(1, chunk_bytes // (rows * columns.itemsize))
    pieces = total // chunk
    result = np.zeros((rows, filters), dtype=columns.dtype)
    if pieces > 1:
        whole = pieces * chunk
        stacked_columns = columns[:, :whole].reshape(rows, pieces, chunk).transpose(1, 0, 2)  # (P, R, chunk)
        stacked_delta = delta[:, :whole].reshape(filters, pieces, chunk).transpose(1, 2, 0)  # (P, chunk, F)
        np.sum(np.matmul(stacked_columns, stacked_delta), axis=0, out=result)
    else:
        whole = 0
    if whole < total:
        result += columns[:, whole:] @ delta[:, whole:].T
    return result.T


def wide_conv_backward(
    grad_output: np.ndarray, cache: WideConvCache, need_input_grad: bool, workspace: Workspace, chunk_bytes: int
):
    """Gradients of :func:`wide_conv_forward` (eqs. 15.38, 15.49 and ``∂E/∂b = Σ δ``).

    Shape:
        - grad_output: ``(N, F, OH, OW)``, any memory layout
        - returns ``(∂E/∂x (N, C, H, W) or None, ∂E/∂W (F, C, KH, KW), ∂E/∂b (F,))``
    """
    g, weight = cache.geometry, cache.weight
    filters, channels = weight.shape[:2]
    n = grad_output.shape[0]
    rows = weight[0].size
    shift = g.kernel_w - 1  # zeros in front of D, read by the shifted copies for the first image
    # δ on wide rows. Only the valid columns are ever written, so the wide columns and the zeros
    # in front stay zero from the workspace's first use on.
    wide_delta = workspace.get("wide_delta", (filters, shift + n * g.run), grad_output.dtype, zeroed=True)
    delta = wide_delta[:, shift:]
    valid = delta.reshape(filters, n, g.out_h, g.padded_w)[..., : g.out_w]
    np.copyto(valid, channel_major(grad_output))
    if cache.columns is None:
        gradients = _recomputed_weight_gradient(cache, delta, chunk_bytes, workspace)
    else:
        gradients = _weight_gradient(cache.columns, delta, chunk_bytes)  # (F, C·KH·KW [+ 1])
    grad_weight = gradients[:, :rows].reshape(weight.shape)
    # Without a bias the layer ignores ∂E/∂b; it is still returned, like on the other backends.
    grad_bias = gradients[:, rows] if cache.has_bias else delta.sum(axis=1)
    grad_input = None
    if need_input_grad:
        grad_input = _input_gradient(wide_delta, weight, g, n, workspace).transpose(1, 0, 2, 3)
    return grad_input, grad_weight, grad_bias


def _input_gradient(wide_delta, weight, g: WideGeometry, n: int, workspace: Workspace) -> np.ndarray:
    """``∂E/∂x`` (eq. 15.49) from δ on wide rows; see the module docstring. Returns ``(C, N, H, W)``."""
    filters, channels, kernel_h, kernel_w = weight.shape
    total = n * g.run
    shift = kernel_w - 1
    spread = workspace.get("spread", (filters, kernel_w, total), wide_delta.dtype)
    for j in range(kernel_w):  # E[(f, j), s] = D[f, s − j]: whole rows, shifted
        np.copyto(spread[:, j], wide_delta[:, shift - j : shift - j + total])
    weight_rows = weight.transpose(1, 2, 0, 3).reshape(channels * kernel_h, filters * kernel_w)  # [(c, i), (f, j)]
    products = workspace.get("row_products", (channels * kernel_h, total), wide_delta.dtype)
    np.matmul(weight_rows, spread.reshape(filters * kernel_w, total), out=products)
    products = products.reshape(channels, kernel_h, n, g.run)
    grad = np.zeros((channels, n, g.image), dtype=wide_delta.dtype)
    for i in range(kernel_h):  # output row p, kernel row i → padded row p + i: one run per image
        grad[:, :, i * g.padded_w : i * g.padded_w + g.run] += products[:, i]
    grad = grad.reshape(channels, n, g.padded_h, g.padded_w)
    return grad[:, :, g.pad_h : g.pad_h + g.height, g.pad_w : g.pad_w + g.width]
