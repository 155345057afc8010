"""Unfolding images into columns and folding them back: the one home of im2col, col2im and output sizes.

Dimension names used throughout numcnn::

    N   batch size              C   input channels          F   output channels (filters)
    H,W input height, width     KH,KW kernel height, width  OH,OW output height, width
    SH,SW stride                PH,PW zero padding on each side

Seed 004 (Wu, §15.5.3) writes a convolution as one matrix product ``vec(y) = vec(φ(x) F)``
(eq. 15.25), where the *im2row* matrix ``φ(x)`` has one row per output position ``p`` and one
column per kernel position ``q`` (eqs. 15.21–15.24 give the index maps). Caffe's *im2col* is its
transpose. Here the unfolding is kept as a 6-D array ``(N, C, KH, KW, OH, OW)`` -- Chainer's
layout -- which contains exactly the numbers of ``φ(x)`` for every image of the batch:

* ``columns[n, c, i, j, p_row, p_col] = x_padded[n, c, p_row * SH + i, p_col * SW + j]``
  (eqs. 15.23–15.24 with a stride), so
* ``φ(x_n)[p, q]`` with ``p = (p_row, p_col)`` and ``q = (c, i, j)`` is
  ``columns[n].transpose(3, 4, 0, 1, 2).reshape(OH * OW, C * KH * KW)``.

Seed 004 orders ``q`` column-major (MATLAB); numcnn orders it row-major ``(c, i, j)``, which is the
memory order of a PyTorch weight of shape ``(F, C, KH, KW)``. Both are the same linear map.

``col2im`` is the exact adjoint of ``im2col``: where ``im2col`` *copies* one input pixel into every
window that contains it, ``col2im`` *adds* every window's value back into that pixel. That sum over
the one-to-many inverse map ``m⁻¹`` is eq. 15.49, and the identity
``⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩`` is tested.

Both functions loop over the ``KH × KW`` kernel offsets only; each step moves a whole strided
slab of the batch, so the Python overhead does not grow with the image or batch size.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError, ShapeError

__all__ = ["pair", "check_window", "conv_output_size", "conv_output_size_2d", "im2col", "col2im", "im2row_matrix"]


def pair(value: int | tuple[int, int] | list[int], name: str = "value") -> tuple[int, int]:
    """Return ``(value, value)`` for an int, or validate and return a pair of ints."""
    if isinstance(value, (bool, np.bool_)):
        raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (first, second)):
        raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(first), int(second)


def check_window(
    kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], layer: str
) -> None:
    """Reject impossible window settings when a layer is built, not at its first forward pass."""
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ConfigurationError(
            f"{layer}: kernel_size {kernel} and stride {stride} must be >= 1 and padding {padding} >= 0"
        )


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a sliding window along one axis: ``⌊(size + 2·padding − kernel) / stride⌋ + 1``.

    The floor is the reason a window never hangs over the padded border: when
    ``(size + 2p − k) mod s ≠ 0`` the last ``(size + 2p − k) mod s`` rows are simply not visited
    (PyTorch's behaviour with ``ceil_mode=False``).

    Raises:
        ConfigurationError: if the kernel does not fit into the padded input, or a size is invalid.
    """
    if kernel < 1 or stride < 1 or padding < 0:
        raise ConfigurationError(
            f"kernel ({kernel}) and stride ({stride}) must be >= 1 and padding ({padding}) >= 0"
        )
    padded = size + 2 * padding
    if padded < kernel:
        raise ConfigurationError(
            f"kernel size {kernel} is larger than the padded input size {padded} "
            f"(input {size}, padding {padding})"
        )
    return (padded - kernel) // stride + 1



