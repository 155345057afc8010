"""Every fast kernel agrees with the reference (readable) implementation in numcnn.functional.

Random shapes include odd sizes, stride > 1, padding, overlapping pooling windows, rectangular
kernels, batch 1, and every input memory layout (NCHW, channel-major, strided), in float64
(rtol 1e-10) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import numpy as np
import pytest

from numcnn import functional as F

DTYPES = [np.float64, np.float32]

CONV_CASES = [
    # (N, C, H, W, F, kernel, stride, padding)
    (2, 1, 12, 12, 3, (5, 5), (1, 1), (2, 2)),  # LeNet's first layer, small: the direct numba path
    (3, 2, 9, 9, 4, (5, 5), (1, 1), (0, 0)),  # LeNet's second layer, small
    (1, 3, 7, 8, 2, (3, 3), (2, 2), (1, 1)),  # batch 1, stride 2, padding
    (2, 2, 9, 7, 3, (3, 2), (2, 3), (1, 2)),  # rectangular everything
    (2, 2, 10, 11, 2, (4, 4), (3, 3), (0, 0)),  # (H − K) mod S ≠ 0
    (2, 3, 5, 5, 2, (1, 1), (1, 1), (0, 0)),  # 1×1 kernel
    (2, 2, 4, 4, 3, (6, 6), (1, 1), (1, 1)),  # kernel larger than the input, covered by padding
    (2, 1, 20, 21, 2, (3, 3), (1, 1), (1, 1)),  # wide rows: numba's direct path with padding
    (2, 3, 9, 10, 9, (3, 3), (1, 1), (1, 1)),  # 9 filters, 27 taps: numba's register blocks + leftovers
    (2, 1, 10, 9, 6, (5, 5), (1, 1), (2, 2)),  # 6 = 4 + 2 leftover filters, as in LeNet's first layer
    (2, 2, 8, 9, 7, (3, 3), (1, 1), (1, 1)),  # 7 = 4 + 3 leftover filters
    (3, 4, 4, 4, 5, (4, 4), (1, 1), (0, 0)),  # one window per image (BASE's fully connected conv)
    (2, 3, 4, 5, 2, (4, 5), (2, 3), (0, 0)),  # one window per image, with strides that never move
    (3, 2, 9, 9, 3, (5, 5), (1, 1), (3, 3)),  # padding > kernel − 1: the input gradient by scatter
    (2, 8, 9, 10, 4, (3, 3), (1, 1), (1, 1)),  # 8 input channels, "same": numba's input gradient as a correlation
    (2, 9, 8, 11, 3, (5, 3), (1, 1), (2, 1)),  # the same, rectangular, 9 = 8 + 1 channels
    (2, 9, 8, 11, 6, (5, 3), (1, 1), (2, 0)),  # not "same": the scatter, 9 = 4 + 4 + 1 taps of a channel
    (2, 16, 10, 10, 5, (3, 3), (1, 1), (1, 1)),  # numba's direct kernels, 16 channels (3×3, stride 1)
    (2, 17, 11, 12, 6, (3, 3), (1, 1), (0, 0)),  # the same, odd output height, no padding
    (1, 16, 9, 10, 3, (3, 3), (1, 1), (2, 2)),  # the same, padding 2
    (2, 32, 10, 10, 40, (3, 3), (1, 1), (1, 1)),  # numba's Winograd path (F·C beyond the direct kernels')
    (1, 33, 9, 10, 36, (3, 3), (1, 1), (2, 2)),  # Winograd, odd output height, padding 2
]


def unfold_reference(x, kernel, stride, padding):
    return F.im2col(x, kernel, stride, padding).transpose(1, 2, 3, 0, 4, 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", CONV_CASES)
def test_numba_im2col_and_col2im_equal_the_reference(
    close, layouts, n, c, h, w, f, kernel, stride, padding, dtype, rng
):
    """The compiled unfolding of the numba backend's im2col + GEMM path (large convolutions)."""
    pytest.importorskip("numba")
    from numcnn import kernels

    fast = kernels.get_backend("numba")
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    expected = unfold_reference(x, kernel, stride, padding)
    for name, variant in layouts(x).items():
        np.testing.assert_array_equal(fast.im2col(variant, kernel, stride, padding), expected, err_msg=name)

    columns = rng.standard_normal(expected.shape).astype(dtype)
    folded = F.col2im(columns.transpose(3, 0, 1, 2, 4, 5), (h, w), stride, padding)  # (N, C, H, W)
    close(fast.col2im(columns, (h, w), stride, padding).transpose(1, 0, 2, 3), folded, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", CONV_CASES)
def test_conv2d_equals_the_reference(
    fast, reference, close, layouts, n, c, h, w, f, kernel, stride, padding, dtype, rng
):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, *kernel)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y_ref, cache_ref = reference.conv2d_forward(x, weight, bias, stride, padding)
    delta = rng.standard_normal(y_ref.shape).astype(dtype)
    grads_ref = reference.conv2d_backward(delta, cache_ref)
    for name, variant in layouts(x).items():
        y, cache = fast.conv2d_forward(variant, weight, bias, stride, padding)
        assert y.dtype == dtype, name
        close(y, y_ref, dtype)
        for delta_variant in layouts(delta).values():
            grad_x, grad_w, grad_b = fast.conv2d_backward(delta_variant, cache)
            close(grad_x, grads_ref[0], dtype)
            close(grad_w, grads_ref[1], dtype)
            close(grad_b, grads_ref[2], dtype)
    # Skipping the input gradient must not change the others.
    grad_x, grad_w, grad_b = fast.conv2d_backward(
        delta, fast.conv2d_forward(x, weight, None, stride, padding)[1], False
    )
    assert grad_x is None
    close(grad_w, grads_ref[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, f, kernel, stride, padding", CONV_CASES)
def test_conv2d_with_a_fused_relu_equals_conv_then_relu(
    fast, reference, close, n, c, h, w, f, kernel, stride, padding, dtype, rng
):
    """relu(conv(x)) in one pass on every path (direct, Winograd, im2col, one product), and its
    backward from δ of the ReLU's output: the reference's two layers one after the other."""
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, *kernel)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y_ref, conv_ref = reference.conv2d_forward(x, weight, bias, stride, padding)
    z_ref, relu_ref = reference.relu_forward(y_ref)
    delta = rng.standard_normal(z_ref.shape).astype(dtype)
    grads_ref = reference.conv2d_backward(reference.relu_backward(delta, relu_ref), conv_ref)
    z, cache = fast.conv2d_relu_forward(np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
                                        weight, bias, stride, padding)
    assert z.dtype == dtype
    close(z, z_ref, dtype)
    for ours, theirs in zip(fast.conv2d_backward(delta, cache), grads_ref):
        close(ours, theirs, dtype)


def test_numba_conv_with_a_fused_relu_gives_the_bits_of_the_two_kernels(rng):
    """Winograd's, the direct kernels', the lanes kernels' and im2col's fused ReLU: bit for bit conv, then
    the ReLU kernel."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    paths = {
        "WinogradConvCache": (300, (3, 3)),
        "DirectConvCache": (16, (3, 3)),
        "ColumnsConvCache": (2000, (2, 2)),  # F·C·KH·KW beyond the lanes kernels' limit
        "LanesConvCache": (80, (5, 5)),  # beyond the direct kernels', not 3×3
    }
    for path, (c, kernel) in [*paths.items(), ("DirectConvCache", (2, (5, 5)))]:
        x = rng.standard_normal((3, c, 10, 10)).astype(np.float32)
        weight = rng.standard_normal((5, c, *kernel)).astype(np.float32)
        bias = rng.standard_normal(5).astype(np.float32)
        y, conv_cache = backend.conv2d_forward(x, weight, bias, (1, 1), (1, 1))
        z, cache = backend.conv2d_relu_forward(x, weight, bias, (1, 1), (1, 1))
        assert type(cache.inner) is type(conv_cache)
        assert type(conv_cache).__name__ == path
        np.testing.assert_array_equal(z, backend.relu_forward(y)[0])


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "im2col"])
def test_numba_direct_and_im2col_paths_agree(direct, close, rng, monkeypatch):
    """The numba backend picks direct loops or im2col + GEMM by size; both must give the same numbers."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "direct_max_filters_times_rows", 10**9 if direct else 0)
    monkeypatch.setattr(backend, "lanes_max_filters_times_rows", 0)
    monkeypatch.setattr(backend, "direct_min_row_length", 0)
    x = rng.standard_normal((3, 2, 9, 10))
    weight, bias = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    y, cache = backend.conv2d_forward(x, weight, bias, (1, 1), (1, 1))
    y_ref, cache_ref = F.conv2d_forward(x, weight, bias, 1, 1)
    close(y, y_ref, np.float64)
    delta = rng.standard_normal(y.shape)
    for ours, theirs in zip(backend.conv2d_backward(delta, cache), F.conv2d_backward(delta, cache_ref)):
        close(ours, theirs, np.float64)


@pytest.mark.parametrize(
    "group_bytes, groups", [(1, 5), (2 * 8 * 11 * 12 * 8, 3), (2**30, 1)], ids=["one-image", "two-images", "all"]
)
def test_numba_direct_weight_gradient_over_groups_of_images(group_bytes, groups, close, rng, monkeypatch):
    """The direct weight gradient sums images in groups (one accumulator block per group): groups of
    one, of two (five images: the last group short) and the whole batch give the reference's numbers."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "direct_weight_grad_group_bytes", group_bytes)
    x = rng.standard_normal((5, 3, 9, 10))  # padded 11×12: 3 + 5 planes per image, 8 bytes each
    weight, bias = rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    y, cache = backend.conv2d_forward(x, weight, bias, (1, 1), (1, 1))
    assert type(cache).__name__ == "DirectConvCache"
    assert backend._weight_grad_groups(cache.shape, (3, 3), (1, 1), 5, 8) == groups
    y_ref, cache_ref = F.conv2d_forward(x, weight, bias, 1, 1)
    close(y, y_ref, np.float64)
    delta = rng.standard_normal(y.shape)
    for ours, theirs in zip(backend.conv2d_backward(delta, cache), F.conv2d_backward(delta, cache_ref)):
        close(ours, theirs, np.float64)


@pytest.mark.parametrize("filters, channels, kernel", [(6, 1, 5), (7, 2, 3), (5, 3, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_direct_weight_gradient_taps_first_gives_the_same_bits(
    filters, channels, kernel, dtype, close, rng, monkeypatch
):
    """The direct weight gradient with the taps as the dots' rows (chosen where that leaves fewer
    leftover rows, e.g. LeNet-5's first layer: 6 filters, 25 taps) sums every entry in the same
    order as with the filters as rows: the same bits, transposed; and both equal the reference."""
    pytest.importorskip("numba")
    from numcnn import kernels
    from numcnn.kernels import numba_conv
    from numcnn.kernels.numba_backend import plane_layout

    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "lanes_max_filters_times_rows", 0)
    x = rng.standard_normal((5, channels, 9, 10)).astype(dtype)
    weight = rng.standard_normal((filters, channels, kernel, kernel)).astype(dtype)
    y, cache = backend.conv2d_forward(x, weight, None, (1, 1), (1, 1))
    assert type(cache).__name__ == "DirectConvCache"
    delta = rng.standard_normal(y.shape).astype(dtype)
    flat, plane_c, plane_n = plane_layout(x)
    grad_flat, grad_plane_f, grad_plane_n = plane_layout(delta)
    taps = channels * kernel * kernel
    groups = backend._weight_grad_groups(cache.shape, (kernel, kernel), (1, 1), filters, x.itemsize)
    partials = {}
    for taps_first in (False, True):
        partial = np.full((groups, taps, filters) if taps_first else (groups, filters, taps), np.nan, dtype=dtype)
        numba_conv.conv_weight_grad_direct(
            flat, plane_c, plane_n, cache.shape, (kernel, kernel), (1, 1),
            grad_flat, grad_plane_f, grad_plane_n, partial, taps_first,
        )  # fmt: skip
        partials[taps_first] = partial
    np.testing.assert_array_equal(partials[True], partials[False].transpose(0, 2, 1))
    _, grad_weight, _ = backend.conv2d_backward(delta, cache, need_input_grad=False)
    np.testing.assert_array_equal(grad_weight, partials[False].sum(axis=0).reshape(weight.shape))
    _, cache_ref = F.conv2d_forward(x, weight, None, 1, 1)
    close(grad_weight, F.conv2d_backward(delta, cache_ref)[1], dtype)


@pytest.mark.parametrize("block_bytes", [1, 300, 2**19], ids=["image-blocks", "two-image-blocks", "one-block"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_cache_blocked_convolution_equals_the_reference(block_bytes, dtype, close, rng, monkeypatch):
    """Blocks of one image, of two, and the whole batch per thread: the same numbers, with stride and padding."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "direct_max_filters_times_rows", 0)
    monkeypatch.setattr(backend, "lanes_max_filters_times_rows", 0)
    monkeypatch.setattr(backend, "blocked_min_unfolding_bytes", 0)
    monkeypatch.setattr(backend, "unfold_block_bytes", block_bytes)
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    weight, bias = rng.standard_normal((4, 3, 3, 2)).astype(dtype), rng.standard_normal(4).astype(dtype)
    for stride, padding in [((1, 1), (1, 1)), ((2, 1), (0, 1))]:
        y, cache = backend.conv2d_forward(x, weight, bias, stride, padding)
        y_ref, cache_ref = F.conv2d_forward(x, weight, bias, stride, padding)
        close(y, y_ref, dtype)
        delta = rng.standard_normal(y.shape).astype(dtype)
        for ours, theirs in zip(backend.conv2d_backward(delta, cache), F.conv2d_backward(delta, cache_ref)):
            close(ours, theirs, dtype)
        assert backend.conv2d_backward(delta, cache, need_input_grad=False)[0] is None


POOL_CASES = [
    # (N, C, H, W, kernel, stride, padding)
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0)),  # LeNet: windows tile the input
    (1, 2, 7, 5, (2, 2), (2, 2), (0, 0)),  # batch 1, odd sizes: last row/column dropped
    (2, 2, 6, 6, (3, 3), (1, 1), (0, 0)),  # overlapping windows
    (2, 2, 7, 5, (3, 3), (2, 2), (1, 1)),  # overlapping + padding
    (2, 1, 6, 5, (3, 2), (2, 1), (1, 1)),  # rectangular
    (1, 1, 5, 5, (5, 5), (5, 5), (0, 0)),  # one window over everything
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True], ids=["max", "relu+max"])
@pytest.mark.parametrize("n, c, h, w, kernel, stride, padding", POOL_CASES)
def test_max_pool2d_equals_the_reference_with_ties(
    fast, reference, close, layouts, n, c, h, w, kernel, stride, padding, relu, dtype, rng
):
    """Values from {-2, ..., 2}: many ties and many non-positive windows, so the tie rule (first
    maximum in row-major order) and the fused ReLU's cut are both exercised -- and must match exactly."""
    x = rng.integers(-2, 3, size=(n, c, h, w)).astype(dtype)
    y_ref, cache_ref = reference.max_pool2d_forward(x, kernel, stride, padding, relu=relu)
    delta = rng.standard_normal(y_ref.shape).astype(dtype)
    grad_ref = reference.max_pool2d_backward(delta, cache_ref)
    for name, variant in layouts(x).items():
        y, cache = fast.max_pool2d_forward(variant, kernel, stride, padding, relu=relu)
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        for delta_variant in layouts(delta).values():
            # Exact routing; only the order of additions where overlapping windows share a pixel differs.
            close(fast.max_pool2d_backward(delta_variant, cache), grad_ref, dtype)


