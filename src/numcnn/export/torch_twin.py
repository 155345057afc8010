"""The PyTorch twin of a numcnn model, and PyTorch weights imported into numcnn.

The twin is assembled from the ``torch`` entries of :mod:`numcnn.layer_types`; its ``state_dict`` has
exactly the numcnn model's names (``"0.weight"``, ``"block1_conv1.weight"``, ...) and shapes, so the
weights map one to one in both directions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from numcnn.errors import CheckpointError, ConfigurationError, one_line
from numcnn.layers import Layer

__all__ = ["to_torch", "load_torch_state_dict", "torch_dtype"]


def torch_dtype(model: Layer, dtype: Any = None):
    """The torch dtype of ``dtype`` (a NumPy or torch dtype), default: that of the model's parameters."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        parameters = model.parameters()
        dtype = parameters[0][0].dtype if parameters else np.float32
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def _convert(layer: Layer):
    from numcnn.layer_types import layer_type_of

    return layer_type_of(layer).torch(layer, _convert)


def to_torch(model: Layer, dtype: Any = None):
    """A ``torch.nn.Module`` equal to ``model``: same outputs and gradients, same weights (copied).

    The twin starts in ``model``'s mode (train/eval). ``dtype`` defaults to the model's (float64 for a
    float64 model). A layer type without a twin raises a one-line :class:`ConfigurationError`.
    """

    twin = _convert(model).to(torch_dtype(model, dtype))
    _copy_into_twin(twin, model)
    twin.train(model.training)
    return twin


def _copy_into_twin(twin, model: Layer) -> None:
    import torch

    ours = model.state_dict()
    theirs = twin.state_dict()
    if set(ours) != set(theirs):
        raise ConfigurationError(
            f"the PyTorch twin's names differ: {sorted(set(ours) ^ set(theirs))[:5]} (a layer_types entry is wrong)"
        )
    with torch.no_grad():
        for name, target in theirs.items():
            target.copy_(torch.from_numpy(np.array(ours[name], order="C")).to(target.dtype))


def _read_state(state) -> Mapping[str, Any]:
    if not isinstance(state, (str, os.PathLike)):
        return state
    import torch

    path = Path(state)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as error:  # torch raises many kinds (pickle, zip, runtime)
        raise CheckpointError(f"{path}: not a PyTorch state_dict file ({one_line(error)})") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a state_dict")
    return loaded


def load_torch_state_dict(model: Layer, state) -> None:
    """Copy a PyTorch ``state_dict`` (or a file written by ``torch.save(module.state_dict(), path)``)
    into ``model`` in place. Names and shapes must match the model's exactly (those of its
    :func:`to_torch` twin); a mismatch is a one-line :class:`CheckpointError` and changes nothing."""
    entries = _read_state(state)
    arrays: dict[str, np.ndarray] = {}
    for name, value in entries.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[str(name)] = np.asarray(value)
    # Buffers PyTorch keeps that numcnn models do not hold are not expected (e.g. a mask of a
    # MaskedConv2d is non-persistent), so the key sets must be equal.
    model.load_state_dict(arrays)
