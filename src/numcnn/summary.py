"""Per-layer analysis of a registered model: output shapes, parameter counts, FLOPs, receptive fields.

Everything is computed from the model's *specification*, without allocating weights, so that
``numcnn summary vgg16`` (138 million parameters) answers instantly: each layer type's ``analyze``
rule in :mod:`numcnn.layer_types` (:mod:`numcnn.layer_analysis`). A container nested in a chain is
instantiated on its own and asked for ``output_shape`` and ``num_parameters``.

**FLOPs** are those of one forward pass of one input in inference mode. A multiply-add counts as
**2** FLOPs (one multiplication, one addition), so a convolution costs ``2·F·OH·OW·C·KH·KW`` plus one
addition per output for the bias. Element-wise work counts one FLOP per arithmetic operation:
ReLU 1 per element (a comparison; sigmoid and tanh also count 1, as if tabulated), batch norm 2 (scale and shift,
folded), max pooling ``KH·KW − 1`` comparisons per output, average pooling ``KH·KW`` (additions and
the division), trainable sub-sampling ``KH·KW + 1`` (sum, scale, bias), ``Add`` one per summand
beyond the first, an RBF output unit 3 per input (difference, square, sum). A convolution with a
connection table counts only its connected kernels. Dropout, flattening and the softmax of the
loss count 0.

**Receptive field**, as in seed 004 §15.7.2 and table 15.2: fix one element of a *reference* layer's
output (by default the last pooling layer, the 7×7×512 tensor of VGG-16); the receptive field
listed for a layer is the spatial extent *in that layer's input* needed to compute that element.
Going backwards through a layer with kernel ``k`` and stride ``s``, an extent ``r`` of its output
needs ``(r − 1)·s + k`` of its input (padding pixels included): a 3×3 convolution adds 2, a 2×2/2
pooling doubles. Element-wise layers keep the extent. In a graph, a tensor read by several layers
needs the largest of their extents. The layer right after the reference reads one element (1);
later layers have no entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numcnn import models
from numcnn.errors import ConfigurationError, ShapeError
from numcnn.layer_analysis import Geometry, by_instance
from numcnn.layer_types import LAYER_TYPE_TABLE, layer_type

__all__ = ["LayerInfo", "ModelSummary", "summarize", "POOLING_TYPES"]

# Layer types that count as pooling when choosing the default receptive-field reference.
POOLING_TYPES = tuple(name for name, entry in LAYER_TYPE_TABLE.items() if entry.pooling)


@dataclass
class LayerInfo:
    """One row of the summary. ``window`` is ``((KH, KW), (SH, SW))``, or None when the layer does
    not map spatial positions to spatial positions (Flatten, Linear): the receptive field stops there."""

    name: str
    type_name: str
    description: str
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    parameters: int
    flops: int
    window: tuple[tuple[int, int], tuple[int, int]] | None
    receptive_field: tuple[int, int] | None = None


@dataclass
class ModelSummary:
    name: str
    input_shape: tuple[int, ...]
    layers: list[LayerInfo]
    reference: str | None  # the layer whose output element the receptive fields refer to
    is_graph: bool = False
    description: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    def __getitem__(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def table(self) -> str:
        """The summary as aligned plain text (what ``numcnn summary`` prints)."""
        header = ("#" if not self.is_graph else "node", "layer", "description", "output", "params", "FLOPs", "RF")
        rows = [header]
        previous = "input"
        for layer in self.layers:
            description = layer.description
            if layer.inputs != (previous,):  # a graph node that does not simply read the node above
                description = (description + " " if description else "") + f"<- {', '.join(layer.inputs)}"
            previous = layer.name
            rows.append((
                layer.name, layer.type_name, description, _shape_text(layer.output_shape),
                f"{layer.parameters:,}", _flops_text(layer.flops), _extent_text(layer.receptive_field),
            ))  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        right = {0, 4, 5, 6}
        lines = [f"{self.name}: {self.description}".rstrip(": "), f"input {_shape_text(self.input_shape)}"]
        for index, row in enumerate(rows):
            cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(
            f"total: {self.parameters:,} parameters; {_flops_text(self.flops)} FLOPs per forward pass of "
            f"one input ({self.flops:,}; a multiply-add counts as 2 FLOPs)"
        )
        if self.reference is not None:
            lines.append(
                f"RF: receptive field, the extent in each layer's input needed for one element of the output "
                f"of {self.reference} ({self[self.reference].type_name}), as in seed 004 table 15.2"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(size) for size in shape)


def _flops_text(flops: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if flops >= scale:
            return f"{flops / scale:.2f}{suffix}"
    return str(flops)


def _extent_text(extent: tuple[int, int] | None) -> str:
    if extent is None:
        return ""
    return str(extent[0]) if extent[0] == extent[1] else f"{extent[0]}×{extent[1]}"


# -- per-type rules: numcnn.layer_types --------------------------------------------------------


def _analyze(type_name: str, args: dict[str, Any], shapes: list[tuple[int, ...]]) -> Geometry:
    """The geometry of one layer specification, by its type's ``analyze`` rule."""
    entry = layer_type(type_name)
    if entry.analyze is None:  # a container nested in a chain: build it alone and ask it
        return by_instance(type_name, args, shapes)
    return entry.analyze(args, shapes)


