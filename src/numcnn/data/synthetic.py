"""A tiny MNIST-shaped data set made on the spot, for tests, demonstrations and benchmarks that must
not depend on the MNIST files: class ``k`` is a bright 6×6 square at one of ten fixed places, on faint
noise. A small CNN learns it in one epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticDigits", "synthetic_digits"]


@dataclass(frozen=True)
class SyntheticDigits:
    """The four arrays of :class:`numcnn.data.MnistData` (uint8 images ``(N, 28, 28)``, uint8 labels),
    without its file provenance."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _squares(generator: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    labels = generator.integers(0, 10, size=count).astype(np.uint8)
    images = generator.integers(0, 40, size=(count, 28, 28)).astype(np.uint8)  # faint noise
    for index, label in enumerate(labels):
        row, col = 3 + 12 * (label // 5), 1 + 5 * (label % 5)  # two rows of five places
        images[index, row : row + 6, col : col + 6] = 255
    return images, labels


def synthetic_digits(train: int = 600, test: int = 200, seed: int = 0) -> SyntheticDigits:
    """``train`` training and ``test`` test examples drawn from ``seed`` (the same seed, the same arrays)."""
    generator = np.random.default_rng(seed)
    train_images, train_labels = _squares(generator, train)
    test_images, test_labels = _squares(generator, test)
    return SyntheticDigits(train_images, train_labels, test_images, test_labels)
