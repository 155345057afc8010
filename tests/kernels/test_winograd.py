"""Winograd F(2×2, 3×3) in the numba backend: the same convolution, forward and both gradients.

Independent references: the readable reference backend (seed 004 eqs. 15.25, 15.38, 15.49) in
float64, to rounding; and the algebra of the transforms themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numcnn import kernels
from numcnn.kernels import numba_winograd
from numcnn.kernels.simd import lanes_for

SHAPES = [
    # (N, C, H, W, F, padding)
    (3, 5, 9, 11, 7, (1, 1)),  # odd output width, filters and channels not multiples of 4
    (2, 4, 8, 8, 4, (0, 0)),  # even output (6×6), no padding
    (2, 3, 7, 6, 6, (2, 2)),  # padding 2: odd output height
    (1, 1, 3, 3, 1, (0, 0)),  # one output pixel
    (5, 2, 5, 4, 3, (1, 0)),  # rectangular padding, 5 images in groups of 2 or 3
    (2, 17, 6, 19, 12, (1, 1)),  # whole lanes × lanes blocks of the layout transposes, and leftovers
]


@pytest.fixture
def winograd(monkeypatch):
    """The numba backend with Winograd for every 3×3 stride-1 convolution, however small."""
    backend = kernels.get_backend("numba")
    monkeypatch.setattr(backend, "winograd_min_channels", 1)
    monkeypatch.setattr(backend, "winograd_min_output", 1)
    monkeypatch.setattr(backend, "winograd_max_products", 10**9)
    monkeypatch.setattr(backend, "direct_max_filters_times_rows", 0)  # the direct kernels would take small layers
    return backend


# (images per group of the backward pass, tiles per band)
SPLITS = {"default": (8, 48), "one-tile": (2, 1), "odd-groups": (3, 7)}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("n, c, h, w, f, padding", SHAPES)
def test_winograd_equals_the_reference(winograd, monkeypatch, n, c, h, w, f, padding, split, dtype, rtol, rng):
    """Groups of 1–8 images, bands of one tile or several: the same numbers as eqs. 15.25–15.49."""
    monkeypatch.setattr(winograd, "winograd_images_per_group", split[0])
    monkeypatch.setattr(winograd, "winograd_band_tiles", split[1])
    reference = kernels.get_backend("reference")
    x = rng.standard_normal((n, c, h, w))
    weight, bias = rng.standard_normal((f, c, 3, 3)), rng.standard_normal(f)
    y_ref, cache_ref = reference.conv2d_forward(x, weight, bias, (1, 1), padding)
    delta = rng.standard_normal(y_ref.shape)
    expected = [y_ref, *reference.conv2d_backward(delta, cache_ref)]

    y, cache = winograd.conv2d_forward(x.astype(dtype), weight.astype(dtype), bias.astype(dtype), (1, 1), padding)
    assert isinstance(cache, numba_winograd_cache())
    ours = [y, *winograd.conv2d_backward(delta.astype(dtype), cache)]
    for got, want, name in zip(ours, expected, ["y", "∂E/∂x", "∂E/∂W", "∂E/∂b"]):
        assert got.dtype == dtype, name
        # Relative to the largest entry: Winograd's error is that of its transformed sums.
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale, err_msg=name)
    grad_x, grad_w, _ = winograd.conv2d_backward(delta.astype(dtype), cache, need_input_grad=False)
    assert grad_x is None
    np.testing.assert_array_equal(grad_w, ours[2])


POOLED_SHAPES = [
    # (N, C, H, W, F, padding): convolution outputs 9×8 (odd rows: the last is not pooled), 6×6, 7×7
    (3, 5, 9, 8, 7, (1, 1)),
    (2, 4, 8, 8, 4, (0, 0)),
    (9, 3, 9, 9, 5, (0, 0)),  # 9 images: a group of 8 and a group of 1
]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, c, h, w, f, padding", POOLED_SHAPES)
def test_winograd_conv_relu_pool_in_its_output_transform(
    winograd, monkeypatch, n, c, h, w, f, padding, split, dtype, rng
):
    """Conv2d → ReLU → 2×2 stride-2 MaxPool2d with the pooling in Winograd's output transform.

    Small integers: every transformed product is exact (the transforms hold only 0, ±1, ±½), so
    outputs tie often and the tie rule (first maximum, row-major) and the ReLU's cut are checked
    exactly against the reference's three layers, then backward through the returned caches.
    """
    monkeypatch.setattr(winograd, "winograd_images_per_group", split[0])
    monkeypatch.setattr(winograd, "winograd_band_tiles", split[1])
    reference = kernels.get_backend("reference")
    x = rng.integers(-1, 2, size=(n, c, h, w)).astype(dtype)
    weight = rng.integers(-1, 2, size=(f, c, 3, 3)).astype(dtype)
    bias = rng.integers(-1, 2, size=f).astype(dtype)
    conv_y, conv_ref = reference.conv2d_forward(x, weight, bias, (1, 1), padding)
    y_ref, pool_ref = reference.max_pool2d_forward(conv_y, (2, 2), (2, 2), (0, 0), relu=True)

    fused = winograd.conv2d_max_pool2d_forward(x, weight, bias, (1, 1), padding, (2, 2), (2, 2), (0, 0))
    assert fused is not None
    y, conv_cache, pool_cache = fused
    assert isinstance(conv_cache, numba_winograd_cache())
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    delta = rng.standard_normal(y.shape).astype(dtype)
    grad_conv = winograd.max_pool2d_backward(delta, pool_cache)
    np.testing.assert_array_equal(grad_conv, reference.max_pool2d_backward(delta, pool_ref))
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    grads = zip(winograd.conv2d_backward(grad_conv, conv_cache), reference.conv2d_backward(grad_conv, conv_ref))
    for ours, theirs in grads:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance * np.abs(theirs).max())
    # Inference records no maxima; a backward pass that follows anyway finds them again.
    y_eval, _, pool_eval = winograd.conv2d_max_pool2d_forward(
        x, weight, bias, (1, 1), padding, (2, 2), (2, 2), (0, 0), record=False
    )
    np.testing.assert_array_equal(y_eval, y_ref)
    np.testing.assert_array_equal(winograd.max_pool2d_backward(delta, pool_eval), grad_conv)


def test_an_unrecorded_pooled_pass_by_winograd_allows_a_backward_pass_after_all(rng):
    """SK's fourth convolution (50→50) in eval mode: Conv2d → ReLU → 2×2 max pooling by Winograd
    without recording the maxima, the reference's numbers; a backward pass that follows anyway is exact."""
    backend = kernels.get_backend("numba")
    reference = kernels.get_backend("reference")
    x = rng.standard_normal((3, 50, 10, 10))
    weight, bias = rng.standard_normal((50, 50, 3, 3)) * 0.1, rng.standard_normal(50)
    y, conv_cache, pool_cache = backend.conv2d_max_pool2d_forward(
        x, weight, bias, (1, 1), (0, 0), (2, 2), (2, 2), (0, 0), record=False
    )
    assert isinstance(conv_cache, numba_winograd_cache())
    conv_y, conv_ref = reference.conv2d_forward(x, weight, bias, (1, 1), (0, 0))
    y_ref, pool_ref = reference.max_pool2d_forward(conv_y, (2, 2), (2, 2), (0, 0), relu=True)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12 * np.abs(y_ref).max())
    delta = rng.standard_normal(y.shape)
    grad_conv = backend.max_pool2d_backward(delta, pool_cache)
    np.testing.assert_array_equal(grad_conv, reference.max_pool2d_backward(delta, pool_ref))
    grads = zip(backend.conv2d_backward(grad_conv, conv_cache), reference.conv2d_backward(grad_conv, conv_ref))
    for ours, theirs in grads:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())
    # Training (recording) takes the same path, with the same outputs.
    y_train, conv_train, _ = backend.conv2d_max_pool2d_forward(x, weight, bias, (1, 1), (0, 0), (2, 2), (2, 2), (0, 0))
    assert isinstance(conv_train, numba_winograd_cache())
    np.testing.assert_array_equal(y_train, y)


