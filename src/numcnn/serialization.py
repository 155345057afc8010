"""Save any model, load it back: the architecture as data next to the weights, never a pickle.

:func:`save` writes ``model`` to ``path`` by its suffix:

* ``.npz`` -- a numcnn checkpoint (:mod:`numcnn.checkpoint`, format version 2);
* ``.safetensors`` -- the weights as safetensors (written with ``safetensors.numpy``, no torch) and
  the same description as a JSON string under the ``"numcnn"`` key of ``__metadata__``.

The description (``meta``) holds the architecture (:func:`numcnn.layers.describe_layer`: layer types
and constructor arguments, Graph nodes and edges) and ``model_info``, what using the model needs:
input shape, number of classes, normalisation mean/std, padding, loss and prediction rule. A model
built by :func:`numcnn.models.build` takes these from its specification; for a user-built model they
are :func:`save`'s keyword arguments (input shape by default from the first layer, 28×28 images).

:func:`load` rebuilds the model -- from the registry for a registered architecture, else from the
description -- loads the weights and attaches its :class:`~numcnn.models.ModelSpec` as ``model.spec``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from numcnn import models
from numcnn.errors import CheckpointError, ConfigurationError, NumcnnError, one_line
from numcnn.layers import Graph, Layer, Sequential, describe_layer, layer_from_description
from numcnn.layers.flat import flatten_parameters

__all__ = [
    "save", "load", "describe_model", "model_info", "spec_from_meta", "rebuild_model", "read_safetensors",
    "write_atomically", "SUFFIXES",
]  # fmt: skip

SUFFIXES = (".npz", ".safetensors")
SAFETENSORS_KEY = "numcnn"  # the __metadata__ entry holding the description

INFO_FIELDS = ("input_shape", "num_classes", "input_mean", "input_std", "input_padding", "loss", "prediction")


def _dtype_of(model: Layer) -> str:
    parameters = model.parameters()
    return str(parameters[0][0].dtype) if parameters else "float32"


def _registered_spec(model: Layer, model_name: str) -> models.ModelSpec | None:
    spec = getattr(model, "spec", None)
    if spec is not None and model_name in models.available_models() and models.get_spec(model_name) is spec:
        return spec
    return None


def _default_input_shape(model: Layer) -> tuple[int, ...]:
    first = model
    while isinstance(first, (Sequential, Graph)):
        first = first[0] if isinstance(first, Sequential) else first.nodes[0].layer
    if hasattr(first, "in_channels"):
        return (first.in_channels, 28, 28)
    if hasattr(first, "in_features"):
        return (first.in_features,)
    raise ConfigurationError(f"cannot tell the input shape of a model starting with {type(first).__name__}; "
                             "pass input_shape=(C, H, W)")  # fmt: skip


def model_info(model: Layer, **overrides: Any) -> dict[str, Any]:
    """The preprocessing and prediction settings stored with ``model``: those of its spec when it has
    one, else ModelSpec's defaults; ``overrides`` (fields of :data:`INFO_FIELDS`, ``description``) win."""
    unknown = set(overrides) - set(INFO_FIELDS) - {"description"}
    if unknown:
        raise ConfigurationError(f"unknown model settings {sorted(unknown)}; known: {', '.join(INFO_FIELDS)}")
    spec = getattr(model, "spec", None)
    info: dict[str, Any] = {}
    if spec is not None:
        info = {field: getattr(spec, field) for field in INFO_FIELDS}
        info["description"] = spec.description
    else:  # ModelSpec's defaults (MNIST's normalisation, cross-entropy, argmax)
        defaults = {field.name: field.default for field in dataclasses.fields(models.ModelSpec)}
        info = {name: defaults[name] for name in INFO_FIELDS[2:]}
        info["description"] = ""
    info.update({key: value for key, value in overrides.items() if value is not None})
    if info.get("input_shape") is None:
        info["input_shape"] = _default_input_shape(model)
    info["input_shape"] = [int(size) for size in info["input_shape"]]
    if info.get("num_classes") is None:
        info["num_classes"] = int(model.output_shape(tuple(info["input_shape"]))[0])
    return info


