"""The worked numbers of the seed documents, reproduced exactly by numcnn's functions."""

from __future__ import annotations

import numpy as np

from numcnn.functional import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    conv2d_backward,
    conv2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)


def test_seed_004_convolution_of_3x4_image_with_2x2_ones():
    image = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=np.float64)[None, None]
    y, _ = conv2d_forward(image, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y[0, 0], [[12, 16, 11], [24, 28, 17]])


def test_seed_000_convn_full_example_is_the_input_gradient(seed_000_convn_full):
    # Seed 000: convn(ones(3,3), [1 2 3; 4 5 6; 7 8 9], 'full'). For y = x ⋆ k (valid
    # cross-correlation), ∂E/∂x is the full convolution of δ with k: with δ = ones(3,3) the
    # input gradient of a 5×5 input is exactly the seed's matrix.
    kernel = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    _, cache = conv2d_forward(np.zeros((1, 1, 5, 5)), kernel)
    grad_input, _, _ = conv2d_backward(np.ones((1, 1, 3, 3)), cache)
    np.testing.assert_array_equal(grad_input[0, 0], seed_000_convn_full)


def test_seed_001_convolution_gradients_written_out_term_by_term(rng):
    a = rng.standard_normal((3, 3))
    w = rng.standard_normal((2, 2))
    d = rng.standard_normal((2, 2))  # δ = ∂C/∂z
    _, cache = conv2d_forward(a[None, None], w[None, None])
    grad_a, grad_w, grad_b = conv2d_backward(d[None, None], cache)
    grad_a, grad_w = grad_a[0, 0], grad_w[0, 0]
    # Seed 001: ∇a11 = δ11 w11, ∇a12 = δ11 w12 + δ12 w11, ... (and the rot180 'full' form, eq. 4)
    assert np.isclose(grad_a[0, 0], d[0, 0] * w[0, 0])
    assert np.isclose(grad_a[0, 1], d[0, 0] * w[0, 1] + d[0, 1] * w[0, 0])
    assert np.isclose(grad_a[1, 1], d[0, 0] * w[1, 1] + d[0, 1] * w[1, 0] + d[1, 0] * w[0, 1] + d[1, 1] * w[0, 0])
    assert np.isclose(grad_a[2, 2], d[1, 1] * w[1, 1])
    full = np.pad(d, 1)
    rotated = w[::-1, ::-1]
    eq4 = np.array([[np.sum(full[i : i + 2, j : j + 2] * rotated) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(grad_a, eq4, rtol=1e-12)
    # Seed 001 eq. 5: ∂C/∂w = a ⋆ δ, e.g. ∇w12 = δ11 a12 + δ12 a13 + δ21 a22 + δ22 a23.
    assert np.isclose(grad_w[0, 1], d[0, 0] * a[0, 1] + d[0, 1] * a[0, 2] + d[1, 0] * a[1, 1] + d[1, 1] * a[1, 2])
    eq5 = np.array([[np.sum(a[i : i + 2, j : j + 2] * d) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(grad_w, eq5, rtol=1e-12)
    # Seed 001 eq. 6: ∂C/∂b = Σ δ.
    assert np.isclose(grad_b[0], d.sum())


SEED_001_DELTA = np.array([[2.0, 8.0], [4.0, 6.0]])


def test_seed_001_average_pooling_upsamples_delta_divided_by_window_size():
    _, cache = avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2)
    grad = avg_pool2d_backward(SEED_001_DELTA[None, None], cache)
    expected = [[0.5, 0.5, 2, 2], [0.5, 0.5, 2, 2], [1, 1, 1.5, 1.5], [1, 1, 1.5, 1.5]]  # seed 001 eq. 7
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_seed_001_max_pooling_routes_delta_to_the_recorded_maxima():
    # Maxima at top-left, bottom-right, top-right, bottom-left of the four windows (seed 001).
    x = np.zeros((4, 4))
    x[0, 0], x[1, 3], x[2, 1], x[3, 2] = 1.0, 1.0, 1.0, 1.0
    _, cache = max_pool2d_forward(x[None, None], 2)
    grad = max_pool2d_backward(SEED_001_DELTA[None, None], cache)
    expected = [[2, 0, 0, 0], [0, 0, 0, 8], [0, 4, 0, 0], [0, 0, 6, 0]]  # seed 001 eq. 8
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_seed_004_overlapping_max_pooling_adds_gradients_at_a_shared_maximum():
    # Seed 004 §15.6: with 2×2 windows and stride 1 on the 3×4 image, the 9 at (2, 2) is the
    # maximum of windows (1, 1) and (1, 2), so its gradient is the sum of theirs.
    image = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=np.float64)[None, None]
    y, cache = max_pool2d_forward(image, 2, stride=1)
    np.testing.assert_array_equal(y[0, 0], [[5, 6, 6], [8, 9, 9]])
    delta = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    grad = max_pool2d_backward(delta, cache)[0, 0]
    assert grad[2, 2] == delta[0, 0, 1, 1] + delta[0, 0, 1, 2]
    assert grad[1, 2] == delta[0, 0, 0, 1] + delta[0, 0, 0, 2]  # the 6 is shared too
    assert grad.sum() == delta.sum()


def test_max_pooling_tie_rule_is_first_in_row_major_order():
    x = np.ones((1, 1, 2, 2))
    _, cache = max_pool2d_forward(x, 2)
    grad = max_pool2d_backward(np.full((1, 1, 1, 1), 3.0), cache)
    np.testing.assert_array_equal(grad[0, 0], [[3, 0], [0, 0]])
