"""Activation layers; their derivatives live in :mod:`numcnn.functional.activation` (ReLU goes through
the active backend of :mod:`numcnn.kernels`, the others are single element-wise passes already)."""

from __future__ import annotations

import numpy as np

from numcnn import kernels
from numcnn.errors import NumcnnError
from numcnn.functional.activation import (
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from numcnn.functional.curvature import relu_curvature, sigmoid_curvature, softmax_curvature, tanh_curvature
from numcnn.layers.base import Layer

__all__ = [
    "ReLU",
    "Sigmoid",
    "Tanh",
    "ScaledTanh",
    "Softmax",
    "LECUN_TANH_AMPLITUDE",
    "LECUN_TANH_SCALE",
]

# LeCun's scaled tanh 1.7159·tanh(2x/3) (seed 000 §2.1): f(±1) = ±1 (to 3e-6) and the largest |f″|
# lies near ±1, so targets ±1 sit where the curve bends and do not saturate it.
LECUN_TANH_AMPLITUDE = 1.7159
LECUN_TANH_SCALE = 2.0 / 3.0


class ReLU(Layer):
    """``max(x, 0)``; backward multiplies δ by the mask ``x > 0``. Shape: any → same."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        backend = kernels.active()
        y, cache = backend.relu_forward(x)
        self.cache = (backend, cache)
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, backend_cache = self.require_cache()
        return backend.relu_backward(grad_output, backend_cache) if need_input_grad else None

    def require_cache(self):
        if self.cache is None:
            raise NumcnnError(
                "ReLU.backward() was called before forward(); inside a Sequential or Graph a ReLU may run fused "
                "into the MaxPool2d after it or the Conv2d or BatchNorm2d before it, whose backward includes "
                "the ReLU: call the container's backward"
            )
        return self.cache

    def backward_curvature(self, x, curvature_output, grad_output=None):
        return relu_curvature(curvature_output, x), {}


class Sigmoid(Layer):
    """Logistic ``1 / (1 + e^(−β·x))`` with slope β (seed 000 §2.1; β = 1 is PyTorch's Sigmoid).

    Backward: ``δ ∘ β·y·(1 − y)``. Shape: any → same.
    """

    def __init__(self, slope: float = 1.0) -> None:
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = sigmoid_forward(x, self.slope)
        self.cache = y
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        y = self.require_cache()
        return sigmoid_backward(grad_output, y, self.slope) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        return sigmoid_curvature(curvature_output, x, self.slope), {}

    def config(self) -> dict:
        return {"slope": self.slope}

    def extra_repr(self) -> str:
        return "" if self.slope == 1.0 else f"slope={self.slope}"


class Tanh(Layer):
    """``A·tanh(S·x)``; ``A = S = 1`` is PyTorch's Tanh, LeCun's scaled tanh is ``A = 1.7159, S = 2/3``
    (seed 000 §2.1). Backward: ``δ ∘ S·(A − y²/A)``. Shape: any → same."""

    def __init__(self, amplitude: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.amplitude = float(amplitude)
        self.scale = float(scale)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = tanh_forward(x, self.amplitude, self.scale)
        self.cache = y
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        y = self.require_cache()
        return tanh_backward(grad_output, y, self.amplitude, self.scale) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        return tanh_curvature(curvature_output, x, self.amplitude, self.scale), {}

    def config(self) -> dict:
        return {"amplitude": self.amplitude, "scale": self.scale}

    def extra_repr(self) -> str:
        if self.amplitude == 1.0 and self.scale == 1.0:
            return ""
        return f"amplitude={self.amplitude}, scale={self.scale}"


class ScaledTanh(Tanh):
    """LeCun's ``1.7159 · tanh(2x/3)`` (seed 000 §2.1; LeNet-5's squashing function): a :class:`Tanh`
    whose defaults are LeCun's constants, so a model specification can name it without numbers."""

    def __init__(self, amplitude: float = LECUN_TANH_AMPLITUDE, scale: float = LECUN_TANH_SCALE) -> None:
        super().__init__(amplitude, scale)

    def extra_repr(self) -> str:
        if self.amplitude == LECUN_TANH_AMPLITUDE and self.scale == LECUN_TANH_SCALE:
            return ""
        return super().extra_repr()


class Softmax(Layer):
    """Numerically stable softmax along ``axis`` (default: the class axis 1).

    For training a classifier use :class:`numcnn.losses.CrossEntropyLoss` on the logits instead: it
    fuses log-softmax and the loss and is exact where ``log(softmax)`` would underflow.
    Backward: ``y ∘ (δ − Σ_k δ_k y_k)``. Shape: any → same.
    """

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = int(axis)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = softmax_forward(x, self.axis)
        self.cache = y
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        y = self.require_cache()
        return softmax_backward(grad_output, y, self.axis) if need_input_grad else None

    def backward_curvature(self, x, curvature_output, grad_output=None):
        return softmax_curvature(curvature_output, x, self.axis), {}

    def config(self) -> dict:
        return {"axis": self.axis}

    def extra_repr(self) -> str:
        return f"axis={self.axis}"
