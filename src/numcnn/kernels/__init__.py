"""Swappable compute kernels: the one dispatch point between the layers and the arithmetic.

A *backend* is an object with the same functions as :mod:`numcnn.functional` for the layers that
need speed (convolution, pooling, ReLU, linear); what it must implement is declared once, by the
Protocol :class:`numcnn.kernels.interface.Backend`. Layers never import a backend directly; they ask
:func:`active` for the current one, call it, and keep the backend together with its cache so that
``backward`` always runs on the backend that produced the forward cache. Three backends exist:

``"reference"``
    :mod:`numcnn.functional` itself -- the readable derivations, and the oracle every fast kernel
    is tested against.
``"numpy"``
    the same mathematics arranged for speed with NumPy alone: batch-last ``(C, H, W, N)`` memory,
    cache-blocked im2col products, ReLU fused into max pooling (see :mod:`numcnn.kernels.numpy_backend`).
``"numba"``
    the ``"numpy"`` backend with its convolutions and max pooling replaced by compiled loops
    (:mod:`numcnn.kernels.numba_backend`); needs the optional ``numba`` package (``numcnn[fast]``).

``"auto"`` picks ``"numba"`` when numba can be imported and ``"numpy"`` otherwise. The starting
backend comes from the environment variable ``NUMCNN_BACKEND`` (default ``"auto"``); change it with
:func:`set_backend` or, for a block of code, :func:`use_backend`::

    import numcnn
    numcnn.set_backend("reference")        # the readable path, e.g. for teaching
    with numcnn.kernels.use_backend("numpy"):
        model.forward(x)

A new backend is a new module with a class satisfying the Protocol, made selectable with
:func:`register_backend` (``register_backend("cupy", "mypackage.cupy_backend:CupyBackend",
requires="cupy")``); no layer changes.

Importing this package is cheap: numba is imported only when the numba backend is first used.
Thread counts of the fast backends (numba's threads, the numpy backend's split, OpenBLAS) are
set in :mod:`numcnn.kernels.threads`. Measured speed: ``numcnn bench`` and ``docs/performance.md``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

from numcnn.errors import ConfigurationError

if TYPE_CHECKING:
    from numcnn.kernels.interface import Backend

__all__ = [
    "BACKEND_NAMES",
    "ENVIRONMENT_VARIABLE",
    "active",
    "available_backends",
    "backend_name",
    "get_backend",
    "loaded_backends",
    "numba_available",
    "register_backend",
    "set_backend",
    "use_backend",
]

class _Registration(NamedTuple):
    location: str  # "module:Class", imported on first use so that `import numcnn` stays light
    requires: str | None  # a package the backend needs, checked without importing it


_REGISTRY: dict[str, _Registration] = {
    "reference": _Registration("numcnn.kernels.reference:ReferenceBackend", None),
    "numpy": _Registration("numcnn.kernels.numpy_backend:NumpyBackend", None),
    "numba": _Registration("numcnn.kernels.numba_backend:NumbaBackend", "numba"),
}
BACKEND_NAMES = tuple(_REGISTRY)  # the built-in backends, from the most readable to the fastest
ENVIRONMENT_VARIABLE = "NUMCNN_BACKEND"

_instances: dict[str, Backend] = {}  # name -> backend object, created on first use
_active: Backend | None = None  # the backend layers use now; resolved lazily from the environment


def register_backend(name: str, location: str, requires: str | None = None) -> None:
    """Make the backend class at ``location`` (``"package.module:Class"``) selectable as ``name``.

    ``requires`` names a package the backend needs (checked without importing it). The class must
    satisfy :class:`numcnn.kernels.interface.Backend`; that is checked when it is first created.
    """
    if ":" not in location:
        raise ConfigurationError(f"a backend location is 'module:Class', got {location!r}")
    _REGISTRY[name.strip().lower()] = _Registration(location, requires)
    _instances.pop(name, None)


def _installed(package: str) -> bool:
    """Whether ``package`` is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # e.g. a placeholder module without a spec
        return False


def numba_available() -> bool:
    """Whether the numba package is installed (checked without importing it)."""
    return _installed("numba")


def _usable(name: str) -> bool:
    requires = _REGISTRY[name].requires
    return requires is None or _installed(requires)


def available_backends() -> list[str]:
    """Backend names that can be selected on this machine."""
    return [name for name in _REGISTRY if _usable(name)]


def _resolve(name: str) -> str:
    name = name.strip().lower()
    if name == "auto":
        return "numba" if _usable("numba") else "numpy"
    if name not in _REGISTRY:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {', '.join(_REGISTRY)} or 'auto'")
    if not _usable(name):
        requires = _REGISTRY[name].requires
        extra = " 'numcnn[fast]'" if name == "numba" else f" {requires}"
        raise ConfigurationError(f"the {name} backend needs the {requires} package: pip install{extra}")
    return name


def get_backend(name: str) -> Backend:
    """The backend object called ``name`` (``"auto"`` allowed), created on first request."""
    name = _resolve(name)
    if name not in _instances:
        from numcnn.kernels.interface import Backend

        module_name, class_name = _REGISTRY[name].location.split(":")
        try:
            # Imported here, not at the top, so that `import numcnn` never pulls in numba.
            backend_class = getattr(importlib.import_module(module_name), class_name)
        except ImportError as error:  # installed but broken (e.g. NumPy too new for this numba)
            raise ConfigurationError(f"the {name} backend could not be loaded: {error}") from error
        backend = backend_class()
        if not isinstance(backend, Backend):
            name_of_class = backend_class.__qualname__
            raise ConfigurationError(f"{name_of_class} does not implement numcnn.kernels.interface.Backend")
        _instances[name] = backend
    return _instances[name]


def loaded_backends() -> list[Backend]:
    """The backend objects created so far (layers' caches refer to them; copies of a layer share them)."""
    return list(_instances.values())


def active() -> Backend:
    """The backend the layers use now (the dispatch point every layer calls)."""
    global _active
    if _active is None:
        _active = get_backend(os.environ.get(ENVIRONMENT_VARIABLE, "auto") or "auto")
    return _active


def backend_name() -> str:
    """Name of the active backend: ``"reference"``, ``"numpy"`` or ``"numba"``."""
    return active().name


def set_backend(name: str) -> str:
    """Make ``name`` (``"reference"``, ``"numpy"``, ``"numba"`` or ``"auto"``) the active backend.

    Returns the name of the backend now active (``"auto"`` resolved). Models need not be rebuilt:
    parameters are plain arrays that every backend reads the same way.
    """
    global _active
    _active = get_backend(name)
    return _active.name


@contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run a block of code on backend ``name`` and restore the previous backend afterwards."""
    global _active
    previous = active()
    _active = get_backend(name)
    try:
        yield _active
    finally:
        _active = previous
