"""Every backend implements the declared interface numcnn.kernels.interface.Backend, member by member."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from numcnn import kernels
from numcnn.errors import ConfigurationError
from numcnn.kernels.interface import BACKEND_MEMBERS, Backend
from numcnn.kernels.numpy_backend import NumpyBackend

ALL_BACKENDS = [
    "reference",
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not kernels.numba_available(), reason="numba is not installed")
    ),
]


def _parameters(function) -> list[tuple[str, object, object]]:
    """Name, kind and default of each parameter (annotations are the Protocol's business)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def interface_mismatches(backend: object) -> list[str]:
    """What ``backend`` lacks or declares differently from the Protocol, one line each."""
    problems = []
    for member in BACKEND_MEMBERS:
        if not hasattr(backend, member):
            problems.append(f"missing {member}")
            continue
        declared = getattr(Backend, member, None)
        if declared is None:  # a data attribute: check its type
            expected = {"name": str}.get(member, bool)
            if not isinstance(getattr(backend, member), expected):
                problems.append(f"{member} is not a {expected.__name__}")
        elif _parameters(getattr(backend, member)) != _parameters(declared)[1:]:  # drop self
            problems.append(f"{member}{inspect.signature(getattr(backend, member))} differs from the Protocol")
    return problems


def test_the_protocol_lists_what_the_layers_call():
    assert {"name", "fuses_relu_pool", "fuses_conv_pool", "conv2d_max_pool2d_forward"} <= set(BACKEND_MEMBERS)
    for stem in ("conv2d", "max_pool2d", "avg_pool2d", "relu", "linear"):
        assert {f"{stem}_forward", f"{stem}_backward"} <= set(BACKEND_MEMBERS)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_every_backend_satisfies_the_protocol(name):
    backend = kernels.get_backend(name)
    assert isinstance(backend, Backend)
    assert interface_mismatches(backend) == []
    assert backend.name == name


class _NumpyCopy(NumpyBackend):
    name = "copy"


class _Incomplete:
    name = "incomplete"
    fuses_relu_pool = False
    fuses_conv_pool = False

    def conv2d_forward(self, x, weight, bias, padding, stride):  # parameters swapped
        raise NotImplementedError


def test_a_backend_with_missing_or_different_methods_is_reported():
    problems = interface_mismatches(_Incomplete())
    assert "missing conv2d_backward" in problems
    assert any(line.startswith("conv2d_forward(") for line in problems)
    assert not isinstance(_Incomplete(), Backend)


def test_register_backend_adds_a_backend_without_touching_the_layers(monkeypatch):
    """A new backend is a new class: here the numpy backend under another name, used by a model."""
    monkeypatch.setattr(kernels, "_REGISTRY", dict(kernels._REGISTRY))
    monkeypatch.setattr(kernels, "_instances", dict(kernels._instances))
    kernels.register_backend("copy", f"{__name__}:_NumpyCopy")
    assert "copy" in kernels.available_backends()
    from numcnn.layers import Conv2d

    layer = Conv2d(1, 2, 3, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 1, 5, 5))
    with kernels.use_backend("numpy"):  # the class it copies: the same sums in the same order
        expected = layer.forward(x)
    with kernels.use_backend("copy") as backend:
        assert type(backend).__name__ == "_NumpyCopy"
        np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


def test_register_backend_refuses_a_class_that_is_not_a_backend(monkeypatch):
    monkeypatch.setattr(kernels, "_REGISTRY", dict(kernels._REGISTRY))
    monkeypatch.setattr(kernels, "_instances", dict(kernels._instances))
    kernels.register_backend("broken", f"{__name__}:_Incomplete")
    with pytest.raises(ConfigurationError, match="does not implement"):
        kernels.get_backend("broken")
    with pytest.raises(ConfigurationError, match="module:Class"):
        kernels.register_backend("nowhere", "no_colon_here")
