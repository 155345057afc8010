"""Batch-last memory ``(C, H, W, N)`` for the numpy backend: every copy and pass runs over long rows.

A NumPy copy or element-wise pass over a strided view pays a roughly fixed cost per innermost
*run* of contiguous elements. In NCHW or channel-major ``(C, N, H, W)`` memory the runs of a
convolution's unfolding are one output row long (``OW``: 10 in LeNet-5's second layer) and those
of a 2×2 pooling window offset a single element (stride 2), and that per-run cost, not the
arithmetic, dominated the numpy backend. With the batch as the *last* axis,

    ``x_bl[c, h, w, n] = x[n, c, h, w]``,

each pixel position holds ``N`` images side by side, so every window offset of a pooling layer is
a view whose runs are ``N`` long, and a stride-1 unfolding copies runs of ``OW·N``. The public API
stays NCHW: layers receive the view ``x_bl.transpose(3, 0, 1, 2)`` (:func:`as_nchw`), and
:func:`batch_last` recovers the batch-last array from such a view without a copy (any other
layout is copied once).

The index map of an unfolding (seed 004 eqs. 15.21–15.24) in this layout, as a strided view::

    windows[c, i, j, p, q, n] = x_padded[c, p·SH + i, q·SW + j, n]

so ``windows.reshape(C·KH·KW, OH·OW·N)`` is ``φ(x)ᵀ`` with columns in ``(p, q, n)`` order, and a
product ``W_mat · φ(x)ᵀ`` lands in batch-last order again.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from numcnn.errors import ShapeError

__all__ = ["Workspace", "as_nchw", "batch_last", "pad_batch_last", "window_view"]


def batch_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` → ``(C, H, W, N)``: a view when ``x`` came from batch-last memory, else a copy."""
    if x.ndim != 4:
        raise ShapeError(f"expected an image batch of shape (N, C, H, W), got {x.shape}")
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


def as_nchw(bl: np.ndarray) -> np.ndarray:
    """``(C, H, W, N)`` → the public ``(N, C, H, W)`` view of the same memory (no copy)."""
    return bl.transpose(3, 0, 1, 2)




def pad_batch_last(x: np.ndarray, padding: tuple[int, int], pad_value: float = 0.0) -> np.ndarray:
    """The NCHW batch ``x`` (any layout) as a batch-last ``(C, H + 2·PH, W + 2·PW, N)`` array with a constant border.

    Without padding this is :func:`batch_last` (no copy for batch-last input). With padding, the
    border strips are filled and the interior is copied once, straight from ``x``'s memory.
    """
    pad_h, pad_w = padding
    if pad_h == 0 and pad_w == 0:
        return batch_last(x)
    n, c, h, w = x.shape
    padded = np.empty((c, h + 2 * pad_h, w + 2 * pad_w, n), dtype=x.dtype)
    padded[:, :pad_h] = pad_value
    padded[:, pad_h + h :] = pad_value
    padded[:, pad_h : pad_h + h, :pad_w] = pad_value
    padded[:, pad_h : pad_h + h, pad_w + w :] = pad_value
    padded[:, pad_h : pad_h + h, pad_w : pad_w + w] = x.transpose(1, 2, 3, 0)
    return padded


def window_view(
    padded: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """Read-only view ``(C, KH, KW, OH, OW, N)`` of every window of a padded batch-last ``(C, Hp, Wp, N)`` array.

    ``view[c, i, j, p, q, n] = padded[c, p·SH + i, q·SW + j, n]``: eq. 15.23's index map as strides.
    """
    c, _, _, n = padded.shape
    s_c, s_h, s_w, s_n = padded.strides
    shape = (c, kernel[0], kernel[1], out_size[0], out_size[1], n)
    strides = (s_c, s_h, s_w, s_h * stride[0], s_w * stride[1], s_n)
    return as_strided(padded, shape=shape, strides=strides, writeable=False)


class Workspace:
    """Scratch arrays reused from call to call: one per thread and ``(name, shape, dtype, tag)``.

    Allocating a fresh multi-megabyte array every step costs page faults (the kernel zeroes each
    new page, huge pages included); reusing scratch memory also keeps it in the cache. Nothing
    handed out here may outlive the call that asked for it. With ``zeroed=True`` the array is
    zero when first made, and the caller keeps the part it never writes zero; ``tag`` must then
    name everything that decides which part that is.
    """

    def __init__(self, limit: int = 32) -> None:
        self._local = threading.local()
        self.limit = limit

    def get(self, name: str, shape: tuple[int, ...], dtype, zeroed: bool = False, tag=None) -> np.ndarray:
        arrays = self._local.__dict__.setdefault("arrays", {})
        key = (name, tuple(shape), np.dtype(dtype).str, tag)
        array = arrays.get(key)
        if array is None:
            if len(arrays) >= self.limit:  # many shapes (e.g. varying batch sizes): start afresh
                arrays.clear()
            array = arrays[key] = (np.zeros if zeroed else np.empty)(shape, dtype=dtype)
        return array