# -- the whole model -----------------------------------------------------------------------------


def _nodes_of(spec: models.ModelSpec) -> list[tuple[str, str, dict, tuple[str, ...]]]:
    """The graph's nodes, or a Sequential's chain named 1, 2, ... (table 15.2's row numbers)."""
    if spec.graph:
        return spec.graph_nodes()
    names = [str(index) for index in range(1, len(spec.layers) + 1)]
    return [(name, t, dict(a), (prev,)) for name, prev, (t, a) in zip(names, ["input", *names], spec.layers)]


def summarize(
    model: str | models.ModelSpec, input_shape: tuple[int, ...] | None = None, reference: str | None = None
) -> ModelSummary:
    """Analyse a registered model (by name or spec) for ``input_shape`` (default: the spec's).

    ``reference`` names the layer (its number, or its node name in a graph) whose output element the
    receptive fields refer to; default: the last pooling layer, else the last layer with spatial output.
    """
    spec = models.get_spec(model) if isinstance(model, str) else model
    shape = tuple(spec.input_shape if input_shape is None else input_shape)
    if not shape or any(not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ConfigurationError(f"input shape must be positive integers, got {shape}")
    shapes: dict[str, tuple[int, ...]] = {"input": shape}
    layers: list[LayerInfo] = []
    for name, type_name, args, inputs in _nodes_of(spec):
        try:
            output, parameters, flops, window, description = _analyze(type_name, args, [shapes[i] for i in inputs])
        except (ShapeError, ConfigurationError) as error:
            raise ConfigurationError(f"{spec.name} layer {name} ({type_name}): {error}") from None
        shapes[name] = tuple(output)
        layers.append(LayerInfo(name, type_name, description, inputs, tuple(output), parameters, flops, window))
    summary = ModelSummary(spec.name, shape, layers, None, bool(spec.graph), spec.description, list(spec.notes))
    summary.reference = _choose_reference(layers, reference)
    if summary.reference is not None:
        _receptive_fields(layers, summary.reference)
    return summary


def _choose_reference(layers: list[LayerInfo], requested: str | None) -> str | None:
    if requested is not None:
        if requested not in {layer.name for layer in layers}:
            raise ConfigurationError(f"receptive-field reference {requested!r} is not a layer of the model")
        return requested
    spatial = [layer for layer in layers if layer.window is not None]
    pooling = [layer for layer in spatial if layer.type_name in POOLING_TYPES]
    chosen = pooling or [layer for layer in spatial if len(layer.output_shape) == 3]
    return chosen[-1].name if chosen else None


def _receptive_fields(layers: list[LayerInfo], reference: str) -> None:
    """Fill ``receptive_field`` going backwards from one element of ``reference``'s output."""
    needed: dict[str, tuple[int, int]] = {reference: (1, 1)}  # extent needed in each tensor
    position = next(index for index, layer in enumerate(layers) if layer.name == reference)
    for layer in reversed(layers[: position + 1]):
        extent = needed.get(layer.name)
        if extent is None or layer.window is None:
            continue  # not on a path to the reference, or the spatial layout ends here
        (kernel_h, kernel_w), (stride_h, stride_w) = layer.window
        layer.receptive_field = ((extent[0] - 1) * stride_h + kernel_h, (extent[1] - 1) * stride_w + kernel_w)
        for tensor in layer.inputs:
            old = needed.get(tensor, (0, 0))
            needed[tensor] = (max(old[0], layer.receptive_field[0]), max(old[1], layer.receptive_field[1]))
    for layer in layers[position + 1 :]:
        if reference in layer.inputs:
            layer.receptive_field = (1, 1)  # it reads the reference's output itself
