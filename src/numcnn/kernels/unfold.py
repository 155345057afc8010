"""im2col / col2im for the fast backends: the same unfolding as :mod:`numcnn.functional.im2col`, in the
memory order that lets the matrix products of seed 004 run without transposing copies.

The reference unfolding is ``columns[n, c, i, j, p_row, p_col] = x_padded[n, c, p_row·SH + i, p_col·SW + j]``
(seed 004 eqs. 15.21–15.24). Here the same numbers are stored *kernel-major*::

    cols[c, i, j, n, p_row, p_col] = x_padded[n, c, p_row·SH + i, p_col·SW + j]

i.e. ``cols = functional.im2col(x).transpose(1, 2, 3, 0, 4, 5)`` (tested). Read as a matrix of shape
``(C·KH·KW, N·OH·OW)`` it is ``φ(x)ᵀ`` for the whole batch, and then

* eq. 15.25 ``Y = φ(x) F`` becomes ``Yᵀ = W_mat · cols`` with ``W_mat = weight.reshape(F, C·KH·KW)``
  -- the PyTorch weight as it lies in memory, no copy -- and ``Yᵀ`` of shape ``(F, N·OH·OW)`` is
  the output in *channel-major* order ``(F, N, OH, OW)``;
* eq. 15.38 ``∂E/∂F = φ(x)ᵀ ∂E/∂Y`` becomes ``cols · (∂E/∂Yᵀ)ᵀ``;
* eq. 15.49 needs ``col2im`` of ``W_matᵀ · ∂E/∂Yᵀ``, which has this same kernel-major order.

Channel-major ``(C, N, H, W)`` memory is what flows between the fast layers; the public API still
sees ``(N, C, H, W)`` arrays, as the strided view ``cm.transpose(1, 0, 2, 3)`` (:func:`as_nchw`). Any
input layout is accepted: the unfolding reads through strides, so a C-contiguous NCHW batch from
the user costs no extra copy either.

The two loops below run over the ``KH × KW`` kernel offsets only (as the reference does); the
windows are formed by a strided view and copied with one ``np.copyto``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from numcnn.errors import ShapeError
from numcnn.functional.im2col import conv_output_size_2d

__all__ = [
    "as_nchw",
    "channel_major",
    "col2im_channel_major",
    "im2col_channel_major",
    "input_gradient_by_rows",
    "pad_channel_major",
    "window_view",
]


def channel_major(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` → the ``(C, N, H, W)`` view of the same memory (no copy)."""
    if x.ndim != 4:
        raise ShapeError(f"expected an image batch of shape (N, C, H, W), got {x.shape}")
    return x.transpose(1, 0, 2, 3)


def as_nchw(cm: np.ndarray) -> np.ndarray:
    """``(C, N, H, W)`` → the public ``(N, C, H, W)`` view (no copy)."""
    return cm.transpose(1, 0, 2, 3)




def pad_channel_major(cm: np.ndarray, padding: tuple[int, int], pad_value: float = 0.0) -> np.ndarray:
    """Copy ``(C, N, H, W)`` into a new ``(C, N, H + 2·PH, W + 2·PW)`` array with a constant border.

    Without padding the input is returned as it is (a view, possibly strided).
    """
    pad_h, pad_w = padding
    if pad_h == 0 and pad_w == 0:
        return cm
    c, n, h, w = cm.shape
    padded = np.empty((c, n, h + 2 * pad_h, w + 2 * pad_w), dtype=cm.dtype)
    # Fill only the border (four strips), then copy the interior once: every element written once.
    padded[:, :, :pad_h] = pad_value
    padded[:, :, pad_h + h :] = pad_value
    padded[:, :, pad_h : pad_h + h, :pad_w] = pad_value
    padded[:, :, pad_h : pad_h + h, pad_w + w :] = pad_value
    padded[:, :, pad_h : pad_h + h, pad_w : pad_w + w] = cm
    return padded


