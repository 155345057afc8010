"""The model zoo: architectures declared as data and built by name.

>>> from numcnn import models
>>> model = models.build("lenet5", rng=0)
>>> model.output_shape((1, 28, 28))
(10,)
"""

from numcnn.models import exercise as _exercise  # noqa: F401  (seed 004 exercise 15.6: base, bn, sk, ...)
from numcnn.models import lenet5_1998 as _lenet5_1998  # noqa: F401  (registers LeNet-5 as published)
from numcnn.models import resnet as _resnet  # noqa: F401  (resnet_mnist, a graph model)
from numcnn.models import vgg as _vgg  # noqa: F401  (vgg16, table 15.2 of seed 004)
from numcnn.models import zoo as _zoo  # noqa: F401  (registers the built-in architectures)
from numcnn.models.registry import (
    ModelSpec,
    NodeSpec,
    available_models,
    build,
    build_layer,
    get_spec,
    register,
)

__all__ = ["ModelSpec", "NodeSpec", "available_models", "build", "build_layer", "get_spec", "register"]