def test_winograd_declines_other_pooling_in_one_pass(winograd, rng):
    """Only 2×2 stride-2 windows are output tiles; other pooling runs after the convolution."""
    x = rng.standard_normal((2, 4, 8, 8))
    weight = rng.standard_normal((3, 4, 3, 3))
    assert winograd.conv2d_max_pool2d_forward(x, weight, None, (1, 1), (1, 1), (3, 3), (2, 2), (0, 0)) is None
    assert winograd.conv2d_max_pool2d_forward(x, weight, None, (1, 1), (1, 1), (2, 2), (1, 1), (0, 0)) is None


def numba_winograd_cache():
    from numcnn.kernels.numba_backend import WinogradConvCache

    return WinogradConvCache


def test_weight_gradient_transform_is_the_adjoint_of_the_weight_transform(rng):
    """⟨U(g), H⟩ = ⟨g, Gᵀ H G⟩: what makes ∂E/∂g = Gᵀ (∂E/∂U) G the chain rule of U = G g Gᵀ."""
    g = rng.standard_normal((3, 2, 3, 3))
    h = rng.standard_normal((16, 3, 2))
    lhs = np.sum(numba_winograd.weight_transform(g) * h)
    rhs = np.sum(g * numba_winograd.weight_grad_transform(h))
    assert lhs == pytest.approx(rhs, rel=1e-13)


