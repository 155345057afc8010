"""Fixtures for the data tests: an isolated environment, IDX writers and synthetic MNIST sets.

Every test runs with ``NUMCNN_DATA`` unset and ``XDG_CACHE_HOME``/``HOME`` pointing into a
temporary folder, so neither the developer's real data nor their cache can change an outcome;
real-data tests get the original ``NUMCNN_DATA`` through the ``real_mnist_dir`` fixture.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from numcnn.data import mnist
from numcnn.data.mnist import MNIST_FILES
from numcnn.errors import DataError

# Captured at import, before the autouse fixture below removes it from the environment.
REAL_NUMCNN_DATA = os.environ.get("NUMCNN_DATA", "")

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as an IDX file (uncompressed): magic, big-endian sizes, big-endian data."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    header = bytes([0, 0, _TYPE_CODES[dtype], array.ndim])
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, payload: bytes, *, gz: bool | None = None) -> Path:
    """Write ``payload`` to ``path``, gzip-compressed when ``gz`` (default: name ends in .gz)."""
    gz = path.name.endswith(".gz") if gz is None else gz
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return path


def synthetic_payloads(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, bytes]:
    """Decompressed contents of four small but well-formed MNIST-style files, by base name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }
    return {name: idx_bytes(array) for name, array in arrays.items()}


@pytest.fixture
def idx_tools() -> types.SimpleNamespace:
    """The helpers above, for tests (fixtures rather than imports: conftest is not a module
    tests should import, and this works under every pytest import mode)."""
    return types.SimpleNamespace(
        idx_bytes=idx_bytes, write_file=write_file, synthetic_payloads=synthetic_payloads
    )


@pytest.fixture(autouse=True)
def isolated_data_env(no_mnist_anywhere: Path) -> Path:
    """Every data test starts without MNIST on disk and without network access."""
    return no_mnist_anywhere


@pytest.fixture
def make_mnist(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Factory writing a synthetic MNIST set into a folder; registers its checksums.

    ``make_mnist(directory, gz=True, n_train=12, n_test=5, register=True)`` returns
    ``directory``. With ``register`` the checksum table is patched to the synthetic files, so
    ``verify=True`` passes; different sizes in one test would conflict, so register once.
    """

    def make(directory: Path, *, gz: bool = True, n_train: int = 12, n_test: int = 5,
             register: bool = True) -> Path:
        for name, payload in synthetic_payloads(n_train, n_test).items():
            write_file(directory / (f"{name}.gz" if gz else name), payload)
            if register:
                monkeypatch.setitem(mnist.MNIST_SHA256, name, hashlib.sha256(payload).hexdigest())
        return directory

    return make


@pytest.fixture
def check_error() -> Callable[..., str]:
    """``check_error(excinfo, *fragments)``: a one-line DataError containing every fragment."""

    def check(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
        assert excinfo.type is DataError
        message = str(excinfo.value)
        assert "\n" not in message and "\r" not in message, message
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        return message

    return check


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The folder holding the real MNIST files under $NUMCNN_DATA; skips the test otherwise."""
    if not REAL_NUMCNN_DATA:
        pytest.skip("NUMCNN_DATA is not set (e.g. NUMCNN_DATA=../shared/data); no real MNIST")
    root = Path(REAL_NUMCNN_DATA).expanduser()
    for directory in (root, root / "mnist"):
        if all((directory / f"{n}.gz").is_file() or (directory / n).is_file() for n in MNIST_FILES):
            return directory
    pytest.skip(f"NUMCNN_DATA={REAL_NUMCNN_DATA} does not hold the four MNIST files")
