"""Inference planning: an eval-only copy of a model with batch normalisation folded into its convolutions.

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
from numcnn.layers.normalization import BatchNorm2d

__all__ = ["fold_batch_norm", "folded_conv_parameters"]


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


def fold_batch_norm(model: Sequential) -> Sequential:
    """An eval-mode copy of ``model`` in which every Conv2d → BatchNorm2d pair is one Conv2d.

    Other layers are deep copies of the originals; the result is in eval mode.
    """
    if not isinstance(model, Sequential):
        raise ConfigurationError(f"fold_batch_norm takes a Sequential model, got {type(model).__name__}")
    layers = list(model.layers)
    folded: list = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if type(layer) is Conv2d and type(following) is BatchNorm2d:
            conv = _copy(layer)
            weight, bias = folded_conv_parameters(
                layer.connected_weight(), layer.params.get("bias"), following.params["weight"],
                following.params["bias"], following.buffers["running_mean"], following.buffers["running_var"],
                following.eps,
            )  # fmt: skip
            conv.params["weight"] = weight
            conv.grads["weight"] = np.zeros_like(weight)
            conv.add_parameter("bias", bias)
            folded.append(conv)
            index += 2
        else:
            folded.append(_copy(layer))
            index += 1
    result = Sequential(*folded)
    result.eval()
    return result
