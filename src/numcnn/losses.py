"""Loss objects: ``value = loss.forward(outputs, targets)`` then ``d_outputs = loss.backward()``.

The maths is in :mod:`numcnn.functional.loss`; these classes keep the forward cache between the
two calls, like layers do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numcnn.errors import NumcnnError
from numcnn.functional.curvature import (
    cross_entropy_curvature,
    mse_curvature,
    rbf_map_curvature,
    rbf_mse_curvature,
)
from numcnn.functional.loss import (
    REDUCTIONS,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)
from numcnn.functional.rbf import rbf_map_backward, rbf_map_forward, rbf_mse_backward, rbf_mse_forward

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "RBFLoss", "RBFMAPLoss", "LOSS_TYPES"]


class Loss:
    """Base class of losses: a scalar of the network outputs and the targets."""

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.cache: Any = None  # each loss documents what its forward keeps here

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def curvature(self) -> np.ndarray:
        """``∂²E/∂outputs²`` (its diagonal, Gauss–Newton) at the last forward pass: where the curvature
        pass of the SDLM optimiser starts (:mod:`numcnn.functional.curvature`)."""
        raise NumcnnError(f"{type(self).__name__} has no curvature (needed by the SDLM optimiser)")

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

    def curvature(self) -> np.ndarray:
        probabilities, _ = self.require_cache()
        return cross_entropy_curvature(probabilities, self.reduction)


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

    def curvature(self) -> np.ndarray:
        return mse_curvature(self.require_cache(), self.reduction)


class RBFLoss(Loss):
    """LeNet-5's criterion (LeCun et al. 1998, eq. 8): the correct class's RBF output, averaged over the
    batch, ``E = (1/N) Σ_n y_{D_n}`` -- i.e. the squared distance of the F6 output to the correct code.

    Shape: outputs ``(N, K)`` RBF penalties (:class:`~numcnn.layers.EuclideanRBF`); targets ``(N,)`` labels.
    Backward: ``∂E/∂y = onehot(D)/N``.
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss, self.cache = rbf_mse_forward(outputs, targets, self.reduction)
        return loss

    def backward(self) -> np.ndarray:
        return rbf_mse_backward(self.require_cache(), self.reduction)

    def curvature(self) -> np.ndarray:
        return rbf_mse_curvature(self.require_cache())


class RBFMAPLoss(Loss):
    """The paper's MAP criterion (LeCun et al. 1998, eq. 9), with the rubbish-class constant ``j``:
    ``E = (1/N) Σ_n (y_{D_n} + log(e^{−j} + Σ_i e^{−y_ni}))`` -- eq. 8 plus a term that pushes the wrong
    classes' penalties up. Backward: ``([i = D] − p_i)/N`` with ``p_i = e^{−y_i}/(e^{−j} + Σ_k e^{−y_k})``.
    """

    def __init__(self, reduction: str = "mean", rubbish_penalty: float = 1.0) -> None:
        super().__init__(reduction)
        self.rubbish_penalty = float(rubbish_penalty)

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss, probabilities, one_hot_targets = rbf_map_forward(outputs, targets, self.rubbish_penalty, self.reduction)
        self.cache = (probabilities, one_hot_targets)
        return loss

    def backward(self) -> np.ndarray:
        probabilities, targets = self.require_cache()
        return rbf_map_backward(probabilities, targets, self.reduction)

    def curvature(self) -> np.ndarray:
        probabilities, _ = self.require_cache()
        return rbf_map_curvature(probabilities, self.reduction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r}, rubbish_penalty={self.rubbish_penalty})"


# Losses by the name a model specification uses (:attr:`numcnn.models.ModelSpec.loss`).
LOSS_TYPES: dict[str, type[Loss]] = {
    "cross_entropy": CrossEntropyLoss,
    "mse": MSELoss,
    "rbf_mse": RBFLoss,
    "rbf_map": RBFMAPLoss,
}
