"""Loss functions: softmax cross-entropy fused with log-softmax, and the sum-of-squares error of seed 000.

Both reduce a batch of ``N`` samples to the *mean* per-sample loss, so the learning rate does not
depend on the batch size; ``reduction="sum"`` gives the total (seed 000's ``E^N = Σ_n E^n``).

Cross-entropy with targets ``t`` (one-hot, or any probability rows) and ``p = softmax(u)``:
``E = −(1/N) Σ_n Σ_k t_nk log p_nk`` and ``∂E/∂u = (p − t) / N``. The log-probabilities come from a
log-sum-exp (:func:`~numcnn.functional.activation.log_softmax`), so large logits neither overflow nor
produce ``log 0``.

Squared error (seed 000 eq. 1): ``Eⁿ = ½ ‖tⁿ − yⁿ‖²`` per sample, ``∂Eⁿ/∂yⁿ = yⁿ − tⁿ`` (the
``(yⁿ − tⁿ)`` factor of ``δᴸ``); averaged: ``E = (1/N) Σ_n Eⁿ``, ``∂E/∂y = (y − t)/N``.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.activation import log_softmax

__all__ = [
    "one_hot",
    "as_target_distribution",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "mse_forward",
    "mse_backward",
    "REDUCTIONS",
    "reduction_scale",
]

REDUCTIONS = ("mean", "sum")


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float32) -> np.ndarray:
    """Rows of the identity matrix picked by integer ``labels`` of shape ``(N,)``."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ShapeError(f"class labels must have shape (N,), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ShapeError(
            f"class labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}"
        )
    encoded = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    encoded[np.arange(labels.shape[0]), labels] = 1
    return encoded


def as_target_distribution(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Targets as an ``(N, K)`` array like ``outputs``: integer labels become one-hot rows."""
    targets = np.asarray(targets)
    if outputs.ndim != 2:
        raise ShapeError(f"outputs must have shape (N, K), got {outputs.shape}")
    if targets.ndim == 1 and np.issubdtype(targets.dtype, np.integer):
        if targets.shape[0] != outputs.shape[0]:
            raise ShapeError(f"{targets.shape[0]} labels for a batch of {outputs.shape[0]} outputs")
        return one_hot(targets, outputs.shape[1], dtype=outputs.dtype)
    if targets.shape != outputs.shape:
        raise ShapeError(
            f"targets must be integer labels of shape ({outputs.shape[0]},) or an array of the outputs' "
            f"shape {outputs.shape}, got {targets.dtype} of shape {targets.shape}"
        )
    return targets.astype(outputs.dtype, copy=False)


def reduction_scale(n: int, reduction: str) -> float:
    """The factor of a batch sum: ``1/N`` for ``"mean"``, ``1`` for ``"sum"`` (losses, their gradients
    and their curvatures all use it)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return 1.0 / n if reduction == "mean" else 1.0


def cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, reduction: str = "mean"
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return ``(loss, probabilities, target_distribution)``; the last two are backward's cache.

    Shape: logits ``(N, K)``; targets ``(N,)`` integer labels or ``(N, K)`` distributions.
    """
    target_distribution = as_target_distribution(targets, logits)
    log_probabilities = log_softmax(logits, axis=1)
    scale = reduction_scale(logits.shape[0], reduction)
    loss = -float((target_distribution * log_probabilities).sum()) * scale
    return loss, np.exp(log_probabilities), target_distribution


def cross_entropy_backward(
    probabilities: np.ndarray, target_distribution: np.ndarray, reduction: str = "mean"
) -> np.ndarray:
    """``∂E/∂logits = (p − t)/N`` for ``mean`` (``p − t`` for ``sum``); valid when rows of t sum to 1."""
    scale = reduction_scale(probabilities.shape[0], reduction)
    return (probabilities - target_distribution) * scale


def mse_forward(outputs: np.ndarray, targets: np.ndarray, reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Return ``(loss, outputs − targets)``; the residual is backward's cache."""
    targets = np.asarray(targets)
    if targets.shape != outputs.shape:
        raise ShapeError(f"targets of shape {targets.shape} do not match outputs of shape {outputs.shape}")
    residual = outputs - targets.astype(outputs.dtype, copy=False)
    scale = reduction_scale(outputs.shape[0], reduction)
    return 0.5 * float((residual * residual).sum()) * scale, residual


def mse_backward(residual: np.ndarray, reduction: str = "mean") -> np.ndarray:
    return residual * reduction_scale(residual.shape[0], reduction)
