"""Layer classes: each owns its parameters and gradients and delegates its maths to :mod:`numcnn.functional`.

``LAYER_TYPES`` maps the class names used in model specifications (:mod:`numcnn.models`) to classes.
"""

from numcnn.layers.activation import ReLU, ScaledTanh, Sigmoid, Softmax, Tanh
from numcnn.layers.base import Layer, fan_in_uniform, make_generator
from numcnn.layers.combination import LearnedCombination2d
from numcnn.layers.connections import LENET5_C3_CONNECTIONS, format_connections, parse_connections
from numcnn.layers.container import Sequential
from numcnn.layers.convolution import Conv2d
from numcnn.layers.description import describe_layer, layer_from_description
from numcnn.layers.dropout import Dropout
from numcnn.layers.global_pooling import GlobalAvgPool2d
from numcnn.layers.graph import Add, Graph, Merge
from numcnn.layers.linear import Flatten, Linear
from numcnn.layers.normalization import BatchNorm1d, BatchNorm2d
from numcnn.layers.pooling import AvgPool2d, MaxPool2d
from numcnn.layers.rbf import EuclideanRBF
from numcnn.layers.subsampling import Subsample2d

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2d, MaxPool2d, AvgPool2d, ReLU, Sigmoid, Tanh, Softmax, Flatten, Linear, Sequential)
}
# The blocks of modern CNNs (issue 4). A registered graph model declares its nodes in the spec's
# ``graph`` field; Graph is listed so that a saved model's description can name it (and nest one).
LAYER_TYPES.update(
    {cls.__name__: cls for cls in (BatchNorm1d, BatchNorm2d, Dropout, GlobalAvgPool2d, Add, Graph)}
)
# The classic layers of seeds 000/002 and LeNet-5 (1998).
LAYER_TYPES.update(
    {cls.__name__: cls for cls in (Subsample2d, LearnedCombination2d, ScaledTanh, EuclideanRBF)}
)

__all__ = [
    "LAYER_TYPES",
    "Add",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "EuclideanRBF",
    "Flatten",
    "GlobalAvgPool2d",
    "Graph",
    "LENET5_C3_CONNECTIONS",
    "Layer",
    "LearnedCombination2d",
    "Linear",
    "MaxPool2d",
    "Merge",
    "ReLU",
    "ScaledTanh",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Subsample2d",
    "Tanh",
    "describe_layer",
    "fan_in_uniform",
    "format_connections",
    "layer_from_description",
    "make_generator",
    "parse_connections",
]
