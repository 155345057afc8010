"""``Graph``: layers wired as a directed acyclic graph, and the ``Add`` node that merges branches.

Seed 004 exercise 15.4 (b) contrasts VGG's chain, where every layer has one input and one output,
with the DAGs of GoogLeNet and ResNet, where a tensor may feed several layers and a layer may take
several tensors. Back-propagation on a DAG is the chain rule with one extra clause: when a tensor
``t`` feeds consumers ``c₁ … c_k``, ``∂E/∂t = Σ_i ∂E/∂t|_{c_i}`` -- the gradients of the branches add.

A graph is a list of named nodes in *topological order*: each node names the tensors it reads,
which must be the graph's input or the outputs of earlier nodes (so no cycle can be written down)::

    Graph([
        ("conv1", Conv2d(16, 16, 3, padding=1)),          # reads the previous node (here: the input)
        ("bn1",   BatchNorm2d(16)),
        ("relu1", ReLU()),
        ("conv2", Conv2d(16, 16, 3, padding=1)),
        ("bn2",   BatchNorm2d(16)),
        ("add",   Add(), ("input", "bn2")),               # the residual connection: F(x) + x
        ("relu2", ReLU()),
    ])

``forward`` runs the nodes in order; ``backward`` runs them in reverse, accumulating each tensor's
gradient from all its consumers before handing it to the node that produced it. A ``Graph`` has one
input and one output, so it is a ``Layer``: it can be a whole model or one block of a ``Sequential``.

Where the backend fuses them (numba), a Conv2d, in training mode a BatchNorm2d, or an Add (a residual
block's end) whose output only a ReLU reads runs with it as one step, as in a ``Sequential``
(:mod:`numcnn.layers.fusion`); hooked layers never fuse, so every recorded activation and δ exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from numcnn import kernels
from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional.merge import add_backward, add_forward
from numcnn.layers.activation import ReLU
from numcnn.layers.base import Layer
from numcnn.layers.convolution import Conv2d
from numcnn.layers.normalization import BatchNorm2d

__all__ = ["Merge", "Add", "Graph", "Node"]


class Merge(Layer):
    """A layer with several inputs: ``forward(*xs)``, ``backward(δ)`` returns one gradient per input.

    ``output_shape(*input_shapes)`` takes one shape per input. Only a :class:`Graph` can feed it.
    """

    def forward(self, *inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # One gradient per input, where a Layer returns one: a Merge is only ever called by Graph.backward,
    # which knows the difference, so the narrower Layer signature is deliberately not kept.
    def backward(  # type: ignore[override]
        self, grad_output: np.ndarray, need_input_grad: bool = True
    ) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def backward_curvature(  # type: ignore[override]
        self, inputs: tuple[np.ndarray, ...], curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        """Like :meth:`Layer.backward_curvature`, with the tuple of inputs and one curvature per input."""
        raise NotImplementedError


class Add(Merge):
    """Element-wise sum of two or more tensors of one shape; backward copies δ to every input.

    With the block's input as one summand this is the identity shortcut of ResNet,
    ``y = F(x) + x`` (He et al. 2016, eq. 1).
    """

    def forward(self, *inputs: np.ndarray) -> np.ndarray:
        if len(inputs) < 2:
            raise ConfigurationError(f"Add needs at least two inputs, got {len(inputs)}")
        self.cache = AddCache(len(inputs), None)
        return add_forward(*inputs)

    def forward_relu(self, *inputs: np.ndarray) -> np.ndarray:
        """``relu(Σ_k x_k)`` in one backend pass (:class:`Graph` runs Add → ReLU so where the backend
        fuses it); :meth:`backward` then takes δ of the ReLU's output and masks it first."""
        if len(inputs) < 2:
            raise ConfigurationError(f"Add needs at least two inputs, got {len(inputs)}")
        first = inputs[0]
        for index, other in enumerate(inputs[1:], start=1):
            if other.shape != first.shape:
                raise ShapeError(f"Add: input {index} has shape {other.shape}, input 0 has {first.shape}")
        backend = kernels.active()
        y, relu_cache = backend.add_relu_forward(tuple(inputs))
        self.cache = AddCache(len(inputs), (backend, relu_cache))
        return y

    def backward(  # type: ignore[override]  # see Merge.backward
        self, grad_output: np.ndarray, need_input_grad: bool = True
    ) -> tuple[np.ndarray, ...]:
        cache = self.require_cache()
        if cache.relu is not None:  # δ of the fused ReLU's output: ∂E/∂(Σ x_k) = δ ∘ [y > 0]
            backend, relu_cache = cache.relu
            grad_output = backend.relu_backward(grad_output, relu_cache)
        return add_backward(grad_output, cache.summands)

    def backward_curvature(self, inputs, curvature_output, grad_output=None):
        """Each summand's Jacobian is the identity: every input gets ``D``."""
        return add_backward(curvature_output, len(inputs)), {}

    def output_shape(self, *input_shapes: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(map(tuple, input_shapes))) != 1:
            raise ConfigurationError(f"Add: inputs of different shapes {list(input_shapes)}")
        return tuple(input_shapes[0])


