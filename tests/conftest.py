"""Shared fixtures. Tests import numcnn from the installed package (or ``PYTHONPATH=src``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import numcnn
from numcnn.data import SyntheticDigits
from numcnn.data import synthetic_digits as make_synthetic_digits


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def no_mnist_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No ``NUMCNN_DATA``, an empty home and cache (returned), and no network: 'not found' paths are
    deterministic and no test can download, whatever it forgets to patch."""
    from numcnn.data import mnist

    home = tmp_path_factory.mktemp("home")
    monkeypatch.delenv("NUMCNN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    real_urlopen = mnist._urlopen

    def local_only(url: str, timeout: float):
        if not url.startswith("file:"):
            raise AssertionError(f"test tried to download {url}")
        return real_urlopen(url, timeout)

    monkeypatch.setattr(mnist, "_urlopen", local_only)
    return home


@pytest.fixture
def seed_000_convn_full() -> np.ndarray:
    """Seed 000 §3.1's worked example: ``convn(ones(3, 3), [1 2 3; 4 5 6; 7 8 9], 'full')``."""
    return np.array(
        [
            [1, 3, 6, 5, 3],
            [5, 12, 21, 16, 9],
            [12, 27, 45, 33, 18],
            [11, 24, 39, 28, 15],
            [7, 15, 24, 17, 9],
        ]
    )


@pytest.fixture
def distinct_values(rng: np.random.Generator):
    """Factory of float64 arrays whose values are pairwise far apart, so max pooling has no ties
    or near-ties that a finite-difference step of 1e-6 could flip."""

    def make(shape: tuple[int, ...]) -> np.ndarray:
        values = rng.permutation(int(np.prod(shape))).astype(np.float64) * 0.01
        return values.reshape(shape) + rng.uniform(-1e-3, 1e-3, size=shape)

    return make


@pytest.fixture(scope="session")
def synthetic_digits() -> SyntheticDigits:
    return make_synthetic_digits()


# -- user-built models (not registered) for the save/load and export tests -----------------------

def user_sequential(rng: np.random.Generator, dtype=np.float32, sparsity: float = 0.1) -> numcnn.Sequential:
    """Every classic layer, built by hand (not registered)."""
    table = np.array([[1, 0, 1], [1, 1, 0]], dtype=bool)
    return numcnn.Sequential(
        numcnn.Conv2d(1, 2, 3, padding=1, rng=rng, dtype=dtype),
        numcnn.Tanh(amplitude=1.5, scale=0.5),
        numcnn.Subsample2d(2, factor=2, mode="mean", activation="ScaledTanh", rng=rng, dtype=dtype),
        numcnn.Conv2d(2, 3, 3, connections=table, rng=rng, dtype=dtype),
        numcnn.Sigmoid(slope=2.0),
        numcnn.LearnedCombination2d(3, 4, 2, stride=1, sparsity=sparsity, sparsity_power=0.5, rng=rng, dtype=dtype),
        numcnn.AvgPool2d(2),
        numcnn.Flatten(),
        numcnn.Dropout(0.25, rng=rng),
        numcnn.Linear(4, 6, rng=rng, dtype=dtype),
        numcnn.BatchNorm1d(6, eps=1e-3, momentum=0.2, dtype=dtype),
        numcnn.EuclideanRBF(6, 5, rng=rng, dtype=dtype),
    )


def user_graph(rng: np.random.Generator, dtype=np.float32) -> numcnn.Graph:
    """A residual block with a projection shortcut, then a head (not registered)."""
    return numcnn.Graph([
        ("conv1", numcnn.Conv2d(1, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype)),
        ("bn1", numcnn.BatchNorm2d(4, dtype=dtype)),
        ("relu1", numcnn.ReLU()),
        ("conv2", numcnn.Conv2d(4, 4, 3, padding=1, rng=rng, dtype=dtype)),
        ("proj", numcnn.Conv2d(1, 4, 1, rng=rng, dtype=dtype), "input"),
        ("add", numcnn.Add(), ("conv2", "proj")),
        ("pool", numcnn.MaxPool2d(2)),
        ("gap", numcnn.GlobalAvgPool2d()),
        ("fc", numcnn.Linear(4, 3, rng=rng, dtype=dtype)),
        ("softmax", numcnn.Softmax()),
    ])  # fmt: skip


def randomise_statistics(model, rng: np.random.Generator) -> None:
    """Non-trivial running statistics, so that buffers are checked too."""
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer[...] = rng.normal(size=buffer.shape)
        elif name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, size=buffer.shape)


@pytest.fixture
def user_models():
    """``{kind: (builder(rng, dtype=...), input_shape)}`` of a hand-built Sequential and Graph."""
    return {"sequential": (user_sequential, (1, 12, 12)), "graph": (user_graph, (1, 8, 8))}


@pytest.fixture
def randomised_statistics():
    """Give BatchNorm layers non-trivial running statistics (so eval mode and buffers are tested)."""
    return randomise_statistics
