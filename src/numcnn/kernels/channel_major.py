"""Channel-major NumPy kernels: the base the ``"numba"`` backend compiles its hot passes into.

This was the first ``"numpy"`` backend; :mod:`numcnn.kernels.numpy_backend` (batch-last memory)
replaced it there because it is faster with NumPy alone, while numba's compiled loops do not pay
NumPy's per-run cost and keep this layout. What changes compared to :mod:`numcnn.functional`
(the numbers do not):

* **Channel-major memory.** Convolution outputs are produced as ``Yᵀ = W_mat · φ(x)ᵀ``
  (seed 004 eq. 15.25 transposed, see :mod:`numcnn.kernels.unfold`), i.e. in ``(F, N, OH, OW)`` order,
  and handed on as the NCHW *view* of that memory. Pooling keeps that order, so the next
  convolution's im2col, the weight gradient ``cols · δᵀ`` (eq. 15.38) and the bias gradient
  (a row sum) all read contiguous rows, and the weight is used in its PyTorch layout without a copy.
* **No transposing copies** in im2col: windows are a strided view copied once.
* **Max pooling works on whole strided slabs**, one per window offset, keeping a running maximum
  and the offset where it was found; the tie rule (strict ``>``) keeps the *first* maximum in
  row-major order, as the reference (``np.argmax``) and PyTorch do.
* **ReLU fused into max pooling** when :class:`~numcnn.layers.Sequential` asks for it:
  ``max_pool(relu(x)) = relu(max_pool(x))`` because ReLU is monotone, and the gradient reaches
  the window's first maximum only if that maximum is positive -- encoded as offset ``-1`` otherwise.
* **ReLU alone** caches its output instead of a mask: ``y > 0 ⟺ x > 0``, one pass fewer.
* **Bias gradients as GEMVs** ``δ · 1`` instead of ``sum``: same numbers up to rounding, faster.
* **Cache-sized blocks** of images for im2col + GEMM, so the columns are still in the L2 cache
  when the product reads them.
* **Threads**: OpenBLAS's only (NumPy's element-wise loops run on one core). Splitting batches
  over Python threads was probed and dropped: on two cores the GIL hand-overs between the many
  short NumPy calls cost more than the second core gained.

Linear layers' forward pass and the other activations use the reference functions unchanged (they
are already single matrix products or single element-wise passes).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.im2col import conv_output_size_2d
from numcnn.kernels.reference import ReferenceBackend
from numcnn.kernels.unfold import (
    as_nchw,
    channel_major,
    col2im_channel_major,
    im2col_channel_major,
    input_gradient_by_rows,
    pad_channel_major,
    window_view,
)

__all__ = ["ChannelMajorBackend", "FastConvCache", "PoolCache", "ones_vector", "running_maximum", "window_index_dtype"]


class FastConvCache(NamedTuple):
    columns: np.ndarray  # (C·KH·KW, N·OH·OW): φ(x)ᵀ, kernel-major
    weight: np.ndarray  # (F, C, KH, KW)
    input_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


class PoolCache(NamedTuple):
    # Where each window's maximum is (-1 = no gradient), in the backend's memory order:
    # (C, N, OH, OW) channel-major here and in numba, (C, OH, OW, N) in the batch-last numpy backend.
    window_index: np.ndarray | None
    input_size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    # Inference does not record where the maxima are (backward rarely follows); if it does
    # follow, the positions are found again from the input kept here.
    source: np.ndarray | None = None
    relu: bool = False


def window_index_dtype(kernel: tuple[int, int]) -> np.dtype:
    """The smallest signed integer type that holds every window offset and -1 (less memory traffic)."""
    return np.dtype(np.int8 if kernel[0] * kernel[1] <= 127 else np.int32)


@functools.lru_cache(maxsize=32)  # one per batch size and dtype in use
def _ones(size: int, dtype_code: str) -> np.ndarray:
    ones = np.ones(size, dtype=np.dtype(dtype_code))
    ones.flags.writeable = False
    return ones


def ones_vector(size: int, dtype) -> np.ndarray:
    """A cached read-only vector of ones. Bias gradients ``Σ δ`` as the GEMV ``δ · 1`` (or ``1ᵀ δ``) run
    about three times faster than ``sum`` on cache-resident data (OpenBLAS vs NumPy's pairwise sum)."""
    return _ones(size, np.dtype(dtype).str)


def check_conv_shapes(x: np.ndarray, weight: np.ndarray) -> None:
    if x.ndim != 4:
        raise ShapeError(f"conv2d input must have shape (N, C, H, W), got {x.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ShapeError(
            f"conv2d input has {x.shape[1]} channels but the weight expects {weight.shape[1]} "
            f"(input shape {x.shape}, weight shape {weight.shape})"
        )


def _tiles_exactly(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> bool:
    """Whether the windows cover the padded input exactly once (then a gradient needs no zero fill)."""
    return all(
        s == k and (n + 2 * p - k) % s == 0 for n, k, s, p in zip(size, kernel, stride, padding)
    )


def running_maximum(windows, best, window_index, relu: bool) -> None:
    """Max over the window offsets of ``windows`` ``(C, KH, KW, ...)`` into ``best`` ``(C, ...)``.

    ``...`` is ``(n, OH, OW)`` in channel-major memory and ``(OH, OW, N)`` in the batch-last numpy
    backend: only the two offset axes matter here.

    With ``window_index``, also record the offset ``i·KW + j`` of each window's first maximum
    (-1 where a fused ReLU cuts the gradient).
    """
    kernel_h, kernel_w = windows.shape[1:3]
    np.copyto(best, windows[:, 0, 0])
    if window_index is None:
        for offset in range(1, kernel_h * kernel_w):
            np.maximum(best, windows[:, offset // kernel_w, offset % kernel_w], out=best)
        if relu:
            np.maximum(best, 0, out=best)
        return
    window_index.fill(0)
    better = np.empty(best.shape, dtype=bool)
    as_integer = better.view(np.int8)  # 1 where better: arithmetic on it is much faster than where=
    for offset in range(1, kernel_h * kernel_w):
        candidate = windows[:, offset // kernel_w, offset % kernel_w]
        # Strictly greater: on a tie the earlier (row-major first) offset keeps the maximum.
        np.greater(candidate, best, out=better)
        np.maximum(best, candidate, out=best)
        # Offsets only grow, so the offset of the maximum is the largest offset that improved it.
        np.maximum(window_index, as_integer * window_index.dtype.type(offset), out=window_index)
    if relu:
        # relu'(max) = 0 where the window maximum is <= 0: mark offset -1 (no gradient), i.e.
        # index ← index·alive + alive − 1 with alive ∈ {0, 1}.
        np.greater(best, 0, out=better)
        window_index *= as_integer
        window_index += as_integer
        window_index -= 1
        np.maximum(best, 0, out=best)


class ChannelMajorBackend(ReferenceBackend):
    """Fast kernels in pure NumPy, channel-major; see the module docstring for what is done differently."""

    name = "channel-major"
    fuses_relu_pool = True

    # -- fully connected: the reference products, with the bias gradient as a GEMV ---------------
    def linear_backward(self, grad_output, x, weight, need_input_grad=True):
        grad_weight = grad_output.T @ x  # (out, in)
        grad_bias = ones_vector(grad_output.shape[0], grad_output.dtype) @ grad_output  # Σ_n δ_n
        grad_input = grad_output @ weight if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    # -- convolution: eqs. 15.25, 15.38, 15.49 as three matrix products -------------------------
    def conv2d_forward(self, x, weight, bias, stride, padding):
        """``Yᵀ = W_mat · φ(x)ᵀ + b`` → y ``(N, F, OH, OW)`` (channel-major memory)."""
        check_conv_shapes(x, weight)
        columns, y = self.unfold_and_multiply(x, weight, stride, padding)  # (C·KH·KW, N·OH·OW), (F, N, OH, OW)
        if bias is not None:
            y += bias[:, None, None, None]
        cache = FastConvCache(columns, weight, (x.shape[2], x.shape[3]), stride, padding)
        return as_nchw(y), cache

    # Images per block in unfold_and_multiply: the block's columns should stay in the L2 cache
    # between being written and being read by the matrix product (probed: 2× faster for LeNet's
    # first layer than unfolding the whole batch first).
    block_bytes = 2**19

    def unfold_and_multiply(self, x, weight, stride, padding):
        """``φ(x)ᵀ`` and ``W_mat · φ(x)ᵀ``, a block of images at a time (same numbers as in one go)."""
        filters, channels, kernel_h, kernel_w = weight.shape
        n = x.shape[0]
        kernel = (kernel_h, kernel_w)
        out_h, out_w = conv_output_size_2d(x.shape[2:], kernel, stride, padding)
        windows = window_view(pad_channel_major(channel_major(x), padding), kernel, stride, (out_h, out_w))
        columns = np.empty(windows.shape, dtype=x.dtype)  # (C, KH, KW, N, OH, OW)
        y = np.empty((filters, n, out_h, out_w), dtype=x.dtype)
        weight_matrix = weight.reshape(filters, -1)
        rows = channels * kernel_h * kernel_w
        block = max(1, self.block_bytes // (rows * out_h * out_w * x.dtype.itemsize))
        for start in range(0, n, block):
            stop = min(n, start + block)
            np.copyto(columns[:, :, :, start:stop], windows[:, :, :, start:stop])
            # Both operands and the output are row-strided 2-D views that BLAS reads in place.
            np.matmul(
                weight_matrix,
                columns[:, :, :, start:stop].reshape(rows, -1),
                out=y[:, start:stop].reshape(filters, -1),
            )
        return columns.reshape(rows, -1), y

    def conv2d_backward(self, grad_output, cache, need_input_grad=True):
        weight = cache.weight
        filters, channels = weight.shape[:2]
        n, out_h, out_w = grad_output.shape[0], grad_output.shape[2], grad_output.shape[3]
        # δᵀ as an (F, N·OH·OW) matrix; free when δ arrives channel-major from a fast layer.
        delta = np.ascontiguousarray(channel_major(grad_output)).reshape(filters, -1)
        # ∂E/∂F = φ(x)ᵀ δ (eq. 15.38), as (cols · δᵀᵀ)ᵀ: OpenBLAS is several times faster with the
        # long N·OH·OW axis as the shared inner dimension of two row-major operands.
        grad_weight = (cache.columns @ delta.T).T.reshape(weight.shape)
        grad_bias = delta @ ones_vector(delta.shape[1], delta.dtype)  # Σ over batch and positions: a GEMV
        grad_input = None
        if need_input_grad:
            grad_input = as_nchw(self.input_gradient(delta.reshape(filters, n, out_h, out_w), weight, cache))
        return grad_input, grad_weight, grad_bias

    def input_gradient(self, delta, weight, cache):
        """``∂E/∂x`` (eq. 15.49), channel-major: by rows (:func:`input_gradient_by_rows`), which in NumPy
        is about twice as fast as col2im's ``KH·KW`` short-row additions (probed on LeNet-5)."""
        return input_gradient_by_rows(delta, weight, cache.input_size, cache.stride, cache.padding)

    def im2col(self, x, kernel, stride, padding):
        """Kernel-major unfolding ``(C, KH, KW, N, OH, OW)``; the Numba backend overrides this."""
        return im2col_channel_major(x, kernel, stride, padding)

    def col2im(self, grad_columns, input_size, stride, padding):
        """Channel-major fold ``(C, N, H, W)``; the Numba backend overrides this."""
        return col2im_channel_major(grad_columns, input_size, stride, padding)

    # -- max pooling (eq. 15.51), optionally of relu(x) --------------------------------------
    def max_pool2d_forward(self, x, kernel, stride, padding, relu=False, record=True):
        """Max pooling; ``record=False`` (inference) skips recording where each maximum is."""
        cm = channel_major(x)
        out_size = conv_output_size_2d(cm.shape[2:], kernel, stride, padding)
        windows = window_view(pad_channel_major(cm, padding, -np.inf), kernel, stride, out_size)
        best = np.empty((cm.shape[0], cm.shape[1], *out_size), dtype=x.dtype)  # (C, N, OH, OW)
        window_index = np.empty(best.shape, dtype=window_index_dtype(kernel)) if record else None
        running_maximum(windows, best, window_index, relu)
        if not record:
            return as_nchw(best), PoolCache(None, tuple(cm.shape[2:]), kernel, stride, padding, x, relu)
        return as_nchw(best), PoolCache(window_index, tuple(cm.shape[2:]), kernel, stride, padding)

    def max_pool2d_backward(self, grad_output, cache):
        """Each window's δ goes to its recorded offset; overlapping windows add (eq. 15.59)."""
        cache = self.recorded(cache)
        delta = channel_major(grad_output)
        kernel, stride = cache.kernel, cache.stride
        grad_padded, exact = self._gradient_canvas(delta, cache)
        out_h, out_w = delta.shape[2:]
        hit = np.empty(delta.shape, dtype=bool)
        for offset in range(kernel[0] * kernel[1]):
            i, j = divmod(offset, kernel[1])
            target = grad_padded[:, :, i : i + stride[0] * out_h : stride[0], j : j + stride[1] * out_w : stride[1]]
            np.equal(cache.window_index, offset, out=hit)
            if exact:  # windows tile the input: each pixel belongs to exactly one window, write it
                np.multiply(delta, hit, out=target)
            else:
                target += delta * hit
        return as_nchw(self._crop(grad_padded, cache))

    def recorded(self, cache):
        """The cache with the maxima's positions, found again from the input if inference skipped them."""
        if cache.window_index is not None:
            return cache
        source = cache.source
        if hasattr(source, "compute"):  # a fused convolution did not keep its output: compute it now
            source = source.compute()
        return self.max_pool2d_forward(source, cache.kernel, cache.stride, cache.padding, cache.relu)[1]

    # -- average pooling (eq. 15.52) ----------------------------------------------------------
    def avg_pool2d_forward(self, x, kernel, stride, padding):
        cm = channel_major(x)
        out_size = conv_output_size_2d(cm.shape[2:], kernel, stride, padding)
        windows = window_view(pad_channel_major(cm, padding, 0.0), kernel, stride, out_size)
        total = windows[:, 0, 0].copy()
        for offset in range(1, kernel[0] * kernel[1]):
            total += windows[:, offset // kernel[1], offset % kernel[1]]
        total *= total.dtype.type(1.0 / (kernel[0] * kernel[1]))
        return as_nchw(total), PoolCache(None, tuple(cm.shape[2:]), kernel, stride, padding)

    def avg_pool2d_backward(self, grad_output, cache):
        delta = channel_major(grad_output)
        kernel, stride = cache.kernel, cache.stride
        share = delta * delta.dtype.type(1.0 / (kernel[0] * kernel[1]))  # ∂ mean / ∂ x = 1/(KH·KW)
        grad_padded, exact = self._gradient_canvas(delta, cache)
        out_h, out_w = delta.shape[2:]
        for offset in range(kernel[0] * kernel[1]):
            i, j = divmod(offset, kernel[1])
            target = grad_padded[:, :, i : i + stride[0] * out_h : stride[0], j : j + stride[1] * out_w : stride[1]]
            if exact:
                target[...] = share
            else:
                target += share
        return as_nchw(self._crop(grad_padded, cache))

    @staticmethod
    def _gradient_canvas(delta, cache):
        """A padded ``(C, N, Hp, Wp)`` gradient array; zeroed unless the windows tile it exactly."""
        c, n = delta.shape[:2]
        (h, w), (pad_h, pad_w) = cache.input_size, cache.padding
        exact = _tiles_exactly(cache.input_size, cache.kernel, cache.stride, cache.padding)
        allocate = np.empty if exact else np.zeros
        return allocate((c, n, h + 2 * pad_h, w + 2 * pad_w), dtype=delta.dtype), exact

    @staticmethod
    def _crop(grad_padded, cache):
        (h, w), (pad_h, pad_w) = cache.input_size, cache.padding
        return grad_padded[:, :, pad_h : pad_h + h, pad_w : pad_w + w]

    # -- ReLU ------------------------------------------------------------------------------------
    def relu_forward(self, x):
        """``y = max(x, 0)``; the cache is ``y`` itself, since ``y > 0`` exactly where ``x > 0``."""
        y = np.maximum(x, 0)
        return y, y

    def relu_backward(self, grad_output, cache):
        return grad_output * (cache > 0)
