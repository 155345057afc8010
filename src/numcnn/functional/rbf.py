"""LeNet-5's output layer and its two training criteria (LeCun, Bottou, Bengio, Haffner 1998, §II.B–C).

Euclidean RBF units (paper eq. 7): with fixed prototypes ``w_i`` (one ``±1`` code per class),

    y_i = Σ_j (x_j − w_ij)²                      ∂y_i/∂x_j = 2 (x_j − w_ij)

so ``y_i`` is a *penalty*: the closer ``x`` is to class ``i``'s code, the smaller it is, and the
predicted class is ``argmin_i y_i``.

Criteria, for labels ``D_n`` and a batch of ``N`` samples (mean reduction; ``"sum"`` drops the 1/N):

* paper eq. 8, "rbf_mse": ``E = (1/N) Σ_n y_{D_n}(x_n)`` -- the squared distance of the F6 output to the
  correct class's code; ``∂E/∂y_ni = [i = D_n] / N``.
* paper eq. 9, "rbf_map": ``E = (1/N) Σ_n ( y_{D_n} + log(e^{−j} + Σ_i e^{−y_ni}) )`` -- eq. 8 plus a term
  that pushes the wrong classes' penalties up (a "maximum a posteriori" criterion; ``j > 0`` is the
  penalty of a rubbish class). With ``p_i = e^{−y_i} / (e^{−j} + Σ_k e^{−y_k})``:
  ``∂E/∂y_ni = ([i = D_n] − p_ni) / N``.

The curvature (Gauss–Newton) rules for both are in :mod:`numcnn.functional.curvature`.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError
from numcnn.functional.loss import one_hot, reduction_scale

__all__ = [
    "rbf_forward",
    "rbf_backward",
    "rbf_mse_forward",
    "rbf_mse_backward",
    "rbf_map_forward",
    "rbf_map_backward",
]


def rbf_forward(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``y[n, i] = Σ_j (x[n, j] − prototypes[i, j])²`` (paper eq. 7).

    Shape: x ``(N, F)``, prototypes ``(K, F)`` → ``(N, K)``.
    """
    if x.ndim != 2 or x.shape[1] != prototypes.shape[1]:
        features = prototypes.shape[1]
        raise ShapeError(f"RBF units with {features} inputs need an input of shape (N, {features}), got {x.shape}")
    # Squared and summed in float64, rounded once to the inputs' type: the penalties reach ~100, where a
    # float32 sum of F terms would be off by several units in the last place (and by a different amount
    # in every implementation: ONNX Runtime's export does the same, so the two agree to the last bit).
    difference = x[:, None, :].astype(np.float64) - prototypes[None, :, :]  # (N, K, F): x − w_i for every class i
    return (difference * difference).sum(axis=2).astype(np.result_type(x, prototypes))


def rbf_backward(grad_output: np.ndarray, x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``∂E/∂x_j = Σ_i δ_i · 2 (x_j − w_ij) = 2 (x_j Σ_i δ_i − Σ_i δ_i w_ij)``.

    Shape: grad_output ``(N, K)``, x ``(N, F)``, prototypes ``(K, F)`` → ``(N, F)``.
    """
    return 2.0 * (grad_output.sum(axis=1, keepdims=True) * x - grad_output @ prototypes)


def _check_labels(penalties: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if penalties.ndim != 2:
        raise ShapeError(f"RBF outputs must have shape (N, K), got {penalties.shape}")
    if labels.shape != (penalties.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ShapeError(
            f"RBF criteria need integer labels of shape ({penalties.shape[0]},), got {labels.dtype} {labels.shape}"
        )
    return one_hot(labels, penalties.shape[1], dtype=penalties.dtype)  # also checks the label range


def rbf_mse_forward(penalties: np.ndarray, labels: np.ndarray, reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Paper eq. 8: the correct class's RBF output, averaged. Returns ``(E, one-hot targets)``.

    Shape: penalties ``(N, K)``, labels ``(N,)`` integers.
    """
    targets = _check_labels(penalties, labels)
    return float((penalties * targets).sum()) * reduction_scale(len(targets), reduction), targets


def rbf_mse_backward(targets: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """``∂E/∂y = onehot(D) / N``: only the correct class's penalty is pulled down."""
    return targets * reduction_scale(len(targets), reduction)


def rbf_map_forward(
    penalties: np.ndarray, labels: np.ndarray, rubbish_penalty: float = 1.0, reduction: str = "mean"
) -> tuple[float, np.ndarray, np.ndarray]:
    """Paper eq. 9 with ``j = rubbish_penalty``. Returns ``(E, p, one-hot targets)``.

    ``log(e^{−j} + Σ_i e^{−y_i})`` is a log-sum-exp over ``(−j, −y_1, ..., −y_K)``, shifted by its largest
    term so that no exponential overflows or underflows to a ``log 0``.
    """
    targets = _check_labels(penalties, labels)
    n = penalties.shape[0]
    exponents = np.concatenate([np.full((n, 1), -rubbish_penalty, dtype=penalties.dtype), -penalties], axis=1)
    largest = exponents.max(axis=1, keepdims=True)
    weights = np.exp(exponents - largest)  # (N, K + 1), column 0 is the rubbish class
    total = weights.sum(axis=1, keepdims=True)
    log_partition = largest[:, 0] + np.log(total[:, 0])
    probabilities = weights[:, 1:] / total  # p_i = e^{−y_i} / (e^{−j} + Σ_k e^{−y_k})
    per_sample = (penalties * targets).sum(axis=1) + log_partition
    return float(per_sample.sum()) * reduction_scale(n, reduction), probabilities, targets


def rbf_map_backward(probabilities: np.ndarray, targets: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """``∂E/∂y_i = ([i = D] − p_i) / N``."""
    return (targets - probabilities) * reduction_scale(len(targets), reduction)
