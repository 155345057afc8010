"""numcnn: convolutional networks whose every step -- forward pass, sensitivity maps δ, weight
gradients -- is explicit NumPy code following the classic derivations, checked by finite differences.

Importing ``numcnn`` needs NumPy only.
"""

from numcnn import functional, models, optim
from numcnn.errors import CheckpointError, ConfigurationError, DataError, NumcnnError, ShapeError
from numcnn.gradcheck import GradcheckReport, gradcheck, numerical_gradient
from numcnn.layers import (
    Add,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Graph,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from numcnn.losses import CrossEntropyLoss, Loss, MSELoss
from numcnn.optim import SGD

__version__ = "0.1.0"

__all__ = [
    "Add",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "CheckpointError",
    "ConfigurationError",
    "Conv2d",
    "CrossEntropyLoss",
    "DataError",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "GradcheckReport",
    "Graph",
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
    "models",
    "numerical_gradient",
    "optim",
]
