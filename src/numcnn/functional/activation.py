"""Element-wise activations and the softmax, each with the derivative its backward pass uses.

For an element-wise ``a = f(u)`` the chain rule gives ``δ_u = δ_a ∘ f′(u)`` -- the ``∘ f′(uˡ)`` factor of
seed 000 eq. 4. Each derivative below is written in terms of what the forward pass already produced,
so backward needs no recomputation:

* ReLU:     ``f′(u) = 1[u > 0]``                     (the mask; ``f′(0)`` is taken as 0, as PyTorch does)
* sigmoid:  ``f(u) = 1/(1 + e^(−βu))``, ``f′ = β f (1 − f)``   (seed 000 §2.1, β = 1 by default)
* tanh:     ``f(u) = A tanh(S u)``, ``f′ = S (A − f²/A)``      (LeCun's A = 1.7159, S = 2/3 in 000 §2.1)
* softmax:  ``∂E/∂u = p ∘ (∂E/∂p − Σ_k ∂E/∂p_k p_k)``  (the softmax Jacobian of seed 000 eq. 8)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softmax_forward",
    "softmax_backward",
    "log_softmax",
]


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``max(x, 0)`` and the mask ``x > 0`` that backward needs."""
    mask = x > 0
    return x * mask, mask


def relu_backward(grad_output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return grad_output * mask


def sigmoid_forward(x: np.ndarray, slope: float = 1.0) -> np.ndarray:
    """Logistic ``1 / (1 + e^(−slope·x))``, evaluated without overflow for large ``|x|``."""
    z = slope * x
    # e^(−|z|) never overflows; the two branches are the same function written stably.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(grad_output: np.ndarray | float, y: np.ndarray, slope: float = 1.0) -> np.ndarray:
    return grad_output * (slope * y * (1.0 - y))


def tanh_forward(x: np.ndarray, amplitude: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """``amplitude · tanh(scale · x)``."""
    return amplitude * np.tanh(scale * x)


def tanh_backward(
    grad_output: np.ndarray | float, y: np.ndarray, amplitude: float = 1.0, scale: float = 1.0
) -> np.ndarray:
    # d/du A·tanh(S·u) = A·S·(1 − tanh²) = S·(A − y²/A) with y = A·tanh(S·u).
    return grad_output * (scale * (amplitude - y * y / amplitude))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x − logsumexp(x)``, shifted by the maximum so that no exponential overflows."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_forward(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(grad_output: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return y * (grad_output - (grad_output * y).sum(axis=axis, keepdims=True))
