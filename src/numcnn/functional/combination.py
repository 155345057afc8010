"""Learned combinations of feature maps (seed 000 §3.3, seed 002 "学习特征图的组合" and "加强稀疏组合").

Instead of a hand-made connection table, every output map ``j`` mixes *all* input maps with learned
weights ``α_ij ≥ 0``, ``Σ_i α_ij = 1``::

    u_j = Σ_i α_ij (x_i * k_i) + b_j,      α_·j = softmax(c_·j)          (000 §3.3; 002)

Each input map has one kernel ``k_i`` (the notes' ``k_i``, not ``k_ij``: with a kernel per pair the
``α_ij`` could be absorbed into it and would mean nothing). ``*`` is numcnn's valid cross-correlation
with stride and padding; ``z_i = x_i * k_i`` is kept from the forward pass.

Backward, with ``δ_j = ∂E/∂u_j``:

* ``∂E/∂α_ij = Σ_uv (δ_j ∘ z_i)_uv``                                   (000/002, before eq. 9)
* ``∂E/∂c_ij = α_ij (∂E/∂α_ij − Σ_k ∂E/∂α_kj α_kj)``        (000 eqs. 9–10; 002 eqs. 16–17)
  -- the softmax Jacobian ``∂α_k/∂c_i = δ_ki α_i − α_i α_k`` (000 eq. 8), applied by
  :func:`~numcnn.functional.activation.softmax_backward` along the input axis.
* ``∂E/∂z_i = Σ_j α_ij δ_j``, then ``∂E/∂k_i`` and ``∂E/∂x_i`` as for a convolution with one map.

Sparsity (000 §3.3.1 eqs. 11–13; 002 eqs. 18–21): ``Ẽ = E + Ω`` with ``Ω = λ Σ_ij |α_ij|`` and

    ∂Ω/∂c_i = λ (|α_i| − α_i Σ_k |α_k|)                                  (000 eq. 13; 002 eq. 21)

*A remark on the notes.* Under the softmax ``|α_ij| = α_ij`` and ``Σ_i α_ij = 1``, so this ``Ω`` equals
``λ · C_out`` for every ``c`` and eq. 13 is identically zero: the L1 penalty of the notes cannot make the
combinations sparse. numcnn implements it as written (tests confirm both facts) and generalises it to
``Ω = λ Σ_ij |α_ij|^p``, whose gradient by the same chain rule (eqs. 9–10 with
``∂Ω/∂α_i = λ p α_i^{p−1}``) is ``λ p (|α_i|^p − α_i Σ_k |α_k|^p)``; ``p = 1`` is eq. 13, and ``p < 1``
(e.g. ½) is smallest at the corners of the simplex, so it does favour few inputs per output map.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.activation import softmax_backward, softmax_forward
from numcnn.functional.im2col import col2im, im2col, pair

__all__ = [
    "CombinationCache",
    "combination_weights",
    "combination_forward",
    "combination_backward",
    "sparsity_penalty",
    "sparsity_penalty_gradient",
]


class CombinationCache(NamedTuple):
    columns: np.ndarray  # (N, C, KH, KW, OH, OW): the unfolded input, for ∂E/∂k
    responses: np.ndarray  # (N, C, OH, OW): z_i = x_i * k_i, for ∂E/∂α
    kernels: np.ndarray  # (C, KH, KW): for ∂E/∂x
    alpha: np.ndarray  # (C, F): for ∂E/∂z and the softmax Jacobian
    input_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def combination_weights(logits: np.ndarray) -> np.ndarray:
    """``α_ij = exp(c_ij) / Σ_k exp(c_kj)``: each column (one output map) sums to 1. Shape ``(C, F)``."""
    return softmax_forward(logits, axis=0)


def combination_forward(
    x: np.ndarray,
    kernels: np.ndarray,
    logits: np.ndarray,
    bias: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, CombinationCache]:
    """``u_j = Σ_i α_ij (x_i * k_i) + b_j`` with ``α = softmax(c)`` over the inputs ``i``.

    Shape:
        - x ``(N, C, H, W)``; kernels ``(C, KH, KW)``; logits ``(C, F)``; bias ``(F,)``
        - returns u ``(N, F, OH, OW)`` and the cache for :func:`combination_backward`
    """
    if x.ndim != 4 or x.shape[1] != kernels.shape[0]:
        channels = kernels.shape[0]
        raise ShapeError(f"a combination of {channels} maps needs input (N, {channels}, H, W), got {x.shape}")
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    alpha = combination_weights(logits)
    columns = im2col(x, kernels.shape[1:], stride, padding)  # (N, C, KH, KW, OH, OW)
    responses = np.einsum("ncklpq,ckl->ncpq", columns, kernels)  # z_i = x_i * k_i, one kernel per map
    u = np.einsum("ncpq,cf->nfpq", responses, alpha) + bias.reshape(1, -1, 1, 1)
    cache = CombinationCache(columns, responses, kernels, alpha, (x.shape[2], x.shape[3]), stride, padding)
    return u, cache


def combination_backward(
    grad_output: np.ndarray, cache: CombinationCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """``(∂E/∂x or None, ∂E/∂k, ∂E/∂c, ∂E/∂b)`` for ``δ = ∂E/∂u`` of shape ``(N, F, OH, OW)``.

    Shapes: ``(N, C, H, W)``, ``(C, KH, KW)``, ``(C, F)``, ``(F,)``.
    """
    grad_alpha = np.einsum("nfpq,ncpq->cf", grad_output, cache.responses)  # Σ_uv δ_j ∘ (x_i * k_i)
    # eq. 10: ∂E/∂c_i = α_i (∂E/∂α_i − Σ_k ∂E/∂α_k α_k), the softmax Jacobian along the input axis
    grad_logits = softmax_backward(grad_alpha, cache.alpha, axis=0)
    grad_bias = grad_output.sum(axis=(0, 2, 3))
    grad_responses = np.einsum("nfpq,cf->ncpq", grad_output, cache.alpha)  # ∂E/∂z_i = Σ_j α_ij δ_j
    grad_kernels = np.einsum("ncpq,ncklpq->ckl", grad_responses, cache.columns)
    grad_input = None
    if need_input_grad:
        # Each window of map i received k_i: spread ∂E/∂z_i back over it and add the overlaps (col2im).
        grad_columns = cache.kernels[None, :, :, :, None, None] * grad_responses[:, :, None, None, :, :]
        grad_input = col2im(grad_columns, cache.input_size, cache.stride, cache.padding)
    return grad_input, grad_kernels, grad_logits, grad_bias


def sparsity_penalty(alpha: np.ndarray, strength: float, power: float = 1.0) -> float:
    """``Ω = λ Σ_ij |α_ij|^p`` (000 eq. 11 for ``p = 1``; see the module notes for why ``p < 1`` matters)."""
    return float(strength * np.sum(np.abs(alpha) ** power))


def sparsity_penalty_gradient(alpha: np.ndarray, strength: float, power: float = 1.0) -> np.ndarray:
    """``∂Ω/∂c_i = λ p (|α_i|^p − α_i Σ_k |α_k|^p)`` per output map (000 eq. 13 for ``p = 1``).

    Shape: alpha ``(C, F)`` → ``(C, F)``.
    """
    powered = np.abs(alpha) ** power
    return strength * power * (powered - alpha * powered.sum(axis=0, keepdims=True))
