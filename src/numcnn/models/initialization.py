"""Weight initialisations that a model specification can ask for instead of the layers' defaults."""

from __future__ import annotations

import numpy as np

from numcnn.layers import Layer
from numcnn.layers.flat import walk_layers

__all__ = ["gaussian_init"]


def gaussian_init(model: Layer, std: float, rng: np.random.Generator) -> None:
    """Draw every convolution/linear weight (a ``weight`` of two or more dimensions) from
    ``N(0, std²)`` and zero its bias, in place; other parameters (BN's γ, β) keep their values.

    This is MatConvNet's initialisation of its MNIST example (``f*randn(...)`` with ``f = 1/100``,
    zero biases) that seed 004 exercise 15.6 builds on.
    """
    for layer in walk_layers(model):  # containers have no parameters of their own: skipped below
        weight = layer.params.get("weight")
        if weight is None or weight.ndim < 2:
            continue
        weight[...] = rng.normal(0.0, std, size=weight.shape)
        if "bias" in layer.params:
            layer.params["bias"].fill(0)
