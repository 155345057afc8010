"""numcnn.reference -- the seeds' rot180/conv2 formulation -- against the im2col implementation."""

from __future__ import annotations

import numpy as np
import pytest

from numcnn import reference
from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional import conv2d_backward, conv2d_forward

AGREEMENT = 1e-10  # float64, absolute, on values of order 1-10


def random_configurations(count: int, seed: int = 2024):
    """Random (N, C, F, H, W, kernel, stride, padding) with rectangular kernels, strides and paddings."""
    generator = np.random.default_rng(seed)
    configurations = []
    while len(configurations) < count:
        kernel = tuple(int(k) for k in generator.integers(1, 5, size=2))
        stride = tuple(int(s) for s in generator.integers(1, 4, size=2))
        padding = tuple(int(p) for p in generator.integers(0, 3, size=2))
        size = tuple(int(s) for s in generator.integers(1, 9, size=2))
        if any(s + 2 * p < k for s, p, k in zip(size, padding, kernel)):
            continue  # the kernel must fit into the padded input
        n, c, f = (int(v) for v in generator.integers(1, 4, size=3))
        configurations.append((n, c, f, *size, kernel, stride, padding))
    return configurations


CONFIGURATIONS = random_configurations(60)


@pytest.mark.parametrize("n, c, f, h, w, kernel, stride, padding", CONFIGURATIONS)
def test_reference_equals_im2col_forward_and_backward(n, c, f, h, w, kernel, stride, padding):
    generator = np.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    x = generator.standard_normal((n, c, h, w))
    weight = generator.standard_normal((f, c, *kernel))
    bias = generator.standard_normal(f)
    y, cache = conv2d_forward(x, weight, bias, stride, padding)
    y_reference = reference.conv_forward(x, weight, bias, stride, padding)
    np.testing.assert_allclose(y_reference, y, rtol=0, atol=AGREEMENT)

    delta = generator.standard_normal(y.shape)
    grad_x, grad_w, grad_b = conv2d_backward(delta, cache)
    ref_x, ref_w, ref_b = reference.conv_backward(delta, x, weight, stride, padding)
    np.testing.assert_allclose(ref_x, grad_x, rtol=0, atol=AGREEMENT)
    np.testing.assert_allclose(ref_w, grad_w, rtol=0, atol=AGREEMENT)
    np.testing.assert_allclose(ref_b, grad_b, rtol=0, atol=AGREEMENT)


def test_the_configurations_cover_strides_paddings_and_rectangles():
    assert len(CONFIGURATIONS) >= 50
    assert any(s != (1, 1) for *_, s, _ in CONFIGURATIONS)
    assert any(p[0] != p[1] for *_, p in CONFIGURATIONS)
    assert any(k[0] != k[1] for *_, k, _, _ in CONFIGURATIONS)


def test_seed_000_convn_full_example(seed_000_convn_full):
    a = np.ones((3, 3))
    k = np.arange(1, 10).reshape(3, 3)
    np.testing.assert_array_equal(reference.conv2(a, k, "full"), seed_000_convn_full)
    np.testing.assert_array_equal(reference.conv2(k, a, "full"), seed_000_convn_full)  # convolution commutes


def test_conv2_is_a_true_convolution(rng):
    # One-row matrices: conv2 is NumPy's 1-D convolution (which flips its second argument).
    a, b = rng.standard_normal(7), rng.standard_normal(3)
    np.testing.assert_allclose(reference.conv2(a[None], b[None], "full")[0], np.convolve(a, b, "full"))
    np.testing.assert_allclose(reference.conv2(a[None], b[None], "valid")[0], np.convolve(a, b, "valid"))
    assert reference.conv2(np.ones((2, 2)), np.ones((3, 3)), "valid").size == 0  # MATLAB: empty


def test_seed_000_rot180_remark_on_the_input_gradient(rng):
    # Seed 000: ∇x = [0-padded δ] * rot180(k) as a correlation, i.e. conv2(δ, k, 'full') for the
    # correlation kernel k of z = x ⋆ k: ∇x11 = δ11 k11, ∇x22 = δ11 k22 + δ12 k21 + δ21 k12 + δ22 k11.
    k, delta = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    grad_x, _, _ = reference.conv_backward(delta[None, None], np.zeros((1, 1, 3, 3)), k[None, None])
    grad_x = grad_x[0, 0]
    assert grad_x[0, 0] == pytest.approx(delta[0, 0] * k[0, 0])
    expected = delta[0, 0] * k[1, 1] + delta[0, 1] * k[1, 0] + delta[1, 0] * k[0, 1] + delta[1, 1] * k[0, 0]
    assert grad_x[1, 1] == pytest.approx(expected)
    assert grad_x[2, 1] == pytest.approx(delta[1, 0] * k[1, 1] + delta[1, 1] * k[1, 0])


def test_kernel_gradient_is_x_correlated_with_delta(rng):
    # Seed 000's remark: ∇k11 = δ11 x11 + δ12 x12 + δ21 x21 + δ22 x22, ... i.e. ∂E/∂k = x ⋆ δ.
    x, delta = rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    _, grad_w, grad_b = reference.conv_backward(delta[None, None], x[None, None], np.zeros((1, 1, 2, 2)))
    for i in range(2):
        for j in range(2):
            assert grad_w[0, 0, i, j] == pytest.approx(np.sum(delta * x[i : i + 2, j : j + 2]))
    assert grad_b[0] == pytest.approx(delta.sum())


def test_dilate_places_delta_at_the_strided_positions():
    delta = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    expected = [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(reference.dilate(delta, (2, 2), (4, 4))[0, 0], expected)


def test_reference_errors():
    with pytest.raises(ShapeError):
        reference.conv2(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ConfigurationError, match="'full' or 'valid'"):
        reference.conv2(np.ones((3, 3)), np.ones((2, 2)), "same")
    with pytest.raises(ShapeError, match="does not fit"):
        reference.conv_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)))