def conv_output_size_2d(
    input_size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``(OH, OW)`` of a sliding window over an ``(H, W)`` input: :func:`conv_output_size` per axis."""
    return (
        conv_output_size(input_size[0], kernel[0], stride[0], padding[0]),
        conv_output_size(input_size[1], kernel[1], stride[1], padding[1]),
    )


def _check_image_batch(x: np.ndarray, name: str = "input") -> None:
    if x.ndim != 4:
        raise ShapeError(f"{name} must have shape (N, C, H, W), got an array of shape {x.shape}")


def im2col(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Unfold every ``KH × KW`` window of ``x`` into a 6-D column array.

    Shape:
        - x: ``(N, C, H, W)``
        - returns: ``(N, C, KH, KW, OH, OW)`` with ``OH = conv_output_size(H, KH, SH, PH)``

    Args:
        pad_value: value of the border added by ``padding``; ``-inf`` lets max pooling ignore it.
    """
    _check_image_batch(x)
    kernel_h, kernel_w = pair(kernel_size, "kernel_size")
    stride_h, stride_w = pair(stride, "stride")
    pad_h, pad_w = pair(padding, "padding")
    n, c, h, w = x.shape
    out_h, out_w = conv_output_size_2d((h, w), (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w))

    padded = np.pad(
        x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)), mode="constant", constant_values=pad_value
    )
    columns = np.empty((n, c, kernel_h, kernel_w, out_h, out_w), dtype=x.dtype)
    for i in range(kernel_h):
        # Rows i, i+SH, ..., i+(OH-1)·SH are the rows this kernel offset meets (eq. 15.23).
        row_stop = i + stride_h * out_h
        for j in range(kernel_w):
            col_stop = j + stride_w * out_w
            columns[:, :, i, j] = padded[:, :, i:row_stop:stride_h, j:col_stop:stride_w]
    return columns


def col2im(
    columns: np.ndarray,
    input_size: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """Fold a 6-D column array back into an image batch, *adding* overlapping contributions.

    This is eq. 15.49 of seed 004: the gradient at an input pixel is the sum of the entries of
    ``∂z/∂Y · Fᵀ`` at all ``(p, q)`` that were copied from that pixel. It is the adjoint of
    :func:`im2col` with the same ``stride`` and ``padding``; the padded border is cut off at the
    end, which is where gradients with respect to padding zeros are discarded.

    Shape:
        - columns: ``(N, C, KH, KW, OH, OW)``
        - input_size: ``(H, W)`` of the image that was unfolded
        - returns: ``(N, C, H, W)``
    """
    if columns.ndim != 6:
        raise ShapeError(f"columns must have shape (N, C, KH, KW, OH, OW), got {columns.shape}")
    n, c, kernel_h, kernel_w, out_h, out_w = columns.shape
    h, w = input_size
    stride_h, stride_w = pair(stride, "stride")
    pad_h, pad_w = pair(padding, "padding")
    if conv_output_size_2d((h, w), (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w)) != (out_h, out_w):
        raise ShapeError(
            f"columns of output size {(out_h, out_w)} do not come from an input of size {(h, w)} "
            f"with kernel {(kernel_h, kernel_w)}, stride {(stride_h, stride_w)}, padding {(pad_h, pad_w)}"
        )

    padded = np.zeros((n, c, h + 2 * pad_h, w + 2 * pad_w), dtype=columns.dtype)
    for i in range(kernel_h):
        row_stop = i + stride_h * out_h
        for j in range(kernel_w):
            col_stop = j + stride_w * out_w
            padded[:, :, i:row_stop:stride_h, j:col_stop:stride_w] += columns[:, :, i, j]
    return padded[:, :, pad_h : pad_h + h, pad_w : pad_w + w]


def im2row_matrix(columns: np.ndarray) -> np.ndarray:
    """Seed 004's ``φ(x)`` for one image: rows are output positions, columns kernel positions.

    Shape:
        - columns: ``(C, KH, KW, OH, OW)`` -- one image of :func:`im2col`'s output
        - returns: ``(OH·OW, C·KH·KW)``, row ``p = p_row·OW + p_col``, column ``q = (c·KH + i)·KW + j``
    """
    c, kernel_h, kernel_w, out_h, out_w = columns.shape
    return columns.transpose(3, 4, 0, 1, 2).reshape(out_h * out_w, c * kernel_h * kernel_w)
