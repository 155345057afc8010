"""Models as data: a model is a :class:`ModelSpec` (a list of layer specifications, like a Caffe
prototxt) registered under a name; :func:`build` turns a name into a fresh ``Sequential``.

A layer specification is ``(type_name, keyword_arguments)`` where ``type_name`` is a key of
:data:`numcnn.layers.LAYER_TYPES`. Layers that take ``rng``/``dtype`` receive the generator and dtype
passed to :func:`build`, in order, so a seed fixes every initial weight.

A model that is not a chain (a residual network) declares ``graph`` instead of ``layers``: node
specifications ``(name, type_name, keyword_arguments)`` that read the previous node, or
``(name, type_name, keyword_arguments, inputs)`` naming the tensors they read (``"input"`` is the
model's input); :func:`build` turns them into a :class:`~numcnn.layers.Graph`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers import LAYER_TYPES, Graph, Layer, Sequential, make_generator
from numcnn.layers.flat import flatten_parameters
from numcnn.models.initialization import gaussian_init

__all__ = [
    "LayerSpec", "NodeSpec", "ModelSpec", "register", "get_spec", "available_models", "build", "build_layer",
]  # fmt: skip

LayerSpec = tuple[str, dict[str, Any]]
# (name, type_name, kwargs) reads the previous node; (name, type_name, kwargs, inputs) names its inputs.
NodeSpec = tuple

_REGISTRY: dict[str, ModelSpec] = {}


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
        graph: node specifications of a DAG model (then ``layers`` is empty); see the module docstring.
        weight_std: if set, every convolution and linear weight is drawn from ``N(0, weight_std²)``
            and their biases start at 0 (MatConvNet's initialisation), instead of each layer's default.
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
    graph: tuple[NodeSpec, ...] = ()
    weight_std: float | None = None

    def layer_types(self) -> list[str]:
        """Type names of every layer, from ``layers`` or from the ``graph`` nodes."""
        return [type_name for type_name, _ in self.layers] + [node[1] for node in self.graph]

    def graph_nodes(self) -> list[tuple[str, str, dict[str, Any], tuple[str, ...]]]:
        """``(name, type_name, kwargs, inputs)`` of every graph node, a missing ``inputs`` spelled out
        as the previous node (``"input"`` for the first)."""
        nodes, previous = [], "input"
        for node in self.graph:
            inputs = node[3] if len(node) > 3 else previous
            inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
            nodes.append((node[0], node[1], dict(node[2]), inputs))
            previous = node[0]
        return nodes

    def prepare(self, images: np.ndarray, dtype="float32") -> np.ndarray:
        """Raw images ``(N, H, W)`` (0-255 integers, or floats in [0, 1]) as this model's normalised,
        padded input ``(N, 1, H + 2p, W + 2p)``: the one preprocessing training, prediction and
        :func:`numcnn.trace` share (:func:`numcnn.data.prepare_images` with this model's settings)."""
        from numcnn.data.mnist import prepare_images

        return prepare_images(
            images, padding=self.input_padding, dtype=np.dtype(dtype), mean=self.input_mean, std=self.input_std
        )

    def pixel_gradient(self, input_gradient: np.ndarray) -> np.ndarray:
        """``∂E/∂pixels`` ``(N, H, W)`` (pixels in [0, 1]) from ``∂E/∂input`` of :meth:`prepare`'s output:
        the chain rule through the normalisation and the padding."""
        from numcnn.data.mnist import prepare_images_backward

        return prepare_images_backward(input_gradient, padding=self.input_padding, std=self.input_std)

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
    if bool(spec.layers) == bool(spec.graph):
        raise ConfigurationError(f"model {spec.name!r} must declare either layers or a graph")
    if any(not isinstance(node, tuple) or len(node) not in (3, 4) for node in spec.graph):
        raise ConfigurationError(f"model {spec.name!r}: graph nodes are (name, type, kwargs[, inputs]) tuples")
    for type_name in spec.layer_types():
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
    return LAYER_TYPES[type_name].from_config(arguments, rng, dtype)


def build(name: str, *, rng: np.random.Generator | int | None = None, dtype=np.float32) -> Layer:
    """A freshly initialised model of the registered architecture ``name``: a ``Sequential``, or a
    ``Graph`` for specifications that declare one -- either way a :class:`~numcnn.layers.Layer`, which is
    all that training, checkpoints and gradient checks rely on. ``model.spec`` is the specification."""
    spec = get_spec(name)
    generator = make_generator(rng)
    model: Layer
    if spec.graph:
        nodes = spec.graph_nodes()
        model = Graph([(name, build_layer(kind, args, generator, dtype), inputs) for name, kind, args, inputs in nodes])
    else:
        model = Sequential(*(build_layer(type_name, dict(args), generator, dtype) for type_name, args in spec.layers))
    if spec.weight_std is not None:
        gaussian_init(model, spec.weight_std, generator)
    # Read back as ``model.spec`` (Layer.__getattr__ is not involved: it is a plain instance attribute).
    model.spec = spec  # type: ignore[union-attr]  # Layer declares no model-level fields
    # One flat buffer for all parameters (and one for gradients): the optimiser then updates the
    # whole model with a few NumPy calls. The params/grads dicts are unchanged for every user.
    flatten_parameters(model)
    return model
