"""The MNIST test digits the explorer page offers to pick, shipped as package data.

The page must work on a machine with no MNIST on disk, so a handful of test images travel with the
package in ``assets/samples.npz`` (uint8, a few kilobytes). They are the first test image of each
class, so anyone can find them again in MNIST's test set by their index. Regenerate the file with::

    NUMCNN_DATA=/path/to/data python -m numcnn.explorer.samples
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["Sample", "load_samples", "first_of_each_class", "SAMPLES_FILE"]

SAMPLES_FILE = "samples.npz"


@dataclass(frozen=True)
class Sample:
    """One MNIST test digit: its index in the test set, its label and its 28×28 pixels in 0..1."""

    index: int
    label: int
    pixels: np.ndarray


def first_of_each_class(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Indices of the first image of each class, in class order."""
    return np.array([int(np.flatnonzero(labels == digit)[0]) for digit in range(classes)])


def load_samples() -> list[Sample]:
    """The shipped digits, pixels scaled from grey levels 0..255 to 0..1 (white digit on black)."""
    source = resources.files("numcnn.explorer").joinpath("assets").joinpath(SAMPLES_FILE)
    with resources.as_file(source) as path, np.load(path, allow_pickle=False) as archive:
        images, labels, indices = archive["images"], archive["labels"], archive["indices"]
    return [
        Sample(int(index), int(label), image.astype(np.float64) / 255.0)
        for index, label, image in zip(indices, labels, images)
    ]


def write_samples(out: Path) -> Path:
    """Copy the first test digit of each class from the MNIST found by :func:`numcnn.data.load_mnist`."""
    from numcnn.data import load_mnist

    data = load_mnist()
    indices = first_of_each_class(data.test_labels)
    np.savez_compressed(
        out, images=data.test_images[indices], labels=data.test_labels[indices], indices=indices.astype(np.int64)
    )
    return out


if __name__ == "__main__":
    target = Path(__file__).with_name("assets") / SAMPLES_FILE
    print(write_samples(target))
    sys.exit(0)
