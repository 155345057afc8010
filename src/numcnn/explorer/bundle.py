"""Make the LeNet-5 checkpoint that ships with the package (``assets/lenet5.npz``) from a training run.

``numcnn explore`` without an argument serves it, so the page works on a machine with no MNIST and
no run of its own. The bundled file keeps the weights (float32, about 240 KB) and the run's
settings, drops what only resuming needs (optimiser velocities, generator state), and records the
test error measured here on MNIST's 10,000 test images, which the page shows::

    numcnn train --epochs 10 --seed 0 --out runs/bundled
    python -m numcnn.explorer.bundle runs/bundled/model.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

from numcnn.checkpoint import load_checkpoint, save_checkpoint
from numcnn.explorer.service import bundled_checkpoint_path

__all__ = ["bundle"]


def bundle(run_checkpoint: str | Path, out: str | Path | None = None) -> tuple[Path, float]:
    """Write ``run_checkpoint``'s weights to ``out`` (default: the package's asset); return it and the test error."""
    from numcnn.data import load_mnist
    from numcnn.train import evaluate, make_loss, prepare_split

    checkpoint = load_checkpoint(run_checkpoint)
    spec = checkpoint.spec
    data = load_mnist()
    split = prepare_split(spec, data.test_images, data.test_labels, checkpoint.meta.get("dtype", "float32"))
    _, accuracy = evaluate(checkpoint.model, make_loss(spec), spec, split)
    meta = {
        "epoch": checkpoint.meta.get("epoch"),
        "config": checkpoint.meta.get("config", {}),
        "test_error": round(1.0 - accuracy, 6),
    }
    target = Path(out) if out is not None else bundled_checkpoint_path()
    save_checkpoint(target, checkpoint.model, spec.name, meta=meta)
    return target, 1.0 - accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Bundle a trained checkpoint as the explorer's default model.")
    parser.add_argument("checkpoint", help="RUN/model.npz of a finished training run")
    parser.add_argument("--out", default=None, help="default: the package's assets/lenet5.npz")
    args = parser.parse_args()
    path, error = bundle(args.checkpoint, args.out)
    print(f"{path}: {path.stat().st_size / 1024:.0f} KiB, MNIST test error {error:.2%}")
