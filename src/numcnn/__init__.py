"""numcnn: convolutional networks whose every step -- forward pass, sensitivity maps δ, weight
gradients -- is explicit NumPy code following the classic derivations, checked by finite differences.

Importing ``numcnn`` needs NumPy only.
"""

from numcnn import export, functional, kernels, models, optim, reference
from numcnn.errors import CheckpointError, ConfigurationError, DataError, NumcnnError, ShapeError
from numcnn.export import load_torch_state_dict
from numcnn.gradcheck import GradcheckReport, gradcheck, numerical_gradient
from numcnn.inspect import LayerTrace, Trace, predict, trace
from numcnn.kernels import set_backend
from numcnn.layers import (
    LENET5_C3_CONNECTIONS,
    Add,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    EuclideanRBF,
    Flatten,
    GlobalAvgPool2d,
    Graph,
    Layer,
    LearnedCombination2d,
    Linear,
    MaxPool2d,
    ReLU,
    ScaledTanh,
    Sequential,
    Sigmoid,
    Softmax,
    Subsample2d,
    Tanh,
)
from numcnn.losses import CrossEntropyLoss, Loss, MSELoss, RBFLoss, RBFMAPLoss
from numcnn.optim import SGD
from numcnn.sdlm import SDLM
from numcnn.serialization import load, save

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
    "EuclideanRBF",
    "Flatten",
    "GlobalAvgPool2d",
    "GradcheckReport",
    "Graph",
    "LENET5_C3_CONNECTIONS",
    "Layer",
    "LayerTrace",
    "LearnedCombination2d",
    "Linear",
    "Loss",
    "MSELoss",
    "MaxPool2d",
    "NumcnnError",
    "RBFLoss",
    "RBFMAPLoss",
    "ReLU",
    "SDLM",
    "SGD",
    "ScaledTanh",
    "Sequential",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Subsample2d",
    "Tanh",
    "Trace",
    "__version__",
    "export",
    "functional",
    "gradcheck",
    "kernels",
    "load",
    "load_torch_state_dict",
    "models",
    "numerical_gradient",
    "optim",
    "predict",
    "reference",
    "save",
    "set_backend",
    "trace",
]
