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


@pytest.fixture
def numba_threads():
    """Set numba's thread count for one test, restored afterwards."""
    import numba

    before = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(before)


def test_same_bits_on_one_thread_and_on_two(numba_threads, rng):
    """How a product is cut depends on its shape alone: an MPI process on one thread and a local run
    on two must compute bitwise the same products."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread only")
    a = rng.standard_normal((50, 500)).astype(np.float32)
    b = rng.standard_normal((500, 4096)).astype(np.float32)
    numba_threads(1)
    one = gemm.matmul(a, b)
    tall = gemm.matmul(b.T, a.T)
    numba_threads(2)
    np.testing.assert_array_equal(gemm.matmul(a, b), one)
    np.testing.assert_array_equal(gemm.matmul(b.T, a.T), tall)


def test_cache_blocked_convolution_same_bits_on_any_thread_count(numba_threads, rng, monkeypatch):
    import numba

    from numcnn import kernels

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread only")
    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "direct_max_filters_times_rows", 0)
    monkeypatch.setattr(backend, "lanes_max_filters_times_rows", 0)
    monkeypatch.setattr(backend, "blocked_min_unfolding_bytes", 0)
    monkeypatch.setattr(backend, "unfold_block_bytes", 4000)
    x = rng.standard_normal((7, 3, 10, 9)).astype(np.float32)
    weight = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    results = []
    for threads in (1, 2):
        numba_threads(threads)
        y, cache = backend.conv2d_forward(x, weight, None, (1, 1), (1, 1))
        grads = backend.conv2d_backward(np.cos(y), cache)
        results.append((y, *grads))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)
