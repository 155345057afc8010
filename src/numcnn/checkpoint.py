"""Checkpoints: one ``.npz`` file that holds a model's weights *and* what is needed to rebuild it.

Layout (all plain arrays, so ``np.load(path, allow_pickle=False)`` reads it)::

    meta                    0-d unicode array with a JSON object: format, version, model name,
                            dtype, epoch, training configuration, generator state, ...
    state/<name>            every parameter and buffer, PyTorch ``state_dict`` names ("0.weight")
    optimizer/<slot>.<i>    optimiser state (momentum velocities) for resuming training

Format version 2 adds two entries to ``meta`` (:mod:`numcnn.serialization`):

    architecture            the model as data, ``{"type", "config"}`` nested (layers, Graph nodes and edges)
    model_info              input shape, classes, normalisation mean/std, padding, loss, prediction rule
    registered              whether ``model`` names the registered architecture the model was built from

A registered model is rebuilt from the registry by name (:func:`numcnn.models.build`), any other one
from ``architecture``; version-1 checkpoints (no architecture) still load by name.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numcnn import models
from numcnn.errors import CheckpointError, NumcnnError, one_line
from numcnn.layers import Layer
from numcnn.serialization import describe_model, rebuild_model

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "numcnn-checkpoint"
FORMAT_VERSION = 2


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model plus its metadata and optimiser state.

    ``spec`` is the registered specification, or for a user-built model the one reconstructed from the
    stored description (:func:`numcnn.serialization.spec_from_meta`).
    """

    model: Layer
    meta: dict[str, Any]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    spec: models.ModelSpec | None = None

    def __post_init__(self) -> None:
        if self.spec is None:
            self.spec = models.get_spec(self.meta["model"])


def save_checkpoint(
    path: str | os.PathLike,
    model: Sequential,
    model_name: str,
    *,
    optimizer_state: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (registered as ``model_name``) to ``path`` atomically.

    The file is first written next to its destination and then renamed, so an interrupted save
    never leaves a truncated checkpoint behind -- the previous one survives.
    """
    path = Path(path)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **describe_model(model, model_name)}
    header.update(meta or {})
    arrays = {"meta": np.array(json.dumps(header))}
    arrays.update({f"state/{name}": value for name, value in model.state_dict().items()})
    arrays.update({f"optimizer/{key}": value for key, value in (optimizer_state or {}).items()})

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the model stored in ``path``; every problem is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (e.g. {path / 'model.npz'})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # .npz files are zip archives; np.load would try a pickle
        raise CheckpointError(f"{path}: is not a numcnn checkpoint (.npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({one_line(error)})") from None

    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a numcnn checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the checkpoint's metadata is not valid JSON") from None
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a numcnn checkpoint (format {meta.get('format')!r})")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer numcnn (format version {meta['version']})")

    state = {key.removeprefix("state/"): value for key, value in arrays.items() if key.startswith("state/")}
    optimizer_state = {
        key.removeprefix("optimizer/"): value for key, value in arrays.items() if key.startswith("optimizer/")
    }
    try:
        model, spec = rebuild_model(meta)
        model.load_state_dict(state)
    except NumcnnError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return Checkpoint(model=model, meta=meta, optimizer_state=optimizer_state, spec=spec)