def window_view(
    padded: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """Read-only strided view ``(C, KH, KW, N, OH, OW)`` of every window of a padded ``(C, N, Hp, Wp)`` array.

    ``view[c, i, j, n, p, q] = padded[c, n, p·SH + i, q·SW + j]``: the index map of eq. 15.23 written
    as strides, so forming all windows copies nothing.
    """
    c, n = padded.shape[:2]
    s_c, s_n, s_h, s_w = padded.strides
    shape = (c, kernel[0], kernel[1], n, out_size[0], out_size[1])
    strides = (s_c, s_h, s_w, s_n, s_h * stride[0], s_w * stride[1])
    return as_strided(padded, shape=shape, strides=strides, writeable=False)


def im2col_channel_major(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: float = 0.0,
) -> np.ndarray:
    """Kernel-major unfolding of an NCHW batch (any memory layout).

    Shape:
        - x: ``(N, C, H, W)``
        - returns: ``(C, KH, KW, N, OH, OW)``, C-contiguous; ``.reshape(C·KH·KW, N·OH·OW)`` is ``φ(x)ᵀ``
    """
    cm = channel_major(x)
    out_size = conv_output_size_2d(cm.shape[2:], kernel, stride, padding)
    windows = window_view(pad_channel_major(cm, padding, pad_value), kernel, stride, out_size)
    return np.ascontiguousarray(windows)


def col2im_channel_major(
    cols: np.ndarray, input_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Fold kernel-major columns back onto the image, adding overlaps (eq. 15.49, adjoint of the above).

    Shape:
        - cols: ``(C, KH, KW, N, OH, OW)``
        - returns: ``(C, N, H, W)`` channel-major (a view into a padded buffer when ``padding > 0``)
    """
    c, kernel_h, kernel_w, n, out_h, out_w = cols.shape
    pad_h, pad_w = padding
    h, w = input_size
    stride_h, stride_w = stride
    padded = np.zeros((c, n, h + 2 * pad_h, w + 2 * pad_w), dtype=cols.dtype)
    for i in range(kernel_h):
        row_stop = i + stride_h * out_h
        for j in range(kernel_w):
            col_stop = j + stride_w * out_w
            padded[:, :, i:row_stop:stride_h, j:col_stop:stride_w] += cols[:, i, j]
    return padded[:, :, pad_h : pad_h + h, pad_w : pad_w + w]


def input_gradient_by_rows(
    delta: np.ndarray, weight: np.ndarray, input_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """``∂E/∂x`` of a convolution (eq. 15.49) with one matrix product and ``KH`` row additions.

    col2im of ``δ Fᵀ`` adds ``KH·KW`` slabs whose rows are only ``OW`` long. Here the column part of
    the sum goes into the matrix product instead: spread δ along the padded width,
    ``E[f, j, n, p, q·SW + j] = δ[f, n, p, q]`` (zeros elsewhere), then

        ``G[(c, i), (n, p, w)] = Σ_{f, j} W[f, c, i, j] · E[(f, j), (n, p, w)]``
        ``∂E/∂x_pad[c, n, p·SH + i, w] += G[c, i, n, p, w]``

    which is the same sum over the windows that contain a pixel, grouped by kernel row ``i``. Each
    of the ``KH`` additions moves whole padded rows (one contiguous block per image when SH = 1).

    Shape:
        - delta: ``(F, N, OH, OW)`` channel-major δ; weight: ``(F, C, KH, KW)``
        - returns: ``(C, N, H, W)`` channel-major (a view into the padded gradient)
    """
    filters, channels, kernel_h, kernel_w = weight.shape
    _, n, out_h, out_w = delta.shape
    (h, w), (stride_h, stride_w), (pad_h, pad_w) = input_size, stride, padding
    padded_w = w + 2 * pad_w
    spread = np.zeros((filters, kernel_w, n, out_h, padded_w), dtype=delta.dtype)
    for j in range(kernel_w):
        spread[:, j, :, :, j : j + stride_w * out_w : stride_w] = delta
    weight_rows = weight.transpose(1, 2, 0, 3).reshape(channels * kernel_h, filters * kernel_w)  # [(c, i), (f, j)]
    rows = weight_rows @ spread.reshape(filters * kernel_w, -1)  # G: (C·KH, N·OH·Wp)
    rows = rows.reshape(channels, kernel_h, n, out_h, padded_w)
    grad = np.zeros((channels, n, h + 2 * pad_h, padded_w), dtype=delta.dtype)
    for i in range(kernel_h):
        grad[:, :, i : i + stride_h * out_h : stride_h] += rows[:, i]
    return grad[:, :, pad_h : pad_h + h, pad_w : pad_w + w]
