"""Swappable compute kernels: the one dispatch point between the layers and the arithmetic.

A *backend* is an object with the same functions as :mod:`numcnn.functional` for the layers that
need speed (convolution, pooling, ReLU, linear). Layers never import a backend directly; they ask
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

Importing this package is cheap: numba is imported only when the numba backend is first used.
Thread counts of the fast backends (numba's threads, the numpy backend's split, OpenBLAS) are
set in :mod:`numcnn.kernels.threads`. Measured speed: ``numcnn bench`` and ``docs/performance.md``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

from numcnn.errors import ConfigurationError

__all__ = [
    "BACKEND_NAMES",
    "ENVIRONMENT_VARIABLE",
    "active",
    "available_backends",
    "backend_name",
    "get_backend",
    "numba_available",
    "set_backend",
    "use_backend",
]

BACKEND_NAMES = ("reference", "numpy", "numba")
ENVIRONMENT_VARIABLE = "NUMCNN_BACKEND"

_instances: dict = {}  # name -> backend object, created on first use
_active = None  # the backend object layers use now; resolved lazily from the environment


def numba_available() -> bool:
    """Whether the numba package is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # e.g. a placeholder numba module without a spec
        return False


def available_backends() -> list[str]:
    """Backend names that can be selected on this machine."""
    return [name for name in BACKEND_NAMES if name != "numba" or numba_available()]


def _resolve(name: str) -> str:
    name = name.strip().lower()
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name not in BACKEND_NAMES:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} or 'auto'")
    if name == "numba" and not numba_available():
        raise ConfigurationError("the numba backend needs the numba package: pip install 'numcnn[fast]'")
    return name


def get_backend(name: str):
    """The backend object called ``name`` (``"auto"`` allowed), created on first request."""
    name = _resolve(name)
    if name not in _instances:
        # Imported here, not at the top, so that `import numcnn` never pulls in numba.
        if name == "reference":
            from numcnn.kernels.reference import ReferenceBackend as backend_class
        elif name == "numpy":
            from numcnn.kernels.numpy_backend import NumpyBackend as backend_class
        else:
            try:
                from numcnn.kernels.numba_backend import NumbaBackend as backend_class
            except ImportError as error:  # installed but broken (e.g. NumPy too new for this numba)
                raise ConfigurationError(f"the numba backend could not be loaded: {error}") from error
        _instances[name] = backend_class()
    return _instances[name]


def active():
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
def use_backend(name: str) -> Iterator[object]:
    """Run a block of code on backend ``name`` and restore the previous backend afterwards."""
    global _active
    previous = active()
    _active = get_backend(name)
    try:
        yield _active
    finally:
        _active = previous
