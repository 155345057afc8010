"""Pieces both fast backends use: the pooling windows' geometry, the running maximum over window offsets, shape
checks and a cached vector of ones.

Nothing here depends on the memory layout: the window views handed to :func:`running_maximum`
have the two window-offset axes second and third, ``(C, KH, KW, ...)``, whatever follows them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from numcnn.functional.convolution import check_conv_input

__all__ = ["PoolWindow", "check_conv_input", "ones_vector", "running_maximum", "tiles_exactly", "window_offset_dtype"]


class PoolWindow(NamedTuple):
    """Where a pooling layer's windows lie: what every pooling cache holds, whatever the backend."""

    input_size: tuple[int, int]  # (H, W) of the input, before padding
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def window_offset_dtype(kernel: tuple[int, int]) -> np.dtype:
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


def tiles_exactly(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> bool:
    """Whether the windows cover the padded input exactly once (then a gradient needs no zero fill)."""
    return all(s == k and (n + 2 * p - k) % s == 0 for n, k, s, p in zip(size, kernel, stride, padding))


def running_maximum(windows, best, window_offset, relu: bool) -> None:
    """Max over the window offsets of ``windows`` ``(C, KH, KW, ...)`` into ``best`` ``(C, ...)``.

    With ``window_offset``, also record the offset ``i·KW + j`` of each window's first maximum
    (-1 where a fused ReLU cuts the gradient).
    """
    kernel_h, kernel_w = windows.shape[1:3]
    np.copyto(best, windows[:, 0, 0])
    if window_offset is None:
        for offset in range(1, kernel_h * kernel_w):
            np.maximum(best, windows[:, offset // kernel_w, offset % kernel_w], out=best)
        if relu:
            np.maximum(best, 0, out=best)
        return
    window_offset.fill(0)
    better = np.empty(best.shape, dtype=bool)
    as_integer = better.view(np.int8)  # 1 where better: arithmetic on it is much faster than where=
    for offset in range(1, kernel_h * kernel_w):
        candidate = windows[:, offset // kernel_w, offset % kernel_w]
        # Strictly greater: on a tie the earlier (row-major first) offset keeps the maximum.
        np.greater(candidate, best, out=better)
        np.maximum(best, candidate, out=best)
        # Offsets only grow, so the offset of the maximum is the largest offset that improved it.
        np.maximum(window_offset, as_integer * window_offset.dtype.type(offset), out=window_offset)
    if relu:
        # relu'(max) = 0 where the window maximum is <= 0: mark offset -1 (no gradient), i.e.
        # offset ← offset·alive + alive − 1 with alive ∈ {0, 1}.
        np.greater(best, 0, out=better)
        window_offset *= as_integer
        window_offset += as_integer
        window_offset -= 1
        np.maximum(best, 0, out=best)
