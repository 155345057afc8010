"""Use a numcnn model elsewhere: PyTorch (:func:`to_torch`, :func:`load_torch_state_dict`) and ONNX
(:func:`to_onnx`). Each layer type's twin and ONNX nodes are described in :mod:`numcnn.layer_types`.

torch and onnx are imported only when these functions run (``pip install 'numcnn[interop]'`` for
onnx/onnxruntime/safetensors, ``numcnn[torch]`` for PyTorch).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["to_torch", "to_onnx", "load_torch_state_dict"]


def to_torch(model, dtype: Any = None):
    """A ``torch.nn.Module`` computing the same function as ``model``, with its weights; see
    :func:`numcnn.export.torch_twin.to_torch`."""
    from numcnn.export.torch_twin import to_torch as convert

    return convert(model, dtype)


def load_torch_state_dict(model, state) -> None:
    """Copy PyTorch weights (a ``state_dict`` or a file saved with ``torch.save``) into ``model``; see
    :func:`numcnn.export.torch_twin.load_torch_state_dict`."""
    from numcnn.export.torch_twin import load_torch_state_dict as load

    load(model, state)


def to_onnx(model, path: str | os.PathLike, opset: int | None = None, input_shape: tuple[int, ...] | None = None):
    """Write ``model`` as an ONNX file; see :func:`numcnn.export.onnx_export.to_onnx`."""
    from numcnn.export.onnx_export import to_onnx as export

    return export(model, path, opset=opset, input_shape=input_shape)
