"""The trainable sub-sampling of Bouvrie's notes: ``u_j = β_j · down(x_j) + b_j`` (seed 000 §3.2).

Dimension names as in :mod:`numcnn.functional.im2col`; ``n`` (here ``FH × FW``) is the sub-sampling
factor, and ``OH = ⌊H / FH⌋``, ``OW = ⌊W / FW⌋``.

* ``down(x)`` sums every non-overlapping ``FH × FW`` block of a map (000 §3.2: "sum over each distinct
  n×n block"); ``mode="mean"`` divides the sum by ``FH·FW``. Rows and columns left over when ``H`` is
  not a multiple of ``FH`` are not visited, exactly like pooling with ``stride = kernel``.
* ``up(δ) = δ ⊗ 1_{FH×FW}`` (000 §3.1.1, a Kronecker product) copies each entry of δ over its block.

Backward pass (000 §3.2.1 and 002 "降采样层梯度计算"), for ``u = β·d + b`` with ``d = down(x)`` kept
from the forward pass:

* ``∂E/∂b_j = Σ_uv (δ_j)_uv``
* ``∂E/∂β_j = Σ_uv (δ_j ∘ d_j)_uv``. Seed 000 prints this as ``Σ_uv (δ_j)`` -- the ``∘ d_j`` was lost in
  translation; seed 002 has it, and it is what the chain rule gives (``∂u/∂β = d``).
* ``∂E/∂x_j = β_j · up(δ_j)`` for the sum, ``β_j · up(δ_j) / (FH·FW)`` for the mean -- 000 §3.1.1's
  ``δˡ = βˡ⁺¹ (f′(uˡ) ∘ up(δˡ⁺¹))`` without the ``f′``, which belongs to the activation before.
  (002 writes the mean version with the ``1/SampleRate²`` factor.)

The batch axis ``N`` is summed in ``∂E/∂β`` and ``∂E/∂b`` like the spatial axes.

The Gauss–Newton curvature pass of this layer is in :mod:`numcnn.functional.curvature`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional.im2col import pair

__all__ = [
    "SUBSAMPLE_MODES",
    "SubsampleCache",
    "subsample_factor",
    "subsample_output_size",
    "down",
    "up",
    "subsample_forward",
    "subsample_backward",
]

SUBSAMPLE_MODES = ("sum", "mean")


class SubsampleCache(NamedTuple):
    """What :func:`subsample_backward` needs: 000's ``d_j = down(x_j)`` and the input size."""

    downsampled: np.ndarray  # (N, C, OH, OW): d = down(x), for ∂E/∂β
    beta: np.ndarray  # (C,): for ∂E/∂x
    input_size: tuple[int, int]  # (H, W): up(δ) is zero-padded back to it
    factor: tuple[int, int]
    mode: str


def subsample_factor(factor: int | tuple[int, int], mode: str, layer: str = "Subsample2d") -> tuple[int, int]:
    """Validated ``(FH, FW)`` and mode; fails when the layer is built, not at its first forward pass."""
    factor = pair(factor, "factor")
    if min(factor) < 1:
        raise ConfigurationError(f"{layer}: the sub-sampling factor must be >= 1, got {factor}")
    if mode not in SUBSAMPLE_MODES:
        raise ConfigurationError(f"{layer}: mode must be one of {SUBSAMPLE_MODES}, got {mode!r}")
    return factor


def subsample_output_size(input_size: tuple[int, int], factor: tuple[int, int]) -> tuple[int, int]:
    """``(⌊H/FH⌋, ⌊W/FW⌋)``; a map smaller than one block is an error, not an empty output."""
    (h, w), (factor_h, factor_w) = input_size, factor
    if h < factor_h or w < factor_w:
        raise ShapeError(f"sub-sampling by {factor} needs maps of at least that size, got {input_size}")
    return h // factor_h, w // factor_w