class AddCache(NamedTuple):
    """What :meth:`Add.backward` needs."""

    summands: int
    relu: tuple[Any, Any] | None  # (backend, its relu cache) when the ReLU after the sum ran fused


class Node(NamedTuple):
    name: str
    layer: Layer
    inputs: tuple[str, ...]  # names of the tensors this node reads


def _as_node(item, index: int, previous: str) -> Node:
    """``(name, layer)`` reads the previous tensor; ``(name, layer, inputs)`` names them (str or sequence)."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ConfigurationError(f"graph node {index} must be (name, layer) or (name, layer, inputs), got {item!r}")
    name, layer = item[0], item[1]
    inputs = item[2] if len(item) == 3 else previous
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    if not isinstance(name, str) or not name or "." in name:
        raise ConfigurationError(f"graph node {index}: name must be a non-empty string without '.', got {name!r}")
    if not isinstance(layer, Layer):
        raise ConfigurationError(f"graph node {name!r} is {type(layer).__name__}, not a Layer")
    return Node(name, layer, inputs)


class Graph(Layer):
    """A DAG of named layers with one input tensor (``input_name``) and one output (``output``,
    default: the last node). See the module docstring for the node format.

    Parameter names are ``"<node>.<param>"`` (e.g. ``"conv1.weight"``), nested containers add their
    own prefixes (``"block.0.weight"``), like PyTorch's ``state_dict`` keys.
    """

    def __init__(self, nodes: Sequence, *, input_name: str = "input", output: str | None = None) -> None:
        super().__init__()
        self.input_name = input_name
        self.nodes: list[Node] = []
        known = {input_name}
        previous = input_name
        for index, item in enumerate(nodes):
            node = _as_node(item, index, previous)
            if node.name in known:
                raise ConfigurationError(f"graph node name {node.name!r} is used twice (or is the input's name)")
            unknown = [name for name in node.inputs if name not in known]
            if unknown:
                raise ConfigurationError(
                    f"graph node {node.name!r} reads {unknown}, which no earlier node produces "
                    "(nodes must be listed in topological order)"
                )
            merging = isinstance(node.layer, Merge)
            if merging != (len(node.inputs) > 1):
                raise ConfigurationError(
                    f"graph node {node.name!r}: a {type(node.layer).__name__} cannot take {len(node.inputs)} input(s)"
                )
            self.nodes.append(node)
            known.add(node.name)
            previous = node.name
        if not self.nodes:
            raise ConfigurationError("a graph needs at least one node")
        self.output = self.nodes[-1].name if output is None else output
        if self.output not in known or self.output == input_name:
            raise ConfigurationError(f"graph output {self.output!r} is not a node of the graph")
        self._active = self._ancestors_of_output()
        self._readers: dict[str, list[Node]] = {}  # tensor name → the active nodes that read it
        for node in self._active:
            for name in node.inputs:
                self._readers.setdefault(name, []).append(node)

    def _ancestors_of_output(self) -> list[Node]:
        """The nodes the output depends on, in order: the others need not run at all."""
        needed = {self.output}
        for node in reversed(self.nodes):
            if node.name in needed:
                needed.update(node.inputs)
        return [node for node in self.nodes if node.name in needed]

    # -- container protocol ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Layer:
        for node in self.nodes:
            if node.name == name:
                return node.layer
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.nodes)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return ((node.name, node.layer) for node in self.nodes)

    def consumers(self, tensor: str) -> list[str]:
        """Names of the (active) nodes that read ``tensor``."""
        return [node.name for node in self._active if tensor in node.inputs]

    # -- description ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The nodes as ``{"name", "inputs", "layer": {"type", "config"}}``, the input's and output's names."""
        from numcnn.layers.description import describe_layer

        nodes = [{"name": n.name, "inputs": list(n.inputs), "layer": describe_layer(n.layer)} for n in self.nodes]
        return {"nodes": nodes, "input_name": self.input_name, "output": self.output}

    @classmethod
    def from_config(cls, config: dict[str, Any], rng: np.random.Generator | None = None, dtype=np.float32) -> Graph:
        from numcnn.layers.description import layer_from_description

        nodes = [
            (node["name"], layer_from_description(node["layer"], rng, dtype), tuple(node["inputs"]))
            for node in config["nodes"]
        ]
        return cls(nodes, input_name=config.get("input_name", "input"), output=config.get("output"))

    # -- computation ----------------------------------------------------------------------------
    def _relu_pairs(self) -> dict[str, str]:
        """``{producer node: ReLU node}`` for the Conv2d → ReLU, (training) BatchNorm2d → ReLU and
        Add → ReLU pairs that run as one step.

        As in :mod:`numcnn.layers.fusion`: where the backend fuses them, neither layer hooked, and the
        ReLU the only reader of the producer's output (which is then never stored) -- the producer
        computes ``relu(·)`` of its output and its backward takes the ReLU's δ.
        """
        backend = kernels.active()
        if not (backend.fuses_conv_relu or backend.fuses_batch_norm_relu or backend.fuses_add_relu):
            return {}
        pairs = {}
        for node in self._active:
            following = self._readers.get(node.name, [])
            kind = type(node.layer)
            fusable = (
                (kind is Conv2d and backend.fuses_conv_relu)
                or (kind is BatchNorm2d and backend.fuses_batch_norm_relu and node.layer.training)
                or (kind is Add and backend.fuses_add_relu)
            )
            if (
                fusable
                and not node.layer.has_hooks()
                and node.name != self.output
                and len(following) == 1
                and type(following[0].layer) is ReLU
                and not following[0].layer.has_hooks()
            ):
                pairs[node.name] = following[0].name
        return pairs

    def forward(self, x: np.ndarray) -> np.ndarray:
        tensors = {self.input_name: x}
        fused = self._relu_pairs()
        relus = set(fused.values())
        for node in self._active:
            if node.name in relus:
                continue  # computed by the node before it
            arguments = [tensors[name] for name in node.inputs]
            if node.name in fused:
                assert isinstance(node.layer, (Conv2d, BatchNorm2d, Add))
                tensors[fused[node.name]] = node.layer.forward_relu(*arguments)
            else:
                tensors[node.name] = node.layer.forward_with_hooks(*arguments)
        # Every layer cached what its backward needs; the graph keeps which ReLUs ran inside the node
        # before them ({ReLU node: that node}), for backward to hand their δ straight on.
        self.cache = {relu: norm for norm, relu in fused.items()}
        return tensors[self.output]

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Reverse topological order; a tensor read by several nodes gets the sum of their gradients."""
        fused_relus = self.require_cache()
        grads: dict[str, np.ndarray] = {self.output: grad_output}
        for node in reversed(self._active):
            grad = grads.pop(node.name, None)
            if grad is None:
                continue  # this node's output does not reach the graph's output by this route
            if node.name in fused_relus:  # the ReLU ran inside the node before it, whose backward includes it
                grads[fused_relus[node.name]] = grad
                continue
            wants = need_input_grad or any(name != self.input_name for name in node.inputs)
            input_grads: tuple[np.ndarray | None, ...]
            if isinstance(node.layer, Merge):
                input_grads = node.layer.backward_with_hooks(grad)
            else:
                input_grads = (node.layer.backward_with_hooks(grad, need_input_grad=wants),)
            for name, input_grad in zip(node.inputs, input_grads):
                if input_grad is None:
                    continue
                # A fresh sum, never +=: the arrays may be shared (Add hands out one δ to all inputs).
                grads[name] = input_grad if name not in grads else grads[name] + input_grad
        return grads.get(self.input_name) if need_input_grad else None

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The curvature pass in reverse topological order (:mod:`numcnn.functional.curvature`).

        The node inputs are recomputed by a forward pass from ``x``. A tensor read by several nodes gets the
        *sum* of their curvatures: the Gauss–Newton diagonal without the cross terms between branches.
        Only the output node receives ``grad_output``. Parameter names as in ``named_parameters``.
        """
        tensors = {self.input_name: x}
        for node in self._active:
            tensors[node.name] = node.layer.forward(*(tensors[name] for name in node.inputs))
        curvatures: dict[str, np.ndarray] = {self.output: curvature_output}
        parameters: dict[str, np.ndarray] = {}
        for node in reversed(self._active):
            curvature = curvatures.pop(node.name, None)
            if curvature is None:
                continue
            inputs = tuple(tensors[name] for name in node.inputs)
            if isinstance(node.layer, Merge):
                input_curvatures, own = node.layer.backward_curvature(inputs, curvature)
            else:
                last = grad_output if node.name == self.output else None
                input_curvature, own = node.layer.backward_curvature(inputs[0], curvature, last)
                input_curvatures = (input_curvature,)
            parameters.update({f"{node.name}.{name}": value for name, value in own.items()})
            for name, input_curvature in zip(node.inputs, input_curvatures):
                curvatures[name] = input_curvature if name not in curvatures else curvatures[name] + input_curvature
        return curvatures.get(self.input_name, np.zeros_like(x)), parameters

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.tensor_shapes(input_shape)[self.output]

    def tensor_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The per-sample shape of every tensor of the graph (for summaries)."""
        shapes = {self.input_name: tuple(input_shape)}
        for node in self.nodes:
            shapes[node.name] = node.layer.output_shape(*(shapes[name] for name in node.inputs))
        return shapes

    # -- presentation ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(input={self.input_name!r}, output={self.output!r}"]
        for node in self.nodes:
            body = repr(node.layer).replace("\n", "\n  ")
            lines.append(f"  ({node.name} <- {', '.join(node.inputs)}): {body}")
        lines.append(")")
        return "\n".join(lines)