def describe_model(model: Layer, model_name: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The description stored with the weights (see the module docstring), without the format fields."""
    registered = _registered_spec(model, model_name) is not None
    header: dict[str, Any] = {"model": model_name, "dtype": _dtype_of(model), "registered": registered}
    try:
        header["architecture"] = describe_layer(model)
    except ConfigurationError:
        if not registered:
            raise
        # A registered model whose layers cannot describe themselves still loads by its name.
    header["model_info"] = info if info is not None else model_info(model)
    return header


def spec_from_meta(meta: dict[str, Any]) -> models.ModelSpec:
    """A :class:`~numcnn.models.ModelSpec` from a stored description (not registered)."""
    architecture, info = meta["architecture"], dict(meta.get("model_info") or {})
    config = architecture.get("config", {})
    layers: tuple = ()
    graph: tuple = ()
    if architecture["type"] == "Sequential":
        layers = tuple((item["type"], item.get("config", {})) for item in config["layers"])
    elif architecture["type"] == "Graph" and config.get("input_name", "input") == "input":
        graph = tuple(
            (node["name"], node["layer"]["type"], node["layer"].get("config", {}), tuple(node["inputs"]))
            for node in config["nodes"]
        )
    else:
        layers = ((architecture["type"], config),)
    fields = {key: info[key] for key in INFO_FIELDS if key in info}
    fields["input_shape"] = tuple(fields.get("input_shape", ()))
    return models.ModelSpec(
        name=meta["model"], layers=layers, graph=graph, description=info.get("description", ""), **fields
    )


def rebuild_model(meta: dict[str, Any]) -> tuple[Layer, models.ModelSpec]:
    """A fresh model of the stored architecture (weights not loaded yet) and its spec."""
    dtype = np.dtype(meta.get("dtype", "float32"))
    registered = meta.get("registered", "architecture" not in meta)  # version 1: always by name
    if registered or "architecture" not in meta:
        return models.build(meta["model"], rng=0, dtype=dtype), models.get_spec(meta["model"])
    model = layer_from_description(meta["architecture"], np.random.default_rng(0), dtype)
    spec = spec_from_meta(meta)
    model.spec = spec  # as models.build attaches it
    flatten_parameters(model)  # as models.build does: one buffer for the optimiser
    return model, spec


def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise ConfigurationError(f"{path}: unknown model file suffix {path.suffix!r}; use {' or '.join(SUFFIXES)}")
    return path.suffix


def save(model: Layer, path: str | os.PathLike, *, name: str | None = None, **info: Any) -> Path:
    """Write ``model`` (weights and description) to ``path``: ``.npz`` or ``.safetensors`` by suffix.

    ``name`` defaults to the registered name, else ``"custom"``; ``info`` sets the fields of
    :func:`model_info` (``input_shape=(1, 28, 28)``, ``input_mean``, ``input_std``, ``input_padding``,
    ``loss``, ``prediction``, ``num_classes``, ``description``).
    """
    from numcnn.checkpoint import FORMAT_NAME, FORMAT_VERSION, save_checkpoint

    path = Path(path)
    suffix = _suffix(path)
    spec = getattr(model, "spec", None)
    model_name = name or (spec.name if spec is not None else "custom")
    description = describe_model(model, model_name, model_info(model, **info))
    if suffix == ".npz":
        return save_checkpoint(path, model, model_name, meta=description)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **description}
    return _write_safetensors(path, model.state_dict(), header)


def write_atomically(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary_path)`` next to ``path``, then rename it over ``path``: a failure leaves any
    existing file untouched. The file gets the usual permissions (the umask's), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _write_safetensors(path: Path, state: dict[str, np.ndarray], header: dict[str, Any]) -> Path:
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) if value.ndim else value for name, value in state.items()}
    metadata = {SAFETENSORS_KEY: json.dumps(header)}
    return write_atomically(path, lambda temporary: save_file(arrays, temporary, metadata=metadata))


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the numcnn description of a ``.safetensors`` file (one-line errors)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safe_open handle is not a dict)
    except Exception as error:  # safetensors raises its own SafetensorError and OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(error)})") from None
    if SAFETENSORS_KEY not in metadata:
        raise CheckpointError(f"{path}: a safetensors file without a numcnn description (__metadata__['numcnn'])")
    try:
        meta = json.loads(metadata[SAFETENSORS_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the numcnn description is not valid JSON") from None
    return arrays, meta


def load(path: str | os.PathLike) -> Layer:
    """The model saved at ``path`` (``.npz`` checkpoint or ``.safetensors``), with ``model.spec`` set.

    For the metadata and optimiser state of a checkpoint use :func:`numcnn.checkpoint.load_checkpoint`.
    """
    from numcnn.checkpoint import load_checkpoint

    path = Path(path)
    if _suffix(path) == ".npz":
        checkpoint = load_checkpoint(path)
        checkpoint.model.spec = checkpoint.spec  # type: ignore[attr-defined]  # as models.build attaches it
        return checkpoint.model
    arrays, meta = read_safetensors(path)
    try:
        model, _ = rebuild_model(meta)
        model.load_state_dict(arrays)
    except NumcnnError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return model
