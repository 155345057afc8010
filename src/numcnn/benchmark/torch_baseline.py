"""The PyTorch baseline: the same architecture, translated layer by layer from the registry's spec.

Only used by the benchmark, and only when PyTorch is installed (``pip install torch==2.13.0``).
The translated model starts from numcnn's initial weights (same layouts), is trained with
``torch.optim.SGD`` with the same learning rate and momentum, and is timed on the same batches.
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.models import ModelSpec

__all__ = ["torch_available", "build_torch_model", "TorchRunner"]


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _translate(type_name: str, args: dict, nn):
    """One numcnn layer specification as a ``torch.nn`` module (PyTorch's defaults match numcnn's)."""
    if type_name == "Conv2d":
        return nn.Conv2d(
            args["in_channels"], args["out_channels"], args["kernel_size"],
            stride=args.get("stride", 1), padding=args.get("padding", 0), bias=args.get("bias", True),
        )  # fmt: skip
    if type_name == "Linear":
        return nn.Linear(args["in_features"], args["out_features"], bias=args.get("bias", True))
    if type_name in ("MaxPool2d", "AvgPool2d"):
        pool = nn.MaxPool2d if type_name == "MaxPool2d" else nn.AvgPool2d
        return pool(args["kernel_size"], stride=args.get("stride"), padding=args.get("padding", 0))
    simple = {"ReLU": nn.ReLU, "Flatten": nn.Flatten, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}
    if type_name in simple and (type_name not in ("Sigmoid", "Tanh") or not args):
        return simple[type_name]()
    if type_name in ("BatchNorm1d", "BatchNorm2d"):
        return getattr(nn, type_name)(
            args["num_features"], eps=args.get("eps", 1e-5), momentum=args.get("momentum", 0.1)
        )
    if type_name == "Dropout":
        return nn.Dropout(args.get("p", 0.5))
    raise ConfigurationError(f"no PyTorch equivalent for numcnn layer {type_name}({args}); run with --no-torch")


def build_torch_model(spec: ModelSpec, numcnn_model=None):
    """``torch.nn.Sequential`` of ``spec``; with ``numcnn_model``, its parameters are copied in."""
    import torch
    from torch import nn

    modules = [_translate(type_name, dict(args), nn) for type_name, args in spec.layers]
    model = nn.Sequential(*modules)
    if numcnn_model is not None:
        ours = {name: value for name, value, _ in numcnn_model.named_parameters()}
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in ours:
                    parameter.copy_(torch.from_numpy(np.ascontiguousarray(ours[name], dtype=np.float32)))
    return model


class TorchRunner:
    """Training steps and inference passes of the translated model, on the benchmark's batches."""

    def __init__(self, spec: ModelSpec, numcnn_model, lr: float, momentum: float, threads: int | None) -> None:
        import torch

        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = build_torch_model(spec, numcnn_model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.loss = torch.nn.MSELoss() if spec.loss == "mse" else torch.nn.CrossEntropyLoss()
        self.mse = spec.loss == "mse"

    def tensors(self, images: np.ndarray, labels: np.ndarray):
        x = self.torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if self.mse:
            targets = np.eye(self.model[-1].out_features, dtype=np.float32)[labels]
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
