"""The PyTorch baseline: the same model as its PyTorch twin (:func:`numcnn.export.to_torch`, built from
the per-type descriptions of :mod:`numcnn.layer_types`).

Only used by the benchmark, and only when PyTorch is installed (``pip install torch==2.13.0``).
The translated model starts from numcnn's initial weights (same layouts), is trained with
``torch.optim.SGD`` with the same learning rate and momentum, and is timed on the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numcnn.models import ModelSpec

__all__ = ["torch_available", "build_torch_model", "TorchRunner"]


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def build_torch_model(spec: ModelSpec, numcnn_model=None):
    """The PyTorch twin (:func:`numcnn.export.to_torch`, float32) of ``numcnn_model``, or of a fresh
    model of ``spec`` when none is given; any layer type of :mod:`numcnn.layer_types`, chains and graphs."""
    from numcnn import models
    from numcnn.export import to_torch

    if numcnn_model is None:
        numcnn_model = models.build(spec.name, rng=0)
    return to_torch(numcnn_model, dtype=np.float32)


def _correct_class_penalty(outputs, labels):
    """LeNet-5's criterion eq. 8: the mean penalty of the correct class."""
    return outputs.gather(1, labels[:, None]).mean()


class TorchRunner:
    """Training steps and inference passes of the translated model, on the benchmark's batches."""

    def __init__(self, spec: ModelSpec, numcnn_model, lr: float, momentum: float, threads: int | None) -> None:
        import torch

        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = build_torch_model(spec, numcnn_model)
        self.num_classes = spec.num_classes
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.loss: Callable[..., Any] = torch.nn.MSELoss() if spec.loss == "mse" else torch.nn.CrossEntropyLoss()
        if spec.loss.startswith("rbf"):  # the RBF penalty of the correct class (the MAP term is not timed)
            self.loss = _correct_class_penalty
        self.mse = spec.loss == "mse"

    def tensors(self, images: np.ndarray, labels: np.ndarray):
        x = self.torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if self.mse:
            targets = np.eye(self.num_classes, dtype=np.float32)[labels]
            return x, self.torch.from_numpy(targets)
        return x, self.torch.from_numpy(labels.astype(np.int64))

    def train_steps(self, batches) -> None:
        self.model.train()
        for x, y in batches:
            self.optimizer.zero_grad()
            self.loss(self.model(x), y).backward()
            self.optimizer.step()

    def infer(self, batches) -> None:
        self.model.eval()
        with self.torch.no_grad():
            for x, _ in batches:
                self.model(x)

    def threads(self) -> int:
        return self.torch.get_num_threads()