def down(x: np.ndarray, factor: int | tuple[int, int], mode: str = "sum") -> np.ndarray:
    """Seed 000's ``down(·)``: the sum (or mean) of every non-overlapping ``FH × FW`` block.

    Shape: ``(N, C, H, W)`` → ``(N, C, ⌊H/FH⌋, ⌊W/FW⌋)``.

    >>> down(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    if x.ndim != 4:
        raise ShapeError(f"sub-sampling input must have shape (N, C, H, W), got {x.shape}")
    factor_h, factor_w = pair(factor, "factor")
    n, c, h, w = x.shape
    out_h, out_w = subsample_output_size((h, w), (factor_h, factor_w))
    # Cut off the unvisited border, then split each axis into (block index, position in block).
    blocks = x[:, :, : out_h * factor_h, : out_w * factor_w].reshape(n, c, out_h, factor_h, out_w, factor_w)
    summed = blocks.sum(axis=(3, 5))
    return summed / (factor_h * factor_w) if mode == "mean" else summed


def up(delta: np.ndarray, factor: int | tuple[int, int], input_size: tuple[int, int] | None = None) -> np.ndarray:
    """Seed 000's ``up(δ) = δ ⊗ 1_{FH×FW}``: every entry copied over its block (a Kronecker product).

    With ``input_size`` the result is zero-padded to ``(H, W)``: pixels that ``down`` never visited
    get no gradient.

    Shape: ``(N, C, OH, OW)`` → ``(N, C, OH·FH, OW·FW)`` (or ``(N, C, H, W)``).

    >>> up(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), 2)[0, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]])
    """
    factor_h, factor_w = pair(factor, "factor")
    n, c, out_h, out_w = delta.shape
    # Broadcasting δ against a block of ones is np.kron(δ, ones) for every map at once.
    blocks = np.broadcast_to(delta[:, :, :, None, :, None], (n, c, out_h, factor_h, out_w, factor_w))
    upsampled = blocks.reshape(n, c, out_h * factor_h, out_w * factor_w)
    if input_size is None or input_size == upsampled.shape[2:]:
        return np.ascontiguousarray(upsampled)
    h, w = input_size
    padded = np.zeros((n, c, h, w), dtype=delta.dtype)
    padded[:, :, : out_h * factor_h, : out_w * factor_w] = upsampled
    return padded


def subsample_forward(
    x: np.ndarray, beta: np.ndarray, bias: np.ndarray, factor: int | tuple[int, int], mode: str = "sum"
) -> tuple[np.ndarray, SubsampleCache]:
    """``u_j = β_j · down(x_j) + b_j`` (seed 000 §3.2, before the activation ``f``).

    Shape:
        - x: ``(N, C, H, W)``; beta, bias: ``(C,)``
        - returns u: ``(N, C, ⌊H/FH⌋, ⌊W/FW⌋)`` and the cache for :func:`subsample_backward`
    """
    factor = pair(factor, "factor")
    if x.ndim != 4 or x.shape[1] != beta.shape[0]:
        raise ShapeError(
            f"sub-sampling of {beta.shape[0]} maps needs an input of shape (N, {beta.shape[0]}, H, W), got {x.shape}"
        )
    downsampled = down(x, factor, mode)  # 000's d_j, kept for ∂E/∂β
    u = beta.reshape(1, -1, 1, 1) * downsampled + bias.reshape(1, -1, 1, 1)
    return u, SubsampleCache(downsampled, beta, (x.shape[2], x.shape[3]), factor, mode)


def subsample_backward(
    grad_output: np.ndarray, cache: SubsampleCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(∂E/∂x or None, ∂E/∂β, ∂E/∂b)`` for ``grad_output = δ = ∂E/∂u`` of shape ``(N, C, OH, OW)``.

    Shapes of the results: ``(N, C, H, W)``, ``(C,)``, ``(C,)``.
    """
    grad_bias = grad_output.sum(axis=(0, 2, 3))  # Σ_uv δ_j
    grad_beta = (grad_output * cache.downsampled).sum(axis=(0, 2, 3))  # Σ_uv (δ_j ∘ d_j), see module notes
    grad_input = None
    if need_input_grad:
        scale = cache.beta.reshape(1, -1, 1, 1)
        if cache.mode == "mean":
            scale = scale / (cache.factor[0] * cache.factor[1])  # ∂ mean / ∂ x = 1/(FH·FW) per pixel
        grad_input = up(grad_output * scale, cache.factor, cache.input_size)  # β · up(δ)
    return grad_input, grad_beta, grad_bias
