"""Loss objects: ``value = loss.forward(outputs, targets)`` then ``d_outputs = loss.backward()``.

The maths is in :mod:`numcnn.functional.loss`; these classes keep the forward cache between the
two calls, like layers do.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import NumcnnError
from numcnn.functional.loss import (
    REDUCTIONS,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "LOSS_TYPES"]


class Loss:
    """Base class of losses: a scalar of the network outputs and the targets."""

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.cache = None

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return self.forward(outputs, targets)

    def require_cache(self):
        if self.cache is None:
            raise NumcnnError(f"{type(self).__name__}.backward() was called before forward()")
        return self.cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on raw scores (logits), fused with a log-sum-exp log-softmax.

    ``E = −(1/N) Σ_n Σ_k t_nk log softmax(u_n)_k``; backward ``∂E/∂u = (p − t)/N``.

    Shape: outputs ``(N, K)``; targets ``(N,)`` integer labels or ``(N, K)`` one-hot / probability rows.
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss, probabilities, target_distribution = cross_entropy_forward(outputs, targets, self.reduction)
        self.cache = (probabilities, target_distribution)
        return loss

    def backward(self) -> np.ndarray:
        probabilities, target_distribution = self.require_cache()
        return cross_entropy_backward(probabilities, target_distribution, self.reduction)


class MSELoss(Loss):
    """Sum-of-squares error of seed 000 eq. 1, ``Eⁿ = ½ ‖tⁿ − yⁿ‖²`` per sample.

    Batch reduction: ``"mean"`` (default) returns ``(1/N) Σ_n Eⁿ`` and ``∂E/∂y = (y − t)/N``;
    ``"sum"`` returns seed 000's ``E^N = Σ_n Eⁿ`` and ``∂E/∂y = y − t``.
    (PyTorch's ``MSELoss`` differs: it averages over every element and has no ½.)

    Shape: outputs and targets of the same shape ``(N, ...)``.
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss, residual = mse_forward(outputs, targets, self.reduction)
        self.cache = residual
        return loss

    def backward(self) -> np.ndarray:
        return mse_backward(self.require_cache(), self.reduction)


# Losses by the name a model specification uses (:attr:`numcnn.models.ModelSpec.loss`).
LOSS_TYPES: dict[str, type[Loss]] = {"cross_entropy": CrossEntropyLoss, "mse": MSELoss}
