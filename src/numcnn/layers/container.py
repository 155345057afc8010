"""``Sequential``: a chain of layers, forward in order and backward in reverse (the chain rule)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers.base import Layer
from numcnn.layers.fusion import fused_backward, fused_forward

__all__ = ["Sequential"]


class Sequential(Layer):
    """Apply ``layers`` one after another.

    ``backward(δᴸ)`` walks the list backwards, handing each layer the δ its successor returned --
    seed 000 eq. 4's recursion ``δˡ = (Wˡ⁺¹)ᵀ δˡ⁺¹ ∘ f′(uˡ)`` with every factor kept in its own layer.

    Parameter names follow PyTorch's ``state_dict``: ``"<index>.<name>"``, e.g. ``"0.weight"``.

    On a fast backend a ReLU directly followed by a MaxPool2d runs as one fused step, and on numba
    also a Conv2d before them, or a Conv2d or (training) BatchNorm2d before a ReLU
    (:mod:`numcnn.layers.fusion`), with identical outputs and gradients; set ``allow_fusion = False``
    on an instance to run every layer separately. Layers with hooks are never fused. The cache of a
    Sequential is the plan of its last forward pass (:attr:`steps`).
    """

    allow_fusion = True

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ConfigurationError(f"Sequential item {index} is {type(layer).__name__}, not a Layer")
        self.layers: list[Layer] = list(layers)

    # -- container protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return ((str(index), layer) for index, layer in enumerate(self.layers))

    def append(self, layer: Layer) -> Sequential:
        if not isinstance(layer, Layer):
            raise ConfigurationError(f"cannot append {type(layer).__name__}: not a Layer")
        self.layers.append(layer)
        return self

    # -- description ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """``{"layers": [description, ...]}``, each child as ``{"type", "config"}``."""
        from numcnn.layers.description import describe_layer

        return {"layers": [describe_layer(layer) for layer in self.layers]}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], rng: np.random.Generator | None = None, dtype=np.float32
    ) -> Sequential:
        from numcnn.layers.description import layer_from_description

        return cls(*(layer_from_description(item, rng, dtype) for item in config["layers"]))

    # -- computation ----------------------------------------------------------------------------
    @property
    def steps(self) -> tuple[tuple[int, int], ...]:
        """The ``(first, last)`` layer steps of the last forward pass (:func:`~numcnn.layers.fusion.plan_steps`),
        ``()`` before any."""
        return self.cache or ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, self.cache = fused_forward(self.layers, x, self.allow_fusion)
        return x

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate ``∂E/∂output``; with ``need_input_grad=False`` the first layer skips ``∂E/∂x``."""
        return fused_backward(self.layers, grad_output, self.steps, need_input_grad)

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The curvature pass through every layer, last to first; parameter names as in ``named_parameters``.

        The layers' inputs are recomputed by a forward pass from ``x`` (the pass runs on a few hundred
        samples per epoch, so this costs little and no forward pass has to keep more). Only the last
        layer receives ``grad_output``.
        """
        inputs = []
        for layer in self.layers:
            inputs.append(x)
            x = layer.forward(x)
        curvatures: dict[str, np.ndarray] = {}
        curvature = curvature_output
        for index in range(len(self.layers) - 1, -1, -1):
            last = index == len(self.layers) - 1
            curvature, layer_curvatures = self.layers[index].backward_curvature(
                inputs[index], curvature, grad_output if last else None
            )
            curvatures.update({f"{index}.{name}": value for name, value in layer_curvatures.items()})
        return curvature, curvatures

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    # -- presentation ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for index, layer in enumerate(self.layers):
            body = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({index}): {body}")
        lines.append(")")
        return "\n".join(lines)
