"""The numba kernels with the filters in the vector lanes (numcnn.kernels.numba_lanes), against the
reference backend, the direct kernels' bits, and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import kernels

pytestmark = pytest.mark.skipif(not kernels.numba_available(), reason="numba is not installed")

DTYPES = [np.float32, np.float64]

LANES_CASES = [
    # (N, C, H, W, F, kernel, stride, padding)
    (3, 6, 14, 14, 16, (5, 5), (1, 1), (0, 0)),  # LeNet-5's second layer: one pair of filter vectors
    (2, 16, 12, 12, 32, (3, 3), (2, 2), (1, 1)),  # resnet_mnist's strided 3×3: channel pairs in the scatter
    (2, 8, 7, 7, 24, (3, 3), (1, 1), (1, 1)),  # 24 filters: a pair and a single vector (float32)
    (2, 3, 9, 8, 5, (3, 2), (2, 3), (1, 2)),  # filters and channels padded to a vector, rectangular
    (2, 24, 6, 7, 7, (2, 2), (1, 1), (0, 0)),  # 24 channels: a pair and a single vector in the scatter
    (1, 2, 10, 11, 3, (4, 4), (3, 3), (0, 0)),  # (H − K) mod S ≠ 0: pixels no window reads
    (2, 16, 8, 8, 16, (1, 1), (2, 2), (0, 0)),  # 1×1 stride 2 (forced: the rule leaves it to a GEMM)
    (3, 1, 5, 5, 9, (5, 5), (1, 1), (0, 0)),  # one position per image, 25 taps (blocks padded to 30)
]


@pytest.fixture
def lanes_backend(monkeypatch):
    """The numba backend with the lanes kernels for every convolution."""
    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "use_lanes", lambda *arguments: True)
    return backend


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", LANES_CASES)
def test_lanes_convolution_equals_the_reference(lanes_backend, close, n, c, h, w, f, kernel, stride, padding, dtype,
                                                rng):  # fmt: skip
    reference = kernels.get_backend("reference")
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, *kernel)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y_ref, cache_ref = reference.conv2d_forward(x, weight, bias, stride, padding)
    y, cache = lanes_backend.conv2d_forward(x, weight, bias, stride, padding)
    assert type(cache).__name__ == "LanesConvCache"
    assert y.dtype == dtype
    close(y, y_ref, dtype)
    delta = rng.standard_normal(y.shape).astype(dtype)
    for ours, theirs in zip(lanes_backend.conv2d_backward(delta, cache), reference.conv2d_backward(delta, cache_ref)):
        close(ours, theirs, dtype)
    assert lanes_backend.conv2d_backward(delta, cache, need_input_grad=False)[0] is None


def test_lanes_forward_gives_the_bits_of_the_direct_kernels(rng, monkeypatch):
    """The taps are summed in the same order, each multiply-add fused: the same float32 bits."""
    backend = kernels.get_backend("numba")
    x = rng.standard_normal((4, 6, 14, 14)).astype(np.float32)
    weight = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    monkeypatch.setattr(backend, "use_lanes", lambda *arguments: True)
    y_lanes, cache = backend.conv2d_forward(x, weight, bias, (1, 1), (0, 0))
    assert type(cache).__name__ == "LanesConvCache"
    monkeypatch.setattr(backend, "use_lanes", lambda *arguments: False)
    y_direct, cache = backend.conv2d_forward(x, weight, bias, (1, 1), (0, 0))
    assert type(cache).__name__ == "DirectConvCache"
    np.testing.assert_array_equal(y_lanes, y_direct)


@pytest.mark.parametrize("record", [True, False], ids=["training", "inference"])
def test_lanes_conv_relu_pool_equals_the_three_kernels(lanes_backend, record, rng):
    """Conv2d → ReLU → 2×2 max pooling in one pass: the values and the recorded maxima (ties included:
    integer inputs) of the convolution followed by the separate ReLU → pooling kernel, and its backward."""
    x = rng.integers(-2, 3, size=(3, 6, 13, 12)).astype(np.float32)  # odd height: a row no window reads
    weight = rng.integers(-1, 2, size=(10, 6, 3, 3)).astype(np.float32)
    bias = np.zeros(10, dtype=np.float32)
    fused = lanes_backend.conv2d_max_pool2d_forward(x, weight, bias, (1, 1), (0, 0), (2, 2), (2, 2), (0, 0), record)
    assert fused is not None
    z, conv_cache, pool_cache = fused
    y, conv_cache_apart = lanes_backend.conv2d_forward(x, weight, bias, (1, 1), (0, 0))
    z_apart, pool_cache_apart = lanes_backend.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0), relu=True)
    np.testing.assert_array_equal(z, z_apart)
    delta = rng.standard_normal(z.shape).astype(np.float32)
    grad_y = lanes_backend.max_pool2d_backward(delta, pool_cache)
    np.testing.assert_array_equal(grad_y, lanes_backend.max_pool2d_backward(delta, pool_cache_apart))
    for ours, theirs in zip(lanes_backend.conv2d_backward(grad_y, conv_cache),
                            lanes_backend.conv2d_backward(grad_y, conv_cache_apart)):  # fmt: skip
        np.testing.assert_array_equal(ours, theirs)


def test_lanes_same_bits_on_one_thread_and_on_two(lanes_backend, rng):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread only")
    x = rng.standard_normal((9, 16, 10, 9)).astype(np.float32)
    weight = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, cache = lanes_backend.conv2d_forward(x, weight, None, (2, 2), (1, 1))
            results.append((y, *lanes_backend.conv2d_backward(np.cos(y), cache)))
    finally:
        numba.set_num_threads(before)
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


def test_lanes_rule_picks_small_planes_and_strides():
    backend = kernels.get_backend("numba")
    assert backend.use_lanes((16, 6, 5, 5), (1, 1), (0, 0), (14, 14))  # LeNet-5's second: rows 1.44× wide
    assert not backend.use_lanes((6, 1, 5, 5), (1, 1), (2, 2), (28, 28))  # LeNet-5's first: 6 of 8 lanes
    assert backend.use_lanes((32, 16, 3, 3), (2, 2), (1, 1), (28, 28))  # resnet_mnist's strided 3×3
    assert backend.use_lanes((64, 64, 3, 3), (1, 1), (1, 1), (7, 7))  # its 7×7 planes (else im2col)
    assert backend.use_lanes((32, 32, 3, 3), (1, 1), (1, 1), (14, 14))  # its 14×14: rows 1.22× wide
    assert not backend.use_lanes((16, 16, 3, 3), (1, 1), (1, 1), (28, 28))  # its 28×28: rows 1.07× wide
    assert not backend.use_lanes((32, 16, 1, 1), (2, 2), (0, 0), (28, 28))  # 1×1: one GEMM
    assert not backend.use_lanes((50, 50, 3, 3), (1, 1), (0, 0), (10, 10))  # SK's fourth: Winograd
    assert not backend.use_lanes((500, 50, 4, 4), (1, 1), (0, 0), (4, 4))  # SK's fifth: too large


def test_gradcheck_passes_through_the_lanes_kernels(rng, distinct_values):
    """Finite differences in float64 through a strided convolution and a pooled one, both run by the
    lanes kernels under the backend's own rule."""
    backend = kernels.get_backend("numba")
    assert backend.use_lanes((16, 8, 3, 3), (2, 2), (1, 1), (10, 10))
    assert backend.use_lanes((16, 16, 2, 2), (1, 1), (0, 0), (5, 5))
    model = numcnn.Sequential(
        numcnn.Conv2d(8, 16, 3, stride=2, padding=1, rng=rng, dtype=np.float64),  # 10×10 → 5×5
        numcnn.ReLU(),
        numcnn.Conv2d(16, 16, 2, rng=rng, dtype=np.float64),  # 5×5 → 4×4, pooled to 2×2 in the same pass
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),
        numcnn.Flatten(),
        numcnn.Linear(16 * 2 * 2, 2, rng=rng, dtype=np.float64),
    )
    x = distinct_values((2, 8, 10, 10))
    with kernels.use_backend("numba"):
        report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 0]), rng=rng)
    assert report.passed, str(report)