def test_max_pool_tie_goes_to_the_first_maximum_in_row_major_order(fast):
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[0, 0, 1, 1] = 5.0  # three equal maxima; (0, 1) comes first
    y, cache = fast.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    grad = fast.max_pool2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(grad[0, 0], [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, kernel, stride, padding", POOL_CASES)
def test_avg_pool2d_equals_the_reference(
    fast, reference, close, layouts, n, c, h, w, kernel, stride, padding, dtype, rng
):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y_ref, cache_ref = reference.avg_pool2d_forward(x, kernel, stride, padding)
    delta = rng.standard_normal(y_ref.shape).astype(dtype)
    grad_ref = reference.avg_pool2d_backward(delta, cache_ref)
    for variant in layouts(x).values():
        y, cache = fast.avg_pool2d_forward(variant, kernel, stride, padding)
        close(y, y_ref, dtype)
        close(fast.avg_pool2d_backward(delta, cache), grad_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_equals_the_reference(fast, reference, dtype, rng, layouts):
    x = rng.integers(-2, 3, size=(2, 3, 4, 5)).astype(dtype)  # exact zeros included: f'(0) = 0
    delta = rng.standard_normal(x.shape).astype(dtype)
    y_ref, mask = reference.relu_forward(x)
    for variant in layouts(x).values():
        y, cache = fast.relu_forward(variant)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(fast.relu_backward(delta, cache), reference.relu_backward(delta, mask))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_equals_the_reference(fast, reference, close, dtype, rng):
    x = rng.standard_normal((5, 7)).astype(dtype)
    weight, bias = rng.standard_normal((3, 7)).astype(dtype), rng.standard_normal(3).astype(dtype)
    close(fast.linear_forward(x, weight, bias), reference.linear_forward(x, weight, bias), dtype)
    delta = rng.standard_normal((5, 3)).astype(dtype)
    # x as it arrives flattened from a batch-last layer: (in, N) memory, which ∂E/∂x follows.
    batch_last_x = np.asfortranarray(x)
    for variant in (x, batch_last_x):
        expected = reference.linear_backward(delta, variant, weight)
        for ours, theirs in zip(fast.linear_backward(delta, variant, weight), expected):
            close(ours, theirs, dtype)


@pytest.mark.parametrize("relu", [False, True])
def test_max_pool_without_recording_gives_the_same_output_and_backward(fast, relu, rng):
    """Eval mode skips recording the maxima; a backward that follows anyway finds them again."""
    x = rng.integers(-2, 3, size=(2, 3, 7, 6)).astype(np.float64)
    y, cache = fast.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), relu=relu)
    y_eval, cache_eval = fast.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), relu=relu, record=False)
    np.testing.assert_array_equal(y_eval, y)
    delta = rng.standard_normal(y.shape)
    np.testing.assert_allclose(fast.max_pool2d_backward(delta, cache_eval), fast.max_pool2d_backward(delta, cache))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "pool_kernel, pool_stride, pool_padding",
    [
        ((2, 2), (2, 2), (0, 0)),  # LeNet's: the written-out 2×2 epilogue (a 9×8 output: odd last row dropped)
        ((2, 2), (1, 1), (0, 0)),  # overlapping 2×2 windows
        ((3, 3), (1, 1), (0, 0)),  # overlapping windows (padding-free: the vectorised epilogue)
        ((2, 3), (2, 1), (0, 0)),
        ((3, 3), (2, 2), (1, 1)),  # padding: the scalar epilogue
        ((3, 2), (1, 2), (0, 1)),
    ],
)
@pytest.mark.parametrize("width", [8, 21])  # 2×2 pooling 4 wide (float32: scalar), 10 (a vector and an overlap)
def test_numba_conv_relu_pool_in_one_pass_equals_the_three_layers(
    reference, close, pool_kernel, pool_stride, pool_padding, width, dtype, rng
):
    """Integer inputs and weights: the convolution's outputs tie often, so the fused kernel's tie
    rule and ReLU cut are checked exactly, and backward through its caches equals the reference."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    x = rng.integers(-1, 2, size=(2, 2, 9, width)).astype(dtype)
    weight = rng.integers(-1, 2, size=(5, 2, 3, 3)).astype(dtype)
    bias = rng.integers(-1, 2, size=5).astype(dtype)
    fused = backend.conv2d_max_pool2d_forward(x, weight, bias, (1, 1), (1, 1), pool_kernel, pool_stride, pool_padding)
    assert fused is not None
    y, conv_cache, pool_cache = fused
    conv_y, conv_ref = reference.conv2d_forward(x, weight, bias, (1, 1), (1, 1))
    y_ref, pool_ref = reference.max_pool2d_forward(conv_y, pool_kernel, pool_stride, pool_padding, relu=True)
    np.testing.assert_array_equal(y, y_ref)
    delta = rng.standard_normal(y.shape).astype(dtype)
    grad_conv = backend.max_pool2d_backward(delta, pool_cache)
    close(grad_conv, reference.max_pool2d_backward(delta, pool_ref), dtype)
    for ours, theirs in zip(
        backend.conv2d_backward(grad_conv, conv_cache), reference.conv2d_backward(grad_conv, conv_ref)
    ):
        close(ours, theirs, dtype)
    # Inference does not record the maxima; a backward that follows anyway recomputes them.
    y_eval, _, pool_eval = backend.conv2d_max_pool2d_forward(
        x, weight, bias, (1, 1), (1, 1), pool_kernel, pool_stride, pool_padding, record=False
    )
    np.testing.assert_array_equal(y_eval, y_ref)
    close(backend.max_pool2d_backward(delta, pool_eval), grad_conv, dtype)


BATCH_NORM_SHAPES = [(4, 3, 5, 6), (1, 2, 3, 3), (7, 5, 1, 1)]


@pytest.mark.parametrize("relu", [False, True], ids=["alone", "fused-relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCH_NORM_SHAPES)
def test_batch_norm_training_equals_the_reference(fast, reference, close, dtype, shape, relu, rng, layouts):
    """Training forward and backward; with ``relu``, relu(BN(x)) in one pass and its backward from δ of
    the ReLU's output, against the reference's two layers one after the other (half the outputs cut
    by the ReLU, so the mask matters)."""
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    weight, bias = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    delta = rng.standard_normal(shape).astype(dtype)
    y_ref, cache_ref, mean_ref, var_ref, count_ref = reference.batch_norm_train_forward(x, weight, bias, 1e-5)
    delta_ref = delta
    if relu:
        y_ref, relu_ref = reference.relu_forward(y_ref)
        assert 0 < np.count_nonzero(y_ref) < y_ref.size
        delta_ref = reference.relu_backward(delta, relu_ref)
    grads_ref = reference.batch_norm_backward(delta_ref, cache_ref)
    forward = fast.batch_norm_relu_train_forward if relu else fast.batch_norm_train_forward
    for variant in layouts(x).values():
        y, cache, mean, var, count = forward(variant, weight, bias, 1e-5)
        assert count == count_ref and mean.dtype == dtype and var.dtype == dtype
        for ours, theirs in zip((y, mean, var), (y_ref, mean_ref, var_ref)):
            close(ours, theirs, dtype)
        for delta_variant in layouts(delta).values():
            for ours, theirs in zip(fast.batch_norm_backward(delta_variant, cache), grads_ref):
                close(ours, theirs, dtype)
        grad_input, grad_weight, grad_bias = fast.batch_norm_backward(delta, cache, need_input_grad=False)
        assert grad_input is None
        close(grad_weight, grads_ref[1], dtype)
        close(grad_bias, grads_ref[2], dtype)


def test_numba_batch_norm_with_a_fused_relu_gives_the_bits_of_the_two_kernels(rng):
    """The fused pass stores max(y, 0) of the same y, and masks δ where that is zero: bit for bit
    the numba batch norm followed by the numba ReLU."""
    pytest.importorskip("numba")
    from numcnn import kernels

    backend = kernels.get_backend("numba")
    x = rng.standard_normal((6, 5, 7, 9)).astype(np.float32)
    weight, bias = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    delta = rng.standard_normal(x.shape).astype(np.float32)
    y, norm_cache, *_ = backend.batch_norm_train_forward(x, weight, bias, 1e-5)
    z_two, relu_cache = backend.relu_forward(y)
    grads_two = backend.batch_norm_backward(backend.relu_backward(delta, relu_cache), norm_cache)
    z, cache, *_ = backend.batch_norm_relu_train_forward(x, weight, bias, 1e-5)
    np.testing.assert_array_equal(z, z_two)
    for ours, theirs in zip(backend.batch_norm_backward(delta, cache), grads_two):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_evaluation_equals_the_reference(fast, reference, close, dtype, rng, layouts):
    x = rng.standard_normal((3, 4, 5, 5)).astype(dtype)
    weight, bias = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    running_mean, running_var = rng.standard_normal(4).astype(dtype), (rng.random(4) + 0.5).astype(dtype)
    delta = rng.standard_normal(x.shape).astype(dtype)
    y_ref, cache_ref = reference.batch_norm_eval_forward(x, weight, bias, running_mean, running_var, 1e-5)
    grads_ref = reference.batch_norm_backward(delta, cache_ref)
    for variant in layouts(x).values():
        y, cache = fast.batch_norm_eval_forward(variant, weight, bias, running_mean, running_var, 1e-5)
        close(y, y_ref, dtype)
        for ours, theirs in zip(fast.batch_norm_backward(delta, cache), grads_ref):
            close(ours, theirs, dtype)


def test_batch_norm_keeps_a_nan(fast):
    """A diverged batch must stay NaN through BN (numcnn.train stops on a NaN loss)."""
    x = np.ones((2, 1, 2, 2))
    x[0, 0, 0, 0] = np.nan
    y = fast.batch_norm_train_forward(x, np.ones(1), np.zeros(1), 1e-5)[0]
    assert np.isnan(y).all()


def test_fused_relus_keep_a_nan(fast):
    """Conv2d → ReLU and BatchNorm2d → ReLU in one pass: a NaN stays NaN, as through the ReLU alone."""
    x = np.ones((2, 16, 8, 8))
    x[0, 0, 3, 3] = np.nan
    for c, kernel in ((16, (3, 3)), (16, (1, 1)), (1, (3, 3))):  # direct (correlation), a product, direct
        z, _ = fast.conv2d_relu_forward(x[:, :c], np.ones((2, c, *kernel)), None, (1, 1), (1, 1))
        assert np.isnan(z[0]).any() and not np.isnan(z[1]).any()
    z = fast.batch_norm_relu_train_forward(x, np.ones(16), np.zeros(16), 1e-5)[0]
    assert np.isnan(z[:, 0]).all()


def test_relu_keeps_a_nan(fast, reference):
    x = np.array([np.nan, -1.0, 0.0, 2.0]).reshape(1, 1, 2, 2)
    y, _ = fast.relu_forward(x)
    np.testing.assert_array_equal(y, reference.relu_forward(x)[0])


def test_batch_norm_with_the_wrong_channel_count_is_a_shape_error(fast):
    from numcnn.errors import ShapeError

    x = np.ones((2, 3, 4, 4))
    with pytest.raises(ShapeError, match="expects input"):
        fast.batch_norm_train_forward(x, np.ones(2), np.zeros(2), 1e-5)
    with pytest.raises(ShapeError, match="expects input"):
        fast.batch_norm_eval_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 37, 4099])
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 5e-4), (0.9, 5e-4)])
def test_sgd_update_equals_the_reference_bit_for_bit(fast, reference, size, momentum, weight_decay, dtype, rng):
    """The optimiser's update: the same roundings in the same order, so the same bits (a fused
    multiply-add anywhere would change the last bit of about a third of the values)."""
    param, grad, velocity = (rng.standard_normal((size,)).astype(dtype) for _ in range(3))
    ours = [param.copy(), velocity.copy()]
    theirs = [param.copy(), velocity.copy()]
    use_velocity = momentum > 0
    fast.sgd_update(ours[0], grad, ours[1] if use_velocity else None, 0.01, momentum, weight_decay)
    reference.sgd_update(theirs[0], grad, theirs[1] if use_velocity else None, 0.01, momentum, weight_decay)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert not np.array_equal(ours[0], param)  # it moved
    if use_velocity:
        assert not np.array_equal(ours[1], velocity)


def test_sgd_update_of_strided_and_mixed_arrays_equals_the_reference(fast, reference, rng):
    """Arrays the compiled update does not take (a strided view, float32 gradients of float64
    parameters) take NumPy's path: the same result."""
    param = rng.standard_normal((6, 8))
    grad = rng.standard_normal((6, 16)).astype(np.float32)[:, ::2]
    velocity = rng.standard_normal((6, 8))
    ours, theirs = (param.copy(), velocity.copy()), (param.copy(), velocity.copy())
    fast.sgd_update(ours[0], grad, ours[1], 0.1, 0.9, 1e-3)
    reference.sgd_update(theirs[0], grad, theirs[1], 0.1, 0.9, 1e-3)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
