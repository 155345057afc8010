"""Shared fixtures. Tests import numcnn from the installed package (or ``PYTHONPATH=src``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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


class SyntheticDigits:
    """An MNIST-shaped data set that a small CNN learns in one epoch: class k is a bright 6×6
    square at one of ten fixed places, on faint noise. Same attributes as ``numcnn.data.MnistData``."""

    def __init__(self, train: int = 600, test: int = 200, seed: int = 0) -> None:
        generator = np.random.default_rng(seed)
        self.train_images, self.train_labels = self._make(generator, train)
        self.test_images, self.test_labels = self._make(generator, test)

    @staticmethod
    def _make(generator: np.random.Generator, count: int):
        labels = generator.integers(0, 10, size=count).astype(np.uint8)
        images = generator.integers(0, 40, size=(count, 28, 28)).astype(np.uint8)
        for index, label in enumerate(labels):
            row, col = 3 + 12 * (label // 5), 1 + 5 * (label % 5)
            images[index, row : row + 6, col : col + 6] = 255
        return images, labels


@pytest.fixture(scope="session")
def synthetic_digits() -> SyntheticDigits:
    return SyntheticDigits()
