"""One contiguous buffer for all parameters and one for all gradients, behind the usual dicts.

An optimiser step touches every parameter: with ten small arrays that is ten Python-level updates
of a few NumPy calls each, dominated by call overhead. :func:`flatten_parameters` copies every
parameter (and gradient) of a model into one flat array and re-binds ``layer.params[name]`` and
``layer.grads[name]`` to *views* into it. Nothing else changes -- the dicts have the same keys,
shapes and values, updates in place still reach the layers, ``+=`` still accumulates -- but an
optimiser that finds its parameters lying back to back (:func:`contiguous_span`) can update all of
them with one NumPy call per operation. :func:`numcnn.models.build` flattens every model it builds.

Re-binding an entry later (``layer.params["weight"] = other_array``) is allowed; the optimiser then
simply takes its per-array path.

:func:`flat_buffers` finds the two buffers of a model again, and :func:`flat_gradient` returns the
gradient buffer alone: the one array a data-parallel trainer sums over processes (one
``Allreduce`` per step) between ``backward`` and the optimiser step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers.base import Layer

__all__ = ["flatten_parameters", "contiguous_span", "walk_layers", "FlatBuffers", "flat_buffers", "flat_gradient"]


def walk_layers(layer: Layer) -> Iterator[Layer]:
    """``layer`` and all layers inside it, depth first, in the order ``named_parameters`` uses."""
    yield layer
    for child in layer.children():
        yield from walk_layers(child)


class FlatBuffers(NamedTuple):
    """A model's parameters and gradients as two 1-D arrays of the same length and dtype; every
    ``layer.params[name]`` / ``layer.grads[name]`` is a view into them, in ``named_parameters`` order."""

    params: np.ndarray
    grads: np.ndarray


def _unique_entries(model: Layer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every distinct ``(param, grad)`` of ``model``, in the order :func:`flatten_parameters` lays them out."""
    unique_layers = {id(layer): layer for layer in walk_layers(model)}.values()  # a layer may appear twice
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for layer in unique_layers:
        for name, param in layer.params.items():
            pairs.setdefault(id(param), (param, layer.grads[name]))  # a shared parameter counts once
    return list(pairs.values())


def flat_buffers(model: Layer) -> FlatBuffers | None:
    """The flat parameter and gradient buffers of ``model`` (set up by :func:`flatten_parameters`,
    which :func:`numcnn.models.build` calls), or ``None`` when its arrays do not lie in one buffer each
    (a model assembled by hand, or an entry re-bound since).

    Writing into ``grads`` changes every layer's gradients at once: this is where a data-parallel
    trainer sums the gradients of its processes before the optimiser step.
    """
    pairs = _unique_entries(model)
    params = contiguous_span([param for param, _ in pairs])
    grads = contiguous_span([grad for _, grad in pairs])
    if params is None or grads is None:
        return None
    return FlatBuffers(params, grads)


def flat_gradient(model: Layer) -> np.ndarray:
    """The 1-D gradient buffer of ``model`` (see :func:`flat_buffers`); a one-line error if there is none."""
    buffers = flat_buffers(model)
    if buffers is None:
        raise ConfigurationError(
            "the model's gradients are not in one flat buffer: build it with numcnn.models.build "
            "or call numcnn.layers.flat.flatten_parameters(model) first"
        )
    return buffers.grads


def flatten_parameters(model: Layer) -> tuple[np.ndarray, np.ndarray] | None:
    """Move all parameters and gradients of ``model`` into two flat buffers; return ``(params, grads)``.

    Returns ``None`` (and changes nothing) when the model has no parameters or mixes dtypes.
    A parameter array shared by several layers stays shared.
    """
    unique_layers = {id(layer): layer for layer in walk_layers(model)}.values()  # a layer may appear twice
    entries = [(layer, name) for layer in unique_layers for name in layer.params]
    if not entries or len({layer.params[name].dtype for layer, name in entries}) != 1:
        return None
    dtype = entries[0][0].params[entries[0][1]].dtype
    total = sum(layer.params[name].size for layer, name in entries)
    flat_params = np.empty(total, dtype=dtype)
    flat_grads = np.empty(total, dtype=dtype)
    views: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(original param) -> its views
    offset = 0
    for layer, name in entries:
        param, grad = layer.params[name], layer.grads[name]
        if id(param) not in views:
            stop = offset + param.size
            param_view = flat_params[offset:stop].reshape(param.shape)
            grad_view = flat_grads[offset:stop].reshape(param.shape)
            param_view[...] = param
            grad_view[...] = grad
            views[id(param)] = (param_view, grad_view)
            offset = stop
        layer.params[name], layer.grads[name] = views[id(param)]
    return flat_params[:offset], flat_grads[:offset]


def contiguous_span(arrays: list[np.ndarray]) -> np.ndarray | None:
    """A 1-D view covering ``arrays`` if they lie back to back, in this order, in one flat buffer; else None."""
    if not arrays:
        return None
    owner = arrays[0].base
    if owner is None or owner.ndim != 1 or not owner.flags.c_contiguous:
        return None
    start = expected = arrays[0].__array_interface__["data"][0]
    for array in arrays:
        if array.base is not owner or array.dtype != owner.dtype or not array.flags.c_contiguous:
            return None
        if array.__array_interface__["data"][0] != expected:
            return None
        expected += array.nbytes
    first = (start - owner.__array_interface__["data"][0]) // owner.itemsize
    return owner[first : first + (expected - start) // owner.itemsize]
