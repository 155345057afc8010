"""A numcnn model as an ONNX file, built with the ``onnx`` package's helper API (no PyTorch).

The graph is assembled from the ``onnx`` entries of :mod:`numcnn.layer_types` (the decompositions are
listed in :mod:`numcnn.export.onnx_nodes`), in evaluation mode (BatchNorm's running statistics,
Dropout as the identity), with a dynamic batch dimension ``N``, float32 weights, and checked with
``onnx.checker`` before it is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from numcnn.errors import ConfigurationError
from numcnn.layers import Layer

__all__ = ["to_onnx", "build_onnx_model", "DEFAULT_OPSET", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET = 13
MAX_OPSET = 21  # the newest opset tested with onnxruntime (tests/test_export_onnx.py)
DEFAULT_OPSET = 17


def build_onnx_model(model: Layer, input_shape: tuple[int, ...], opset: int = DEFAULT_OPSET, name: str = "numcnn"):
    """The ``onnx.ModelProto`` of ``model`` for inputs ``(N, *input_shape)``, checked by ``onnx.checker``."""
    import onnx
    from onnx import TensorProto, helper

    from numcnn.export.onnx_nodes import OnnxGraph
    from numcnn.layer_types import layer_type_of

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigurationError(f"ONNX opset {opset} is not supported: use {MIN_OPSET} to {MAX_OPSET}")
    graph = OnnxGraph(opset)
    graph.unique("input")

    def convert(layer: Layer, inputs: list[str], layer_name: str) -> str:
        return layer_type_of(layer).onnx(graph, layer, inputs, layer_name, convert)

    output = convert(model, ["input"], "")
    output_shape = model.output_shape(tuple(input_shape))
    nodes = graph.nodes
    if output != "output":  # a stable name for the result
        nodes = [*nodes, helper.make_node("Identity", [output], ["output"], name="output")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *output_shape])]
    onnx_graph = helper.make_graph(nodes, name, inputs, outputs, graph.initializers)
    proto = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="numcnn", ir_version=8
    )
    onnx.checker.check_model(proto)
    return proto


def to_onnx(model: Layer, path: str | os.PathLike, opset: int | None = None, input_shape=None) -> Path:
    """Write ``model`` to ``path`` as ONNX (atomically: a failure leaves an existing file untouched).

    ``input_shape`` ``(C, H, W)`` defaults to ``model.spec.input_shape``; ``opset`` to
    :data:`DEFAULT_OPSET`. A layer without an ONNX form raises a one-line :class:`ConfigurationError`.
    """
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise ConfigurationError("to_onnx needs input_shape=(C, H, W) for a model without a spec")
        input_shape = spec.input_shape
    proto = build_onnx_model(model, tuple(input_shape), DEFAULT_OPSET if opset is None else int(opset))
    from numcnn.serialization import write_atomically

    return write_atomically(path, lambda temporary: Path(temporary).write_bytes(proto.SerializeToString()))
