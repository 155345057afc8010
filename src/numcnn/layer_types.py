"""One description per layer type: everything numcnn knows about a type outside the layer class.

A :class:`LayerType` names the class and how to

* ``analyze`` a specification (constructor arguments → output shape, parameters, FLOPs, receptive-field
  window; :mod:`numcnn.layer_analysis`) -- read by ``numcnn summary``;
* build its PyTorch twin (:mod:`numcnn.export.torch_nodes`; the twin keeps numcnn's ``state_dict``
  names, so the weight mapping is the identity) -- read by :func:`numcnn.export.to_torch` and the
  PyTorch baseline of ``numcnn bench``;
* emit its ONNX node(s) (:mod:`numcnn.export.onnx_nodes`) -- read by :func:`numcnn.export.to_onnx`.

Constructor arguments ↔ data is the layer class's own :meth:`~numcnn.layers.Layer.config` and
:meth:`~numcnn.layers.Layer.from_config` (used by :mod:`numcnn.serialization`).

Adding a layer type means one entry in :data:`LAYER_TYPE_TABLE` (a subclass with different maths
needs its own entry: lookups go by the exact class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from numcnn import layer_analysis as analysis
from numcnn.errors import ConfigurationError
from numcnn.export import onnx_nodes, torch_nodes
from numcnn.layers import (
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

__all__ = ["LayerType", "LAYER_TYPE_TABLE", "layer_type", "layer_type_of"]


@dataclass(frozen=True)
class LayerType:
    """The description of one layer type; see the module docstring.

    ``analyze`` is None for a container (its rows come from its children: numcnn summary falls back
    to building it); ``pooling`` marks the types that count as pooling when ``numcnn summary`` picks
    its default receptive-field reference.
    """

    cls: type[Layer]
    analyze: Callable[[dict[str, Any], list[tuple[int, ...]]], analysis.Geometry] | None
    torch: Callable[..., Any]
    onnx: Callable[..., str]
    pooling: bool = False

    @property
    def name(self) -> str:
        return self.cls.__name__


def _table(*entries: LayerType) -> dict[str, LayerType]:
    return {entry.name: entry for entry in entries}


LAYER_TYPE_TABLE: dict[str, LayerType] = _table(
    LayerType(Conv2d, analysis.conv2d, torch_nodes.conv2d, onnx_nodes.conv2d),
    LayerType(Linear, analysis.linear, torch_nodes.linear, onnx_nodes.linear),
    LayerType(MaxPool2d, analysis.pool2d("MaxPool2d"), torch_nodes.max_pool2d, onnx_nodes.max_pool2d, pooling=True),
    LayerType(AvgPool2d, analysis.pool2d("AvgPool2d"), torch_nodes.avg_pool2d, onnx_nodes.avg_pool2d, pooling=True),
    LayerType(ReLU, analysis.elementwise(1), torch_nodes.relu, onnx_nodes.relu),
    # sigmoid and tanh count 1 FLOP per element, as if tabulated
    LayerType(Sigmoid, analysis.elementwise(1), torch_nodes.sigmoid, onnx_nodes.sigmoid),
    LayerType(Tanh, analysis.elementwise(1), torch_nodes.tanh, onnx_nodes.tanh),
    LayerType(ScaledTanh, analysis.elementwise(1), torch_nodes.tanh, onnx_nodes.tanh),
    LayerType(Softmax, analysis.elementwise(0), torch_nodes.softmax, onnx_nodes.softmax),  # the loss's: 0
    LayerType(Flatten, analysis.flatten, torch_nodes.flatten, onnx_nodes.flatten),
    LayerType(BatchNorm1d, analysis.batch_norm, torch_nodes.batch_norm, onnx_nodes.batch_norm),
    LayerType(BatchNorm2d, analysis.batch_norm, torch_nodes.batch_norm, onnx_nodes.batch_norm),
    LayerType(Dropout, analysis.dropout, torch_nodes.dropout, onnx_nodes.dropout),
    LayerType(
        GlobalAvgPool2d, analysis.global_avg_pool2d, torch_nodes.global_avg_pool2d, onnx_nodes.global_avg_pool2d,
        pooling=True,
    ),
    LayerType(Add, analysis.add, torch_nodes.add, onnx_nodes.add),
    LayerType(Subsample2d, analysis.subsample2d, torch_nodes.subsample2d, onnx_nodes.subsample2d, pooling=True),
    LayerType(
        LearnedCombination2d, analysis.learned_combination2d, torch_nodes.learned_combination2d,
        onnx_nodes.learned_combination2d,
    ),
    LayerType(EuclideanRBF, analysis.euclidean_rbf, torch_nodes.euclidean_rbf, onnx_nodes.euclidean_rbf),
    LayerType(Sequential, None, torch_nodes.sequential, onnx_nodes.sequential),
    LayerType(Graph, None, torch_nodes.graph, onnx_nodes.graph),
)


def layer_type(type_name: str) -> LayerType:
    """The description of the type named ``type_name`` (a key of :data:`numcnn.layers.LAYER_TYPES`)."""
    try:
        return LAYER_TYPE_TABLE[type_name]
    except KeyError:
        raise ConfigurationError(f"unknown layer type {type_name!r}; known: {', '.join(LAYER_TYPE_TABLE)}") from None


def layer_type_of(layer: Layer) -> LayerType:
    """The description of ``layer``'s exact class (a subclass may change the maths: it needs its own entry)."""
    entry = LAYER_TYPE_TABLE.get(type(layer).__name__)
    if entry is None or entry.cls is not type(layer):
        raise ConfigurationError(f"layer type {type(layer).__name__} has no entry in numcnn.layer_types")
    return entry