def test_one_tile_is_lavins_formula(rng):
    """One 4×4 patch and one kernel: Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A equals the 2×2 correlation."""
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    B_T, G, A_T = numba_winograd.B_T, numba_winograd.G, numba_winograd.A_T
    y = A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T
    direct = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=1e-13)


def test_the_numba_backend_picks_winograd_only_where_it_was_measured_to_win():
    backend = kernels.get_backend("numba")
    assert backend.use_winograd((50, 50, 3, 3), (1, 1), (8, 8))  # SK's fourth convolution
    assert backend.use_winograd((40, 40, 3, 3), (1, 1), (24, 24))  # SK-2's second
    assert backend.use_winograd((100, 100, 3, 3), (1, 1), (8, 8))  # SK-2's fourth
    assert not backend.use_winograd((128, 128, 3, 3), (1, 1), (8, 8))  # F·C too large: im2col + GEMM
    # The register-blocked direct kernels take the smaller layers.
    for shape, out_size in [((16, 16, 3, 3), (28, 28)), ((20, 20, 3, 3), (24, 24)), ((50, 20, 3, 3), (10, 10))]:
        assert backend.use_direct(shape, (1, 1), out_size[1])
        assert not backend.use_winograd(shape, (1, 1), out_size)
    assert not backend.use_winograd((20, 1, 3, 3), (1, 1), (26, 26))  # one input channel: direct
    assert not backend.use_winograd((64, 64, 3, 3), (1, 1), (7, 7))  # planes smaller than 8×8
    assert not backend.use_winograd((64, 64, 3, 3), (2, 2), (14, 14))  # stride 2
    assert not backend.use_winograd((64, 64, 5, 5), (1, 1), (28, 28))  # not 3×3


