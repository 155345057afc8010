"""Models as data: a model is a :class:`ModelSpec` (a list of layer specifications, like a Caffe
prototxt) registered under a name; :func:`build` turns a name into a fresh ``Sequential``.

A layer specification is ``(type_name, keyword_arguments)`` where ``type_name`` is a key of
:data:`numcnn.layers.LAYER_TYPES`. Layers that take ``rng``/``dtype`` receive the generator and dtype
passed to :func:`build`, in order, so a seed fixes every initial weight.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers import LAYER_TYPES, Layer, Sequential, make_generator
from numcnn.layers.flat import flatten_parameters

__all__ = ["LayerSpec", "ModelSpec", "register", "get_spec", "available_models", "build", "build_layer"]

LayerSpec = tuple[str, dict[str, Any]]

_REGISTRY: dict[str, "ModelSpec"] = {}


@dataclass(frozen=True)
class ModelSpec:
    """A named network architecture, declared as data.

    Attributes:
        name: registry key, e.g. ``"lenet5"``.
        layers: the layer specifications in order.
        input_shape: ``(C, H, W)`` of one input sample as the model expects it.
        num_classes: size of the output vector.
        description: one line for ``numcnn models`` / ``numcnn summary``.
        source: where the architecture comes from (paper, seed, table).
        input_padding: zero padding added to each side of a raw dataset image before it enters
            the model (e.g. 2 to turn 28×28 MNIST into a 32×32 input).
        input_mean, input_std: the image normalisation ``(pixel/255 − mean) / std`` the model is
            trained with (MNIST's mean and standard deviation by default).
        loss: key of :data:`numcnn.losses.LOSS_TYPES` used to train the model.
        prediction: ``"argmax"`` when the outputs are class scores, ``"argmin"`` when they are
            penalties (distances), as for RBF output units.
        training: the recommended training settings (names of :class:`numcnn.train.TrainConfig`
            fields, e.g. ``{"optimizer": "sdlm", "lr": 0.002}``); ``numcnn train`` uses them
            unless a flag overrides them.
    """

    name: str
    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str = ""
    source: str = ""
    input_padding: int = 0
    input_mean: float = 0.1307
    input_std: float = 0.3081
    loss: str = "cross_entropy"
    prediction: str = "argmax"
    notes: tuple[str, ...] = field(default_factory=tuple)
    training: Mapping[str, Any] = field(default_factory=dict)

    def class_scores(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs turned into scores where larger means more likely (penalties are negated)."""
        return -outputs if self.prediction == "argmin" else outputs

    def predict_classes(self, outputs: np.ndarray) -> np.ndarray:
        """Class indices from a batch of model outputs ``(N, num_classes)``."""
        return self.class_scores(outputs).argmax(axis=1)


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; names are unique."""
    if spec.name in _REGISTRY:
        raise ConfigurationError(f"a model named {spec.name!r} is already registered")
    if spec.prediction not in ("argmax", "argmin"):
        raise ConfigurationError(f"model {spec.name!r}: prediction must be 'argmax' or 'argmin'")
    for type_name, _ in spec.layers:
        if type_name not in LAYER_TYPES:
            raise ConfigurationError(f"model {spec.name!r} uses unknown layer type {type_name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def build_layer(type_name: str, arguments: dict[str, Any], rng: np.random.Generator, dtype) -> Layer:
    """Instantiate one layer specification, passing ``rng``/``dtype`` to layers that accept them."""
    cls = LAYER_TYPES[type_name]
    accepted = inspect.signature(cls.__init__).parameters
    extra = {}
    if "rng" in accepted:
        extra["rng"] = rng
    if "dtype" in accepted:
        extra["dtype"] = dtype
    return cls(**arguments, **extra)


def build(name: str, *, rng: np.random.Generator | int | None = None, dtype=np.float32) -> Sequential:
    """A freshly initialised model of the registered architecture ``name``."""
    spec = get_spec(name)
    generator = make_generator(rng)
    model = Sequential(*(build_layer(type_name, dict(args), generator, dtype) for type_name, args in spec.layers))
    model.spec = spec
    # One flat buffer for all parameters (and one for gradients): the optimiser then updates the
    # whole model with a few NumPy calls. The params/grads dicts are unchanged for every user.
    flatten_parameters(model)
    return model
