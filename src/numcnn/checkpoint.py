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
import shutil
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

__all__ = [
    "Checkpoint", "save_checkpoint", "load_checkpoint", "read_meta", "previous_path", "FORMAT_NAME", "FORMAT_VERSION",
]

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
    spec: models.ModelSpec
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)


def previous_path(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``model.npz`` -> ``model.prev.npz``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(
    path: str | os.PathLike,
    model: Layer,
    model_name: str,
    *,
    optimizer_state: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write ``model`` (registered as ``model_name``) to ``path`` atomically and durably.

    The file is written next to its destination, flushed and ``fsync``-ed, then renamed over
    ``path``, and the directory is ``fsync``-ed: a crash or a power cut at any moment leaves
    either the previous complete checkpoint or the new complete one, never a truncated file. With
    ``keep_previous`` the file being replaced stays available as ``model.prev.npz``
    (:func:`previous_path`; a hard link, so no extra space is needed), also only once the new one
    is complete. A failed write (e.g. a full disk) raises a one-line :class:`CheckpointError` and
    leaves every existing file as it was. The file's permissions follow the umask, like any file
    the process creates.
    """
    path = Path(path)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **describe_model(model, model_name)}
    header.update(meta or {})
    # Any: np.savez's stub types **kwds as its own keyword arguments (allow_pickle: bool).
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(header))}
    arrays.update({f"state/{name}": value for name, value in model.state_dict().items()})
    arrays.update({f"optimizer/{key}": value for key, value in (optimizer_state or {}).items()})

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=TEMPORARY_SUFFIX, dir=path.parent)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be written ({one_line(error)})") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _write_archive(handle, arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600
        if keep_previous and path.is_file():
            _link_previous(path)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise CheckpointError(
                f"{path}: cannot be written ({one_line(error)}); the existing checkpoint files are unchanged"
            ) from None
        raise
    _fsync_directory(path.parent)  # makes the rename itself durable
    return path


TEMPORARY_SUFFIX = ".tmp"


def _write_archive(handle, arrays: dict[str, Any]) -> None:
    """The .npz writer (one place, so that tests can simulate a full disk here)."""
    np.savez(handle, **arrays)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _link_previous(path: Path) -> None:
    """Make ``model.prev.npz`` the file now at ``path``, atomically (link, then rename over the old one)."""
    previous = previous_path(path)
    staging = previous.with_name(previous.name + TEMPORARY_SUFFIX)
    staging.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staging)
        except OSError:  # a file system without hard links: copy
            shutil.copyfile(path, staging)
        os.replace(staging, previous)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on directories
    finally:
        os.close(descriptor)


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
        # The array headers are checked before any data is read: a forged header or a zip bomb
        # must not make numcnn allocate (or inflate) gigabytes.
        sizes = _member_sizes(path)
        if sizes.get("meta", 0) > MAX_META_BYTES:
            raise CheckpointError(f"{path}: the metadata entry is implausibly large ({sizes['meta']:,} bytes)")
        if sum(sizes.values()) > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path}: the arrays would need {sum(sizes.values()):,} bytes of memory")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({one_line(error)})") from None

    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a numcnn checkpoint (no 'meta' entry)")
    meta_array = arrays.pop("meta")
    if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise CheckpointError(f"{path}: not a numcnn checkpoint (its metadata is not a text entry)")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the checkpoint's metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a numcnn checkpoint (its metadata is not a JSON object)")
    if not isinstance(meta.get("version", 0), int) or not isinstance(meta.get("dtype", "float32"), str):
        raise CheckpointError(f"{path}: the checkpoint's metadata is damaged (version or dtype)")
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
        _check_values(state, model, path)
        model.load_state_dict(state)
    except NumcnnError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as error:  # metadata that names impossible settings
        reason = one_line(error)
        raise CheckpointError(f"{path}: the checkpoint does not describe a buildable model ({reason})") from None
    return Checkpoint(model=model, meta=meta, optimizer_state=optimizer_state, spec=spec)


def _check_values(state: dict[str, np.ndarray], model: Layer, path: Path) -> None:
    """Each array of the same kind as the model's (floating-point weights, integer counters), and finite:
    a complex, boolean or text array is damage, and so is a NaN or infinity (a diverged run is never
    saved as a checkpoint). Shapes and names are checked by ``load_state_dict``."""
    kinds = {name: value.dtype.kind for name, value in model.state_dict().items()}
    for name, value in state.items():
        kind = kinds.get(name)
        if kind is not None and value.dtype.kind != kind:
            wanted = {"f": "floating-point", "i": "integer", "u": "unsigned integer"}.get(kind, kind)
            raise CheckpointError(
                f"{path}: state/{name} holds {value.dtype} values where the model keeps {wanted} ones"
            )
        if kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"{path}: state/{name} holds non-finite values (NaN or infinity)")


MAX_META_BYTES = 1 << 20
MAX_CHECKPOINT_BYTES = 2 << 30  # above vgg16's 0.55 GB of float32 weights (and its float64 copy)


def _member_sizes(path: Path) -> dict[str, int]:
    """Bytes each array of the .npz at ``path`` would occupy, from the .npy headers alone (no data read).

    Raises ``ValueError`` for an entry that is not an .npy array or holds Python objects."""
    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects")
            count = 1
            for extent in shape:
                count *= int(extent)
            sizes[info.filename.removesuffix(".npy")] = count * dtype.itemsize
    return sizes


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata of the checkpoint at ``path`` (no model is built); a one-line
    :class:`CheckpointError` if it is not a readable numcnn checkpoint."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: no readable checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({one_line(error)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a numcnn checkpoint")
    return meta
