"""Weight initialisations that a model specification can ask for instead of the layers' defaults."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from numcnn.layers import Layer

__all__ = ["leaf_layers", "gaussian_init"]


def leaf_layers(model: Layer) -> Iterator[Layer]:
    """Every layer that is not a container, depth first in declaration order."""
    children = list(model.children())
    if not children:
        yield model
    for child in children:
        yield from leaf_layers(child)


def gaussian_init(model: Layer, std: float, rng: np.random.Generator) -> None:
    """Draw every convolution/linear weight (a ``weight`` of two or more dimensions) from
    ``N(0, std²)`` and zero its bias, in place; other parameters (BN's γ, β) keep their values.

    This is MatConvNet's initialisation of its MNIST example (``f*randn(...)`` with ``f = 1/100``,
    zero biases) that seed 004 exercise 15.6 builds on.
    """
    for layer in leaf_layers(model):
        weight = layer.params.get("weight")
        if weight is None or weight.ndim < 2:
            continue
        weight[...] = rng.normal(0.0, std, size=weight.shape)
        if "bias" in layer.params:
            layer.params["bias"].fill(0)