def test_winograd_gives_the_same_bits_on_any_thread_count(winograd, rng):
    """Tasks are groups of images fixed by the shape, partial weight gradients summed in group order."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    x = rng.standard_normal((11, 8, 13, 12)).astype(np.float32)
    weight = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    delta = rng.standard_normal((11, 6, 13, 12)).astype(np.float32)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, cache = winograd.conv2d_forward(x, weight, None, (1, 1), (1, 1))
            results.append([y, *winograd.conv2d_backward(delta, cache)])
    finally:
        numba.set_num_threads(previous)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


LANES_SHAPES = [
    # (N, C, H, W, F, padding): filters a pair of vectors and a single one (float32: 8 lanes), or fewer
    (3, 17, 12, 9, 21, (1, 1)),
    (2, 40, 14, 14, 40, (0, 0)),
    (4, 3, 7, 16, 5, (2, 1)),
]


@pytest.mark.parametrize("band_tiles", [1, 5, 48])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, c, h, w, f, padding", LANES_SHAPES)
def test_the_lanes_forward_pass_pools_and_rectifies_its_own_outputs(n, c, h, w, f, padding, dtype, band_tiles, rng):
    """numba_winograd_lanes: against the reference, and the fused epilogues bit for bit against the
    unfused pass followed by the ReLU and the pooling kernels, in bands of any size."""
    from numcnn.kernels import numba_winograd_lanes
    from numcnn.kernels.numba_backend import plane_layout

    backend = kernels.get_backend("numba")
    lanes = lanes_for(dtype)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight, bias = rng.standard_normal((f, c, 3, 3)).astype(dtype), rng.standard_normal(f).astype(dtype)
    out_size = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2)
    u = numba_winograd_lanes.lanes_weight_transform(numba_winograd.weight_transform(weight), lanes)
    bias_padded = np.zeros(u.shape[1] // c, dtype=dtype)
    bias_padded[:f] = bias
    band_rows = numba_winograd_lanes.band_rows_for(out_size, band_tiles)
    flat, plane_c, plane_n = plane_layout(x)

    def forward(epilogue, out_shape, argmax):
        y = np.empty(out_shape, dtype=dtype)
        numba_winograd_lanes.winograd_forward_lanes(
            flat, plane_c, plane_n, (c, n, h, w), padding, out_size, u, bias_padded, band_rows, epilogue,
            y.reshape(-1), argmax.reshape(-1),
        )  # fmt: skip
        return y

    unused = np.empty(1, dtype=np.int32)
    y = forward(numba_winograd_lanes.EPILOGUE_NONE, (f, n, *out_size), unused).transpose(1, 0, 2, 3)
    rectified = forward(numba_winograd_lanes.EPILOGUE_RELU, (f, n, *out_size), unused).transpose(1, 0, 2, 3)
    y_ref, _ = kernels.get_backend("reference").conv2d_forward(
        x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64), (1, 1), padding
    )
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tolerance * np.abs(y_ref).max())
    np.testing.assert_array_equal(rectified, np.maximum(y, 0))
    pooled_ref, pool_cache = backend.max_pool2d_forward(np.ascontiguousarray(y), (2, 2), (2, 2), (0, 0), relu=True)
    pooled_size = (out_size[0] // 2, out_size[1] // 2)
    for record in (True, False):
        argmax = np.empty((f, n, *pooled_size) if record else (1,), dtype=np.int32)
        epilogue = numba_winograd_lanes.EPILOGUE_POOL_RECORD if record else numba_winograd_lanes.EPILOGUE_POOL
        pooled = forward(epilogue, (f, n, *pooled_size), argmax)
        np.testing.assert_array_equal(pooled.transpose(1, 0, 2, 3), pooled_ref)
        if record:
            np.testing.assert_array_equal(argmax, pool_cache.plane_index)  # both channel-major


def test_winograd_same_bits_on_one_thread_and_on_two(winograd, rng):
    """Images and groups of images are split among the threads, never a sum: 1 or 2 threads, the same bits."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread only")
    x = rng.standard_normal((11, 18, 12, 10)).astype(np.float32)  # 11 images: groups of 8 and 3
    weight = rng.standard_normal((21, 18, 3, 3)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, cache = winograd.conv2d_forward(x, weight, None, (1, 1), (1, 1))
            assert isinstance(cache, numba_winograd_cache())
            results.append((y, *winograd.conv2d_backward(np.cos(y), cache)))
    finally:
        numba.set_num_threads(before)
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("width", [7, 14, 15, 16, 17, 26, 28, 33])
@pytest.mark.parametrize("pad_w", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_split_image_holds_each_padded_column_once(width, pad_w, dtype, rng):
    """The forward pass's even/odd split of a padded image (vector loads where ``2·lanes`` columns
    fit inside the row, one by one at the edges) is the padded image's columns ``j`` at ``[j % 2,
    j // 2]``, zeros elsewhere: built here with NumPy slicing. Widths below, at and beyond one and
    two vector spans, so that both edge loops and the right-flush span run."""
    from numcnn.kernels import numba_winograd_lanes as wl

    channels, batch, height, pad_h = 3, 2, 5, 1
    lanes = lanes_for(dtype)
    x = rng.standard_normal((channels, batch, height, width)).astype(dtype)
    out_w = width + 2 * pad_w - 2
    slots = -(-((out_w + 1) // 2) // lanes) * lanes
    rows = 2 * ((height + 2 * pad_h - 1) // 2) + 2
    n = 1
    split = np.zeros(channels * rows * 2 * (slots + 1), dtype=dtype)
    wl._load_split(x.reshape(-1), n * height * width, batch * height * width, x.shape, (pad_h, pad_w), slots, split)
    expected = np.zeros((channels, rows, 2, slots + 1), dtype=dtype)
    padded = np.zeros((channels, rows, 2 * (slots + 1)), dtype=dtype)
    padded[:, pad_h : pad_h + height, pad_w : pad_w + width] = x[:, n]
    expected[:, :, 0, :] = padded[:, :, 0::2]
    expected[:, :, 1, :] = padded[:, :, 1::2]
    np.testing.assert_array_equal(split.reshape(expected.shape), expected)


@pytest.mark.parametrize("channels, width", [(3, 5), (8, 8), (17, 19), (16, 28)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_layout_transposes_move_every_element(channels, width, dtype, rng):
    """The transposes between channel-major planes and the channels-last padded images of the
    backward pass (whole ``lanes × lanes`` blocks through registers, leftovers one by one), and the
    forward pass's store of ``(positions, F')`` outputs into channel-major planes (with its ReLU):
    against NumPy's transposes, bit for bit."""
    from numcnn.kernels import numba_lanes

    batch, height, n, offset = 3, 4, 1, (1, 2)
    lanes = lanes_for(dtype)
    padded_c = -(-channels // lanes) * lanes
    padded_size = (height + 3, width + 5)
    x = rng.standard_normal((channels, batch, height, width)).astype(dtype)
    out = np.zeros(padded_size[0] * padded_size[1] * padded_c, dtype=dtype)
    plane_c = batch * height * width
    image = n * height * width
    numba_lanes.channels_last(x.reshape(-1), image, plane_c, channels, (height, width), offset, padded_size, out)
    expected = np.zeros((*padded_size, padded_c), dtype=dtype)
    expected[offset[0] : offset[0] + height, offset[1] : offset[1] + width, :channels] = x[:, n].transpose(1, 2, 0)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)

    grad_input = np.full(x.shape, np.nan, dtype=dtype)
    numba_lanes.channels_first(out, padded_c, padded_size, offset, n, x.shape, False, grad_input.reshape(-1))
    np.testing.assert_array_equal(grad_input[:, n], x[:, n])
    assert np.isnan(np.delete(grad_input, n, axis=1)).all()  # other images untouched

    count = height * width
    acc = rng.standard_normal((count, padded_c)).astype(dtype)
    acc[0, 0], acc[1, 0] = -0.0, np.nan
    for relu in (False, True):
        stored = np.full((channels, batch, count), np.inf, dtype=dtype)
        numba_lanes.store_image(acc.reshape(-1), padded_c, n, batch, count, relu, stored.reshape(-1))
        values = acc[:, :channels].T
        if relu:
            values = np.where(values < 0, dtype(0), values)  # numba's max(y, 0): NaN and −0 kept
        np.testing.assert_array_equal(stored[:, n], values)
        assert np.signbit(stored[0, n, 0]) and np.isnan(stored[0, n, 1])
        assert np.isinf(np.delete(stored, n, axis=1)).all()


@pytest.mark.parametrize("forward_path", ["direct", "lanes"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_direct_and_lanes_convolutions_take_winograds_backward_where_it_wins(
    forward_path, dtype, rtol, rng, monkeypatch
):
    """A 3×3 stride-1 layer with 16+ channels and filters whose forward pass the direct or lanes
    kernels run gets its gradients from Winograd's backward pass (U computed again from the
    weight): the reference's gradients, and those of the path's own backward pass."""
    backend = kernels.get_backend("numba")
    if forward_path == "lanes":
        monkeypatch.setattr(backend, "direct_max_filters_times_rows", 0)
        monkeypatch.setattr(backend, "winograd_min_channels", 10**9)  # the forward pass not by Winograd
    x = rng.standard_normal((3, 16, 10, 9)).astype(dtype)
    weight = (rng.standard_normal((17, 16, 3, 3)) * 0.3).astype(dtype)
    y, cache = backend.conv2d_forward(x, weight, None, (1, 1), (1, 1))
    assert type(cache).__name__ == {"direct": "DirectConvCache", "lanes": "LanesConvCache"}[forward_path]
    delta = rng.standard_normal(y.shape).astype(dtype)
    calls = []
    original = backend._winograd_conv2d_backward
    monkeypatch.setattr(backend, "_winograd_conv2d_backward", lambda *args: calls.append(1) or original(*args))
    grad_input, grad_weight, _ = backend.conv2d_backward(delta, cache)
    assert calls == [1]
    reference = kernels.get_backend("reference")
    _, cache_ref = reference.conv2d_forward(x.astype(np.float64), weight.astype(np.float64), None, (1, 1), (1, 1))
    ref_input, ref_weight, _ = reference.conv2d_backward(delta.astype(np.float64), cache_ref)
    np.testing.assert_allclose(grad_input, ref_input, rtol=rtol, atol=rtol * np.abs(ref_input).max())
    np.testing.assert_allclose(grad_weight, ref_weight, rtol=rtol, atol=rtol * np.abs(ref_weight).max())
    monkeypatch.setattr(backend, "winograd_backward_min_channels", 10**9)  # the path's own backward
    own_input, own_weight, _ = backend.conv2d_backward(delta, cache)
    assert calls == [1]
    np.testing.assert_allclose(grad_input, own_input, rtol=rtol, atol=rtol * np.abs(ref_input).max())
    np.testing.assert_allclose(grad_weight, own_weight, rtol=rtol, atol=rtol * np.abs(ref_weight).max())
