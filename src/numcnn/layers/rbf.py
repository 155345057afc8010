"""``EuclideanRBF``: LeNet-5's output layer of Euclidean radial basis function units (LeCun et al. 1998,
§II.B, eq. 7); the mathematics is in :mod:`numcnn.functional.rbf`."""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError, NumcnnError
from numcnn.functional.curvature import rbf_curvature
from numcnn.functional.rbf import rbf_backward, rbf_forward
from numcnn.layers.base import VectorLayer, make_generator

__all__ = ["EuclideanRBF"]


class EuclideanRBF(VectorLayer):
    """``y_i = Σ_j (x_j − w_ij)²``: the squared distance of the input to each class's fixed code ``w_i``.

    The outputs are penalties -- the predicted class is ``argmin_i y_i`` (``ModelSpec.prediction =
    "argmin"``) -- and are trained with the paper's criteria ``"rbf_mse"`` / ``"rbf_map"``
    (:data:`numcnn.losses.LOSS_TYPES`).

    The codes are not trained (the paper keeps them fixed, "chosen by hand"): they are a *buffer*, saved
    in checkpoints but not given to optimisers, so the layer has no parameters. By default they are
    random ``±1`` vectors (the paper's choice for classes without a drawing); LeNet-5 passes its 7×12
    digit bitmaps, :data:`numcnn.models.lenet5_1998.DIGIT_CODES`.

    Shape: ``(N, in_features)`` → ``(N, out_features)``.

    Gradient: ``∂E/∂x_j = Σ_i δ_i · 2 (x_j − w_ij)``.

    :meth:`config` holds the sizes only: the codes are a buffer and travel with the weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        prototypes=None,
        *,
        rng: np.random.Generator | int | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self._set_features(in_features, out_features)
        self.dtype = np.dtype(dtype)
        if prototypes is None:
            prototypes = make_generator(rng).choice([-1.0, 1.0], size=(self.out_features, self.in_features))
        prototypes = np.array(prototypes, dtype=self.dtype)
        if prototypes.shape != (self.out_features, self.in_features):
            raise ConfigurationError(
                f"EuclideanRBF: prototypes must have shape ({self.out_features}, {self.in_features}), "
                f"got {prototypes.shape}"
            )
        self.buffers["prototypes"] = prototypes

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        self.cache = x
        return rbf_forward(x, self.buffers["prototypes"])

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        x = self.require_cache()
        return rbf_backward(grad_output, x, self.buffers["prototypes"]) if need_input_grad else None

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if grad_output is None:
            raise NumcnnError(
                "EuclideanRBF's curvature pass needs ∂E/∂y (grad_output): use it as the last layer of the model"
            )
        x = np.asarray(x, dtype=self.dtype)
        return rbf_curvature(curvature_output, grad_output, x, self.buffers["prototypes"]), {}
