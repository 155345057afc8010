"""Fixtures for the fast-backend tests: every fast backend is compared with the reference one."""

from __future__ import annotations

import numpy as np
import pytest

from numcnn import kernels

_NEEDS_NUMBA = pytest.mark.skipif(not kernels.numba_available(), reason="numba is not installed")
# "numba-no-lanes": the numba backend with its lanes kernels switched off, so the paths they took
# over (im2col + GEMM for strides and small planes, the direct kernels on LeNet-5's second layer)
# stay tested too.
FAST_BACKENDS = ["numpy", pytest.param("numba", marks=_NEEDS_NUMBA), pytest.param("numba-no-lanes", marks=_NEEDS_NUMBA)]

# (rtol, atol) per dtype: float64 must agree to rounding, float32 to its precision.
TOLERANCES = {np.float64: (1e-10, 1e-12), np.float32: (1e-4, 1e-5)}


@pytest.fixture(params=FAST_BACKENDS)
def fast(request, monkeypatch):
    """A fast backend object ("numpy", and "numba" with and without its lanes kernels when installed)."""
    if request.param == "numba-no-lanes":
        backend = kernels.get_backend("numba")
        monkeypatch.setattr(backend, "lanes_max_filters_times_rows", 0)
        return backend
    return kernels.get_backend(request.param)


@pytest.fixture
def reference():
    return kernels.get_backend("reference")


@pytest.fixture
def close():
    """``close(ours, theirs, dtype)``: equal shapes and values within the dtype's tolerance."""

    def check(ours, theirs, dtype) -> None:
        rtol, atol = TOLERANCES[np.dtype(dtype).type]
        assert np.shape(ours) == np.shape(theirs)
        if np.dtype(dtype) == np.float32 and np.size(theirs):
            # A float32 sum of hundreds of products that nearly cancel is off by a few ulps of its
            # *terms*, not of its result: the absolute tolerance scales with the largest value.
            # (A fixed 1e-5 failed by 5% for Winograd's float32 outputs near zero on a Xeon, Emerald
            # Rapids, where the same case passed on Zen 3.)
            atol = atol * max(1.0, float(np.max(np.abs(theirs))))
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)

    return check


@pytest.fixture
def layouts():
    """``layouts(x)``: the same values in the memory layouts a kernel can receive."""

    def make(x: np.ndarray) -> dict[str, np.ndarray]:
        channel_major = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        wide = np.zeros((*x.shape[:3], x.shape[3] * 2), dtype=x.dtype)
        wide[..., ::2] = x
        return {"nchw": np.ascontiguousarray(x), "channel_major": channel_major, "strided": wide[..., ::2]}

    return make
