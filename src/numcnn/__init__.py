"""numcnn: convolutional networks whose every step -- forward pass, sensitivity maps δ, weight
gradients -- is explicit NumPy code following the classic derivations, checked by finite differences.

Importing ``numcnn`` needs NumPy only.
"""

from numcnn import functional, kernels, models, optim
from numcnn.errors import CheckpointError, ConfigurationError, DataError, NumcnnError, ShapeError
from numcnn.gradcheck import GradcheckReport, gradcheck, numerical_gradient
from numcnn.layers import (
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from numcnn.kernels import set_backend
from numcnn.losses import CrossEntropyLoss, Loss, MSELoss
from numcnn.optim import SGD

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d",
    "CheckpointError",
    "ConfigurationError",
    "Conv2d",
    "CrossEntropyLoss",
    "DataError",
    "Flatten",
    "GradcheckReport",
    "Layer",
    "Linear",
    "Loss",
    "MSELoss",
    "MaxPool2d",
    "NumcnnError",
    "ReLU",
    "SGD",
    "Sequential",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "__version__",
    "functional",
    "gradcheck",
    "kernels",
    "models",
    "numerical_gradient",
    "optim",
    "set_backend",
]
