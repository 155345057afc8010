"""The fully connected layer ``y = x Wᵀ + b`` (seed 000 eq. 2, weight in PyTorch's ``(out, in)`` layout).

Backward (seed 000 eqs. 3–5, batched over rows of ``x``):

* ``∂E/∂x = δ W``            -- the ``(Wˡ⁺¹)ᵀ δˡ⁺¹`` of eq. 4, one row per sample
* ``∂E/∂W = δᵀ x``           -- eq. 5's outer product ``x δᵀ``, summed over the batch
* ``∂E/∂b = Σ_n δ_n``         -- eq. 3
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError

__all__ = ["linear_forward", "linear_backward"]


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Shape: x ``(N, in)``, weight ``(out, in)``, bias ``(out,)`` → ``(N, out)``."""
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ShapeError(
            f"linear input must have shape (N, {weight.shape[1]}), got {x.shape}; "
            "put a Flatten layer before Linear to feed it image batches"
        )
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def linear_backward(
    grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Return ``(∂E/∂x or None, ∂E/∂W, ∂E/∂b)`` for ``grad_output`` of shape ``(N, out)``."""
    grad_weight = grad_output.T @ x  # (out, in)
    grad_bias = grad_output.sum(axis=0)  # (out,)
    grad_input = grad_output @ weight if need_input_grad else None  # (N, in)
    return grad_input, grad_weight, grad_bias
