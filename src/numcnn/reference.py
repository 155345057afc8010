"""The convolution layer exactly as the seeds write it: ``rot180`` and MATLAB's ``conv2``, for reading.

numcnn's fast path (:mod:`numcnn.functional.convolution`) computes a convolution layer with im2col and
one matrix product. Bouvrie's notes (seed 000 §3.1–3.2), seed 002 ("卷积层前后向传播") and seed 003
write the same layer with a true 2-D convolution ``conv2`` and kernel rotations. This module is that
formulation, loop by loop, map by map, so the two can be compared line by line -- and are, to 1e-10 on
random shapes, strides and paddings (``tests/test_reference.py``). It is slow on purpose: nothing is
vectorised beyond one map at a time.

The kernel of the seeds. MATLAB's ``conv2(x, k)`` flips ``k`` (a true convolution); numcnn's weight,
like PyTorch's, is applied without flipping (a cross-correlation). So the seeds' kernel is
``k_ij = rot180(weight[j, i])``, and with it (dropping the layer index):

* forward (000 §3.1):        ``u_j = Σ_i conv2(x_i, k_ij, 'valid') + b_j``
                             (``= Σ_i conv2(x_i, rot180(weight[j, i]), 'valid') + b_j``)
* input sensitivity (000 §3.2.1, 002, 003): ``∂E/∂x_i = Σ_j conv2(δ_j, rot180(k_ij), 'full')``;
  the notes' ``δˡ = f′(uˡ) ∘ conv2(δˡ⁺¹, rot180(k), 'full')`` multiplies this by ``f′``, which numcnn
  leaves to the activation layer before the convolution
* kernel gradient (000 §3.1.1, 002):  ``∂E/∂k_ij = rot180(conv2(x_i, rot180(δ_j), 'valid'))``
* bias gradient (000 §3.1.1):         ``∂E/∂b_j = Σ_uv (δ_j)_uv``

Stride and padding, which the notes do not treat, are made explicit: the input is zero-padded first;
a stride ``s`` keeps every ``s``-th output of the stride-1 convolution, so backwards δ is first
*dilated* -- put back at those positions of a stride-1-sized map, zeros elsewhere (also where the last
rows and columns were never visited) -- and then the stride-1 formulas above apply unchanged.

Shapes: x ``(N, C, H, W)``, weight ``(F, C, KH, KW)``, bias ``(F,)``, δ ``(N, F, OH, OW)`` as everywhere
in numcnn.
"""

from __future__ import annotations

import functools

import numpy as np

from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional.im2col import conv_output_size_2d, pair

__all__ = ["rot180", "conv2", "dilate", "conv_forward", "conv_backward"]


def rot180(kernel: np.ndarray) -> np.ndarray:
    """Rotate a matrix (the last two axes) by 180°: MATLAB's ``rot90(k, 2)``.

    >>> rot180(np.array([[1, 2], [3, 4]]))
    array([[4, 3],
           [2, 1]])
    """
    return kernel[..., ::-1, ::-1]


def conv2(a: np.ndarray, b: np.ndarray, shape: str = "full") -> np.ndarray:
    """MATLAB's ``conv2(a, b, shape)``: the true 2-D convolution ``C[m, n] = Σ_{j,k} a[j, k] · b[m−j, n−k]``.

    * ``'full'``: every ``(m, n)`` where the two overlap at all, size ``(ah + bh − 1, aw + bw − 1)``;
    * ``'valid'``: only where ``b`` lies entirely inside ``a``, size ``(ah − bh + 1, aw − bw + 1)``
      (empty when ``b`` is larger, as in MATLAB).

    Written as a sum of shifted copies: ``C = Σ_{j,k} b[j, k] · (a moved down j rows and right k columns)``.

    >>> conv2(np.ones((3, 3)), np.arange(1, 10).reshape(3, 3), 'full')   # seed 000's convn example
    array([[ 1.,  3.,  6.,  5.,  3.],
           [ 5., 12., 21., 16.,  9.],
           [12., 27., 45., 33., 18.],
           [11., 24., 39., 28., 15.],
           [ 7., 15., 24., 17.,  9.]])
    """
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"conv2 takes two matrices, got shapes {a.shape} and {b.shape}")
    if shape not in ("full", "valid"):
        raise ConfigurationError(f"conv2: shape must be 'full' or 'valid', got {shape!r}")
    (a_h, a_w), (b_h, b_w) = a.shape, b.shape
    full = np.zeros((a_h + b_h - 1, a_w + b_w - 1), dtype=np.result_type(a, b, np.float64))
    for j in range(b_h):
        for k in range(b_w):
            full[j : j + a_h, k : k + a_w] += b[j, k] * a
    if shape == "full":
        return full
    # 'valid' keeps the rows m with b_h − 1 <= m <= a_h − 1: there all of b overlaps a.
    return full[b_h - 1 : a_h, b_w - 1 : a_w]


