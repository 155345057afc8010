"""Max and average pooling in batch-last memory (numpy backend; seed 004 eqs. 15.51, 15.52, 15.59).

Each of the ``KH·KW`` window offsets ``(i, j)`` is one strided view of the padded input
(:func:`numcnn.kernels.batch_last.window_view`), ``view[c, p, q, n] = x_pad[c, p·SH + i, q·SW + j, n]``,
whose runs are the batch, ``N`` long. Max pooling keeps a running maximum over these views and,
for backward, the offset ``i·KW + j`` of each window's *first* maximum in row-major order (strict
``>``, as the reference's ``np.argmax`` and PyTorch). With the ReLU fused in
(``max_pool(relu(x)) = relu(max_pool(x))``, ReLU being monotone), a window whose maximum is ≤ 0
passes no gradient: its offset is recorded as ``-1``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.functional.im2col import conv_output_size_2d
from numcnn.kernels.batch_last import as_nchw, batch_last, pad_batch_last, window_view
from numcnn.kernels.common import PoolWindow, running_maximum, tiles_exactly, window_offset_dtype

__all__ = [
    "BatchLastMaxPoolCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
]


class BatchLastMaxPoolCache(NamedTuple):
    """What max pooling's backward needs in the numpy backend.

    Exactly one of ``window_offset`` (training) and ``pool_input`` (inference) is set.
    """

    window: PoolWindow
    # (C, OH, OW, N), int8 or int32: offset i·KW + j of each window's first maximum, -1 where the
    # fused ReLU cuts the gradient.
    window_offset: np.ndarray | None
    # The input x (before the fused ReLU), kept by inference instead of the offsets: should a
    # backward pass follow after all, the offsets are found again from it.
    pool_input: np.ndarray | None
    relu: bool


def max_pool2d_forward(x, kernel, stride, padding, relu=False, record=True):
    """``max_pool(x)`` or ``max_pool(relu(x))``; ``record=False`` (inference) skips recording the maxima.

    Shape: x ``(N, C, H, W)`` any layout → y ``(N, C, OH, OW)``, the NCHW view of batch-last memory.
    """
    padded = pad_batch_last(x, padding, -np.inf)
    out_size = conv_output_size_2d(x.shape[2:], kernel, stride, padding)
    windows = window_view(padded, kernel, stride, out_size)
    c, n = x.shape[1], x.shape[0]
    best = np.empty((c, *out_size, n), dtype=x.dtype)
    window_offset = np.empty(best.shape, dtype=window_offset_dtype(kernel)) if record else None
    running_maximum(windows, best, window_offset, relu)
    window = PoolWindow((x.shape[2], x.shape[3]), kernel, stride, padding)
    if not record:
        return as_nchw(best), BatchLastMaxPoolCache(window, None, x, relu)
    return as_nchw(best), BatchLastMaxPoolCache(window, window_offset, None, relu)


def _gradient_canvas(delta: np.ndarray, cache: PoolWindow):
    """A padded batch-last ``(C, Hp, Wp, N)`` gradient; zeroed unless the windows tile it exactly."""
    c, _, _, n = delta.shape
    (h, w), (pad_h, pad_w) = cache.input_size, cache.padding
    exact = tiles_exactly(cache.input_size, cache.kernel, cache.stride, cache.padding)
    allocate = np.empty if exact else np.zeros
    return allocate((c, h + 2 * pad_h, w + 2 * pad_w, n), dtype=delta.dtype), exact


def _offset_view(canvas: np.ndarray, offset: int, cache: PoolWindow, out_size) -> np.ndarray:
    """The pixels that window offset ``offset`` reads, as a writable view of ``canvas`` ``(C, OH, OW, N)``."""
    i, j = divmod(offset, cache.kernel[1])
    (out_h, out_w), (stride_h, stride_w) = out_size, cache.stride
    return canvas[:, i : i + stride_h * (out_h - 1) + 1 : stride_h, j : j + stride_w * (out_w - 1) + 1 : stride_w]


def _crop(canvas: np.ndarray, cache: PoolWindow) -> np.ndarray:
    (h, w), (pad_h, pad_w) = cache.input_size, cache.padding
    return as_nchw(canvas[:, pad_h : pad_h + h, pad_w : pad_w + w])


def max_pool2d_backward(grad_output, cache: BatchLastMaxPoolCache):
    """Each window's δ goes to its recorded offset; overlapping windows add (eq. 15.59)."""
    window = cache.window
    if cache.window_offset is None:  # inference skipped recording: find the maxima again
        assert cache.pool_input is not None
        cache = max_pool2d_forward(cache.pool_input, window.kernel, window.stride, window.padding, cache.relu)[1]
    window_offset = cache.window_offset
    assert window_offset is not None
    delta = batch_last(grad_output)
    canvas, exact = _gradient_canvas(delta, window)
    hit = np.empty(delta.shape, dtype=bool)
    for offset in range(window.kernel[0] * window.kernel[1]):
        target = _offset_view(canvas, offset, window, delta.shape[1:3])
        np.equal(window_offset, offset, out=hit)
        if exact:  # windows tile the input: every pixel belongs to exactly one window, write it
            np.multiply(delta, hit, out=target)
        else:
            target += delta * hit
    return _crop(canvas, window)


def avg_pool2d_forward(x, kernel, stride, padding):
    """Mean over each window, padding counted as zeros (``count_include_pad``), eq. 15.52."""
    padded = pad_batch_last(x, padding, 0.0)
    out_size = conv_output_size_2d(x.shape[2:], kernel, stride, padding)
    windows = window_view(padded, kernel, stride, out_size)
    total = windows[:, 0, 0].copy()
    for offset in range(1, kernel[0] * kernel[1]):
        total += windows[:, offset // kernel[1], offset % kernel[1]]
    total *= total.dtype.type(1.0 / (kernel[0] * kernel[1]))
    # The windows' geometry is all that backward needs.
    return as_nchw(total), PoolWindow((x.shape[2], x.shape[3]), kernel, stride, padding)


def avg_pool2d_backward(grad_output, cache: PoolWindow):
    """Every pixel of a window receives ``δ / (KH·KW)``, summed over the windows containing it."""
    delta = batch_last(grad_output)
    share = delta * delta.dtype.type(1.0 / (cache.kernel[0] * cache.kernel[1]))
    canvas, exact = _gradient_canvas(delta, cache)
    for offset in range(cache.kernel[0] * cache.kernel[1]):
        target = _offset_view(canvas, offset, cache, delta.shape[1:3])
        if exact:
            target[...] = share
        else:
            target += share
    return _crop(canvas, cache)
