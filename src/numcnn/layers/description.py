"""A layer as data: ``{"type": <class name>, "config": <constructor arguments>}``, nested for containers.

:func:`describe_layer` reads :meth:`Layer.config`, :func:`layer_from_description` calls the class's
:meth:`Layer.from_config`; the type names are those of :data:`numcnn.layers.LAYER_TYPES`. The data is
plain JSON (numbers, strings, booleans, lists, dicts), so a checkpoint stores an architecture without
pickling anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers.base import Layer

__all__ = ["describe_layer", "layer_from_description"]


def describe_layer(layer: Layer) -> dict[str, Any]:
    """``{"type", "config"}`` of ``layer``; its class must be a registered layer type (no subclass with
    the same name, which would rebuild as something else)."""
    from numcnn.layers import LAYER_TYPES

    name = type(layer).__name__
    if LAYER_TYPES.get(name) is not type(layer):
        raise ConfigurationError(f"{name} is not a layer type numcnn can describe (see numcnn.layers.LAYER_TYPES)")
    return {"type": name, "config": layer.config()}


def layer_from_description(description: dict[str, Any], rng: np.random.Generator | None = None, dtype=np.float32):
    """The layer described by ``description`` (fresh weights; load the state afterwards)."""
    from numcnn.layers import LAYER_TYPES

    if not isinstance(description, dict) or "type" not in description:
        raise ConfigurationError(f"a layer description is {{'type': ..., 'config': ...}}, got {description!r:.80}")
    cls = LAYER_TYPES.get(description["type"])
    if cls is None:
        raise ConfigurationError(f"unknown layer type {description['type']!r} in a model description")
    try:
        return cls.from_config(dict(description.get("config", {})), rng, dtype)
    except TypeError as error:  # an argument the class does not take
        raise ConfigurationError(f"{description['type']}: {error}") from None
