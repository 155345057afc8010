"""Layer classes: each owns its parameters and gradients and delegates its maths to :mod:`numcnn.functional`.

``LAYER_TYPES`` maps the class names used in model specifications (:mod:`numcnn.models`) to classes.
"""

from numcnn.layers.activation import ReLU, Sigmoid, Softmax, Tanh
from numcnn.layers.base import Layer, fan_in_uniform, make_generator
from numcnn.layers.container import Sequential
from numcnn.layers.convolution import Conv2d
from numcnn.layers.linear import Flatten, Linear
from numcnn.layers.pooling import AvgPool2d, MaxPool2d

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2d, MaxPool2d, AvgPool2d, ReLU, Sigmoid, Tanh, Softmax, Flatten, Linear, Sequential)
}

__all__ = [
    "LAYER_TYPES",
    "AvgPool2d",
    "Conv2d",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "fan_in_uniform",
    "make_generator",
]
