"""numcnn.kernels.gemm.matmul: the product split over threads equals NumPy's, whatever the operands' layout."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numcnn.kernels import gemm


@pytest.mark.parametrize(
    "rows, inner, columns",
    [
        (50, 500, 4096),  # wide: split by columns (BASE's second convolution)
        (4096, 500, 50),  # tall: split by rows
        (500, 800, 64),  # tall and short: BASE's fully connected convolution
        (3, 4, 5),  # too small to split
        (17, 3000, 50),  # too few rows for two bands of 16: one call
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_product_equals_numpy(rows, inner, columns, dtype, rng):
    a = rng.standard_normal((rows, inner)).astype(dtype)
    b = rng.standard_normal((inner, columns)).astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(gemm.matmul(a, b), a @ b, rtol=rtol, atol=rtol * np.sqrt(inner))
    # Transposed operands and a preallocated output (as the convolutions pass them).
    out = np.empty((columns, rows), dtype=dtype)
    result = gemm.matmul(np.ascontiguousarray(b.T), np.ascontiguousarray(a.T), out=out)
    assert result is out
    np.testing.assert_allclose(out, (a @ b).T, rtol=rtol, atol=rtol * np.sqrt(inner))
    np.testing.assert_allclose(gemm.matmul(b.T, a.T), (a @ b).T, rtol=rtol, atol=rtol * np.sqrt(inner))


def test_split_product_from_a_worker_thread_does_not_deadlock(rng):
    """A product started on one of the workers runs there in one call instead of waiting for itself."""
    from concurrent.futures import ThreadPoolExecutor

    a = rng.standard_normal((64, 600))
    b = rng.standard_normal((600, 4096))
    with ThreadPoolExecutor(1, thread_name_prefix="numcnn-gemm") as pool:
        result = pool.submit(gemm.matmul, a, b).result(timeout=60)
    np.testing.assert_allclose(result, a @ b, rtol=1e-12)
