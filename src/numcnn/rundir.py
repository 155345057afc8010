"""The run directory of ``numcnn train --out DIR``: what it holds, when it may be written, what is on disk.

Files::

    model.npz        the latest checkpoint: at the end of an epoch, or inside one (every
                     ``--checkpoint-every`` steps and when the run is interrupted)
    model.prev.npz   the checkpoint model.npz replaced (kept until a newer one is complete)
    best.npz         early stopping: the weights of the best validation epoch
    metrics.jsonl    one line per finished epoch
    curves.png       learning curves (``numcnn plot``)

A run directory is never replaced silently: starting a run in a directory that is not empty needs
``resume`` (continue the run there) or ``overwrite`` (delete the run files listed above first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from numcnn.checkpoint import TEMPORARY_SUFFIX, read_meta
from numcnn.errors import CheckpointError, ConfigurationError

__all__ = [
    "CHECKPOINT_NAME", "PREVIOUS_CHECKPOINT_NAME", "BEST_CHECKPOINT_NAME", "METRICS_NAME", "CURVES_NAME",
    "RUN_FILES", "check_run_directory", "clear_run_files", "remove_stale_temporaries",
    "describe_position", "describe_run", "reconcile_metrics",
]  # fmt: skip

CHECKPOINT_NAME = "model.npz"
PREVIOUS_CHECKPOINT_NAME = "model.prev.npz"
BEST_CHECKPOINT_NAME = "best.npz"  # early stopping: the weights of the best validation epoch
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
RUN_FILES = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, BEST_CHECKPOINT_NAME, METRICS_NAME, CURVES_NAME)


def check_run_directory(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, with one line, to start a run where it would replace something without being asked to."""
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"{out} is a file, not a run directory; choose another --out")
    if resume or overwrite or not out.is_dir():
        return
    try:
        content = sorted(entry.name for entry in out.iterdir())
    except OSError as error:
        raise ConfigurationError(f"{out}: cannot be read ({error.strerror})") from None
    if content:
        held = [name for name in RUN_FILES if name in content] or content[:3]
        raise ConfigurationError(
            f"{out} is not empty ({', '.join(held)}{', ...' if len(content) > len(held) else ''}): "
            "add --resume to continue the run there or --overwrite to replace it, or choose another --out"
        )


def clear_run_files(out: Path) -> None:
    """Delete the files of a previous run in ``out`` (``overwrite``); other files stay."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> None:
    """Delete half-written checkpoints a killed process left behind (``model.npz*.tmp``)."""
    if out.is_dir():
        for leftover in out.glob(f"*.npz*{TEMPORARY_SUFFIX}"):
            leftover.unlink(missing_ok=True)


def describe_position(meta: dict[str, Any]) -> str:
    """Where a training checkpoint stands: "epoch 2, step 37" (inside epoch 2) or "the end of epoch 1"."""
    position = meta.get("position")
    if position:
        return f"epoch {position['epoch']}, step {position['step']}"
    return f"the end of epoch {meta.get('epoch', '?')}"


def describe_run(out: Path | None) -> str:
    """What a run directory holds now, for messages: "checkpoint at epoch 1, step 37 in runs/x/model.npz"."""
    if out is None:
        return "no checkpoint (no run directory)"
    path = out / CHECKPOINT_NAME
    if not path.is_file():
        return f"no checkpoint yet in {out}"
    try:
        return f"checkpoint at {describe_position(read_meta(path))} in {path}"
    except CheckpointError as error:
        return f"an unreadable checkpoint: {error}"


def reconcile_metrics(out: Path, finished_epochs: int, last_record: dict[str, Any] | None) -> None:
    """Make ``metrics.jsonl`` list exactly the epochs ``1 … finished_epochs`` of the checkpoint being resumed.

    A process killed between writing a checkpoint and appending its metrics line (or after the
    line but before the next checkpoint) leaves the two out of step; the checkpoint wins. The last
    finished epoch's record travels in the checkpoint (``last_record``) for the first case."""
    path = out / METRICS_NAME
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept, epochs = [], []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= finished_epochs:
            kept.append(line)
            epochs.append(record["epoch"])
    if finished_epochs and finished_epochs not in epochs and last_record is not None:
        kept.append(json.dumps(last_record))
    text = "".join(line + "\n" for line in kept)
    if text != "".join(line + "\n" for line in lines):
        temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
