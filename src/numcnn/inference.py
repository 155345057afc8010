"""Inference planning: an eval-only copy of a model (a chain or a graph) with batch normalisation folded
into its convolutions.

In eval mode a BatchNorm2d is a fixed per-channel affine map, ``y = γ·(x − μ)/√(σ² + ε) + β`` with
the running statistics ``μ``, ``σ²`` (seed 004 ex. 15.3; Ioffe & Szegedy). Directly after a
convolution ``x = W ⋆ u + b`` it folds into the convolution's own weights::

    s = γ / √(σ² + ε)             (one scale per output channel)
    W' = s · W,   b' = s · (b − μ) + β

so the folded network computes the same function with one pass less over every such layer's output.
The copy is for inference only: it has no BatchNorm2d layers to train, and the original model is
left untouched. The layers' forward code is not changed; the copy is an ordinary
:class:`~numcnn.layers.Sequential`.
"""

from __future__ import annotations

import copy

import numpy as np

from numcnn import kernels
from numcnn.errors import ConfigurationError
from numcnn.layers.container import Sequential
from numcnn.layers.convolution import Conv2d
from numcnn.layers.graph import Graph
from numcnn.layers.normalization import BatchNorm2d

__all__ = ["fold_batch_norm", "folded_conv_parameters", "inference_model"]


def folded_conv_parameters(
    weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
    running_mean: np.ndarray, running_var: np.ndarray, eps: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(W', b')`` of a convolution followed by an eval-mode batch norm (see the module docstring).

    Shape: weight ``(F, C, KH, KW)``, bias and the batch-norm vectors ``(F,)`` → ``(F, C, KH, KW)``, ``(F,)``.
    Computed in float64 and returned in the weight's dtype.
    """
    scale = gamma.astype(np.float64) / np.sqrt(running_var.astype(np.float64) + eps)
    shift = -running_mean.astype(np.float64) if bias is None else bias.astype(np.float64) - running_mean
    folded_weight = weight.astype(np.float64) * scale[:, None, None, None]
    folded_bias = scale * shift + beta.astype(np.float64)
    return folded_weight.astype(weight.dtype), folded_bias.astype(weight.dtype)


def _copy(layer):
    """A deep copy of ``layer`` whose caches still refer to the same backend objects (which hold
    thread-local scratch memory and are shared by design, never copied)."""
    memo = {id(backend): backend for backend in kernels.loaded_backends()}
    return copy.deepcopy(layer, memo)


def fold_batch_norm(model: Sequential | Graph) -> Sequential | Graph:
    """An eval-mode copy of ``model`` in which every Conv2d → BatchNorm2d pair is one Conv2d.

    In a :class:`~numcnn.layers.Graph` a pair is a BatchNorm2d node whose one input is a Conv2d
    node that nothing else reads; the folded convolution takes the batch norm's name (so the
    nodes that read it are unchanged). Other layers are deep copies of the originals; the result
    is in eval mode.
    """
    if isinstance(model, Graph):
        return _fold_graph(model)
    if not isinstance(model, Sequential):
        raise ConfigurationError(f"fold_batch_norm takes a Sequential or Graph model, got {type(model).__name__}")
    layers = list(model.layers)
    folded: list = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if type(layer) is Conv2d and type(following) is BatchNorm2d:
            folded.append(_folded_conv(layer, following))
            index += 2
        else:
            folded.append(_copy(layer))
            index += 1
    result = Sequential(*folded)
    result.eval()
    return result


def _folded_conv(conv: Conv2d, norm: BatchNorm2d) -> Conv2d:
    """A copy of ``conv`` with ``norm`` (in eval mode) folded into its weight and bias."""
    folded = _copy(conv)
    weight, bias = folded_conv_parameters(
        conv.connected_weight(), conv.params.get("bias"), norm.params["weight"], norm.params["bias"],
        norm.buffers["running_mean"], norm.buffers["running_var"], norm.eps,
    )  # fmt: skip
    folded.params["weight"] = weight
    folded.grads["weight"] = np.zeros_like(weight)
    folded.add_parameter("bias", bias)
    return folded


def _fold_graph(model: Graph) -> Graph:
    readers: dict[str, int] = {model.output: 1}  # the graph's output counts as a reader
    for node in model.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    layers = {node.name: node.layer for node in model.nodes}
    pairs: dict[str, str] = {}  # batch norm node -> the convolution node folded into it
    for node in model.nodes:
        source = node.inputs[0]
        if (
            type(node.layer) is BatchNorm2d
            and len(node.inputs) == 1
            and type(layers.get(source)) is Conv2d
            and readers[source] == 1
        ):
            pairs[node.name] = source
    folded_away = set(pairs.values())
    by_name = {node.name: node for node in model.nodes}
    nodes = []
    for node in model.nodes:
        if node.name in folded_away:
            continue
        if node.name in pairs:
            conv_node = by_name[pairs[node.name]]
            nodes.append((node.name, _folded_conv(conv_node.layer, node.layer), conv_node.inputs))  # type: ignore[arg-type]
        else:
            nodes.append((node.name, _copy(node.layer), node.inputs))
    result = Graph(nodes, input_name=model.input_name, output=model.output)
    result.eval()
    return result


def inference_model(model):
    """What to run for inference: ``model`` itself, switched to eval mode, or -- when some
    Conv2d → BatchNorm2d pair can be folded -- an eval-mode copy with those pairs folded.

    Used by :func:`numcnn.train.evaluate` and ``numcnn bench``. The copy computes the same function
    up to rounding; the caller restores ``model``'s training mode itself.
    """
    model.eval()
    if isinstance(model, Sequential):
        pairs = zip(model.layers, model.layers[1:])
        foldable = any(type(a) is Conv2d and type(b) is BatchNorm2d for a, b in pairs)
    elif isinstance(model, Graph):
        foldable = any(type(node.layer) is BatchNorm2d for node in model.nodes)
    else:
        foldable = False
    return fold_batch_norm(model) if foldable else model