def dilate(delta: np.ndarray, stride: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Place the strided δ back into a stride-1-sized map: ``out[..., p·SH, q·SW] = δ[..., p, q]``, zeros elsewhere.

    Shape: ``(..., OH, OW)`` → ``(..., size[0], size[1])``.
    """
    stride_h, stride_w = stride
    out = np.zeros((*delta.shape[:-2], *size), dtype=delta.dtype)
    out[..., ::stride_h, ::stride_w][..., : delta.shape[-2], : delta.shape[-1]] = delta
    return out


def _pad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    pad_h, pad_w = padding
    return np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))


def conv_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """``u_j = Σ_i conv2(x_i, k_ij, 'valid') + b_j`` with ``k_ij = rot180(weight[j, i])`` (seed 000 §3.1).

    Shape: x ``(N, C, H, W)``, weight ``(F, C, KH, KW)``, bias ``(F,)`` → ``(N, F, OH, OW)``.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    x_padded = _pad(x, padding)
    n, channels = x.shape[:2]
    filters = weight.shape[0]
    kernels = rot180(weight)  # the seeds' k_ij, laid out as kernels[j, i]
    maps = []
    for sample in range(n):
        outputs = []
        for j in range(filters):
            terms = (conv2(x_padded[sample, i], kernels[j, i], "valid") for i in range(channels))
            u_j = functools.reduce(np.add, terms)  # Σ_i x_i * k_ij
            if bias is not None:
                u_j = u_j + bias[j]
            outputs.append(u_j[:: stride[0], :: stride[1]])  # a stride keeps every s-th position
        maps.append(outputs)
    return np.array(maps)


def conv_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∂E/∂x, ∂E/∂weight, ∂E/∂b)`` from ``δ = ∂E/∂u``, with the seeds' rot180/conv2 formulas.

    * ``∂E/∂x_i = Σ_j conv2(δ_j, rot180(k_ij), 'full')``          (000 §3.2.1, 002, 003)
    * ``∂E/∂k_ij = rot180(conv2(x_i, rot180(δ_j), 'valid'))``     (000 §3.1.1, 002), summed over the batch;
      ``∂E/∂weight[j, i] = rot180(∂E/∂k_ij)`` because ``k_ij = rot180(weight[j, i])``
    * ``∂E/∂b_j = Σ_uv (δ_j)_uv``

    Shape: grad_output ``(N, F, OH, OW)`` → ``(N, C, H, W)``, ``(F, C, KH, KW)``, ``(F,)``.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    x_padded = _pad(x, padding)
    n, channels, padded_h, padded_w = x_padded.shape
    filters, _, kernel_h, kernel_w = weight.shape
    if grad_output.shape[2:] != conv_output_size_2d(x.shape[2:], (kernel_h, kernel_w), stride, padding):
        raise ShapeError(f"δ of shape {grad_output.shape} does not fit input {x.shape} and weight {weight.shape}")
    # δ of the stride-1 convolution: the strided δ at every s-th position, zero where no output was kept.
    delta = dilate(grad_output, stride, (padded_h - kernel_h + 1, padded_w - kernel_w + 1))
    kernels = rot180(weight)  # the seeds' k_ij

    grad_x_padded = np.zeros(x_padded.shape, dtype=np.result_type(grad_output, weight, np.float64))
    grad_kernels = np.zeros(weight.shape, dtype=grad_x_padded.dtype)
    for sample in range(n):
        for i in range(channels):
            for j in range(filters):
                grad_x_padded[sample, i] += conv2(delta[sample, j], rot180(kernels[j, i]), "full")
                grad_kernels[j, i] += rot180(conv2(x_padded[sample, i], rot180(delta[sample, j]), "valid"))
    pad_h, pad_w = padding
    grad_x = grad_x_padded[:, :, pad_h : padded_h - pad_h, pad_w : padded_w - pad_w]  # padding gets no gradient
    grad_weight = rot180(grad_kernels)
    grad_bias = grad_output.sum(axis=(0, 2, 3))
    return grad_x, grad_weight, grad_bias
