"""Shared fixtures. Tests import numcnn from the installed package (or ``PYTHONPATH=src``)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def distinct_values(rng: np.random.Generator):
    """Factory of float64 arrays whose values are pairwise far apart, so max pooling has no ties
    or near-ties that a finite-difference step of 1e-6 could flip."""

    def make(shape: tuple[int, ...]) -> np.ndarray:
        values = rng.permutation(int(np.prod(shape))).astype(np.float64) * 0.01
        return values.reshape(shape) + rng.uniform(-1e-3, 1e-3, size=shape)

    return make
