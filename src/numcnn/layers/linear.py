"""``Linear`` and ``Flatten``: the fully connected end of a CNN (seed 000 §2)."""

from __future__ import annotations

import math

import numpy as np

from numcnn import kernels
from numcnn.functional.curvature import linear_curvature
from numcnn.layers.base import Layer, VectorLayer, fan_in_uniform, make_generator

__all__ = ["Linear", "Flatten"]


class Linear(VectorLayer):
    """Fully connected layer ``y = x Wᵀ + b`` (seed 000 eq. 2).

    Shape: ``(N, in_features)`` → ``(N, out_features)``.

    Parameters: ``weight`` ``(out_features, in_features)``, ``bias`` ``(out_features,)`` -- PyTorch's
    layouts and initialisation ``U(−1/√in, 1/√in)``.

    Gradients (seed 000 eqs. 3–5): ``∂E/∂W = δᵀ x``, ``∂E/∂b = Σ_n δ_n``, ``∂E/∂x = δ W``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator | int | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self._set_features(in_features, out_features)
        self.dtype = np.dtype(dtype)
        rng = make_generator(rng)
        self.add_parameter(
            "weight", fan_in_uniform((self.out_features, self.in_features), self.in_features, rng, self.dtype)
        )
        if bias:
            self.add_parameter("bias", fan_in_uniform((self.out_features,), self.in_features, rng, self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        backend = kernels.active()
        y = backend.linear_forward(x, self.params["weight"], self.params.get("bias"))
        self.cache = (backend, x)
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, x = self.require_cache()
        grad_input, grad_weight, grad_bias = backend.linear_backward(
            grad_output, x, self.params["weight"], need_input_grad
        )
        self.grads["weight"] += grad_weight
        if "bias" in self.grads:
            self.grads["bias"] += grad_bias
        return grad_input

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.asarray(x, dtype=self.dtype)
        curvature_input, curvature_weight, curvature_bias = linear_curvature(curvature_output, x, self.params["weight"])
        curvatures = {"weight": curvature_weight}
        if "bias" in self.params:
            curvatures["bias"] = curvature_bias
        return curvature_input, curvatures

    def config(self) -> dict:
        return {**super().config(), "bias": "bias" in self.params}

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if "bias" in self.params else text + ", bias=False"


class Flatten(Layer):
    """Reshape ``(N, C, H, W)`` (or any ``(N, ...)``) to ``(N, C·H·W)``; backward reshapes δ back.

    This is seed 000's "concatenate all feature maps into one vector" before the fully connected layers.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C·H·W), row-major, as torch.flatten(x, 1)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        input_shape = self.require_cache()
        return grad_output.reshape(input_shape) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        return curvature_output.reshape(x.shape), {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)
