"""The ``"numba"`` backend: the ``"numpy"`` backend with its convolutions, pooling, ReLU and batch norm compiled.

Its compiled kernels keep channel-major ``(C, N, H, W)`` memory (each image's planes together, for
per-image tasks; compiled loops do not pay NumPy's per-run cost that made the numpy backend go
batch-last). What it inherits from :class:`~numcnn.kernels.numpy_backend.NumpyBackend` (linear
layers, average pooling, and anything not 4-D) accepts any layout.

* strided convolutions and those on small planes (LeNet's second, BASE's second, ``resnet_mnist``'s
  14×14 and 7×7 stages) run with the filters in the vector lanes (:mod:`numcnn.kernels.numba_lanes`):
  positions are a list of offsets, so no position is computed twice and any stride is only
  another list (:meth:`NumbaBackend.use_lanes` says which);
* other stride-1 convolutions up to F·C·KH·KW = 9,216 (LeNet's first, the 16–20-channel 3×3 layers of
  SK and ``resnet_mnist``) run as direct loops over the padded image
  (:mod:`numcnn.kernels.numba_conv`): no im2col matrix at all, every thread on its own images, the
  sums register-blocked (:mod:`numcnn.kernels.numba_blocked`); from 8 input channels their input
  gradient is a forward correlation of δ;
* larger 3×3 stride-1 ones, up to F·C = 10,000, run by Winograd F(2×2, 3×3)
  (:mod:`numcnn.kernels.numba_winograd_lanes`): 2.25× fewer multiplications, forward and both
  gradients, a band of tiles of one image at a time (the transformed tiles stay in the cache) with
  the filters or channels in the vector lanes; its backward pass also serves the direct and lanes
  kernels' 3×3 stride-1 layers from 16 channels and filters (:meth:`NumbaBackend.use_winograd_backward`);
* the rest keep im2col + GEMM, where NumPy needs several passes around the product (pad, then
  copy windows; one strided add per kernel offset in col2im) and a compiled loop one; the products
  run in bands on both cores (:mod:`numcnn.kernels.gemm`), and a huge unfolding is made a few
  images at a time instead (cache-blocked);
* 1×1 convolutions and those with one window per image are a plain product (no unfolding);
* max pooling, with the ReLU fused in, reads every input pixel once and records the flat index
  of each window's first maximum, so the backward pass is a single scatter (2×2 stride 2 written out);
* batch norm and ReLU are one compiled pass per channel or plane (:mod:`numcnn.kernels.numba_norm`).

The kernels are in :mod:`numcnn.kernels.numba_conv` (direct convolutions), :mod:`numcnn.kernels.numba_lanes`,
:mod:`numcnn.kernels.numba_winograd_lanes` (with the transforms of :mod:`numcnn.kernels.numba_winograd`),
:mod:`numcnn.kernels.numba_blocked` (the register-blocked loops the direct kernels spend their
time in; :mod:`numcnn.kernels.simd` gives numba the vector value they need),
:mod:`numcnn.kernels.numba_kernels` (im2col, col2im, pooling, ReLU) and
:mod:`numcnn.kernels.numba_norm`; importing this module imports numba. When first used it gives
OpenBLAS one thread unless the user chose a count (:func:`numcnn.kernels.threads.apply_numba_default`):
the two thread pools must not fight over the cores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from numcnn.functional.im2col import conv_output_size_2d
from numcnn.kernels import (
    gemm,
    numba_blocked,
    numba_conv,
    numba_kernels,
    numba_lanes,
    numba_norm,
    numba_winograd,
    numba_winograd_lanes,
    threads,
)
from numcnn.kernels.common import PoolWindow, check_conv_input, ones_vector
from numcnn.kernels.numpy_backend import NumpyBackend
from numcnn.kernels.reference import FusedReluCache
from numcnn.kernels.simd import lanes_for

__all__ = [
    "NumbaBackend",
    "BatchNormPlaneCache",
    "BlockedConvCache",
    "ColumnsConvCache",
    "DirectConvCache",
    "LanesConvCache",
    "PlaneMaxPoolCache",
    "WinogradConvCache",
    "plane_layout",
]


def as_nchw(cm: np.ndarray) -> np.ndarray:
    """``(C, N, H, W)`` channel-major memory → the public ``(N, C, H, W)`` view (no copy)."""
    return cm.transpose(1, 0, 2, 3)


class ColumnsConvCache(NamedTuple):
    """For convolutions too large for the direct kernels: the unfolding ``φ(x)ᵀ``, kernel-major."""

    columns: np.ndarray  # (C·KH·KW, N·OH·OW)
    weight: np.ndarray  # (F, C, KH, KW)
    input_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


class DirectConvCache(NamedTuple):
    """What the direct kernels need for backward: the input itself, not its 25× larger unfolding."""

    flat: np.ndarray  # the input's memory, see plane_layout
    plane_c: int
    plane_n: int
    shape: tuple[int, int, int, int]  # (C, N, H, W)
    weight: np.ndarray
    padding: tuple[int, int]


class LanesConvCache(NamedTuple):
    """For the kernels with the filters in the vector lanes (:mod:`numba_lanes`): the input itself."""

    flat: np.ndarray  # the input's memory, see plane_layout
    plane_c: int
    plane_n: int
    shape: tuple[int, int, int, int]  # (C, N, H, W)
    weight: np.ndarray  # (F, C, KH, KW)
    stride: tuple[int, int]
    padding: tuple[int, int]


class WinogradConvCache(NamedTuple):
    """For 3×3 stride-1 convolutions run by Winograd F(2×2, 3×3): the input itself, transformed again in backward."""

    flat: np.ndarray  # the input's memory, see plane_layout
    plane_c: int
    plane_n: int
    shape: tuple[int, int, int, int]  # (C, N, H, W)
    weight: np.ndarray  # (F, C, 3, 3)
    transformed: np.ndarray  # U = G g Gᵀ, (16, F, C): the forward pass's, reused by backward
    padding: tuple[int, int]
    out_size: tuple[int, int]  # (OH, OW)


class BlockedConvCache(NamedTuple):
    """For cache-blocked convolutions: the input itself (its unfolding is made again, a block at a time)."""

    flat: np.ndarray  # the input's memory, see plane_layout
    plane_c: int
    plane_n: int
    shape: tuple[int, int, int, int]  # (C, N, H, W)
    weight: np.ndarray  # (F, C, KH, KW)
    window: tuple[int, ...]  # (KH, KW, SH, SW, PH, PW, OH, OW)


def plane_layout(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Describe an ``(N, C, H, W)`` array as ``(flat memory, plane_c, plane_n)`` for the kernels.

    Works without a copy when the array is C-contiguous NCHW or channel-major ``(C, N, H, W)``
    memory (the fast layers' output); anything else is first copied to channel-major.
    """
    n, c, h, w = x.shape
    cm = x.transpose(1, 0, 2, 3)
    if cm.flags.c_contiguous:
        return cm.reshape(-1), n * h * w, h * w
    if x.flags.c_contiguous:
        return x.reshape(-1), h * w, c * h * w
    return np.ascontiguousarray(cm).reshape(-1), n * h * w, h * w


class PlaneMaxPoolCache(NamedTuple):
    """What max pooling's backward needs in the numba backend.

    Exactly one of ``plane_index`` (training) and ``pool_input`` (inference) is set.
    """

    window: PoolWindow
    # (C, N, OH, OW), int32: flat index row·W + col of each window's first maximum in its input
    # plane, -1 where the fused ReLU cuts the gradient.
    plane_index: np.ndarray | None
    # Inference does not record the maxima; should a backward pass follow after all, this returns
    # the pooling's input (before the fused ReLU) -- the kept input, or a fused convolution's
    # output computed again -- and the maxima are found again from it.
    pool_input: Callable[[], np.ndarray] | None
    relu: bool


class BatchNormPlaneCache(NamedTuple):
    """What batch norm's backward needs in the numba backend (image batches, no synchronisation)."""

    # x̂, flat channel-major (C, N, H, W): kept in training; in evaluation mode (backward unlikely)
    # None, and computed from ``source`` should a backward pass follow after all.
    normalized: np.ndarray | None
    source: tuple[np.ndarray, int, int] | None  # evaluation mode: plane_layout(x)
    running_mean: np.ndarray | None  # evaluation mode: μ̂, to compute x̂ from ``source``
    shape: tuple[int, int, int, int]  # (C, N, H, W)
    inv_std: np.ndarray  # (C,) s = 1/√(σ² + ε) of the batch (training) or of the running variance
    weight: np.ndarray  # (C,) γ
    batch_statistics: bool  # True in training mode: μ and σ² depend on x
    # A fused ReLU's output max(γ x̂ + β, 0), flat channel-major (C, N, H, W): δ then arrives for it,
    # and is cut where it is zero. None: no ReLU fused.
    activated: np.ndarray | None = None


def _image_blocks(batch: int, per_block: int) -> list[tuple[int, int]]:
    """``(first image, count)`` of each block: a function of the shape alone, never of the thread count."""
    return [(start, min(per_block, batch - start)) for start in range(0, batch, per_block)]


def _image_batch_for(x: np.ndarray, weight: np.ndarray) -> bool:
    """``x`` is ``(N, C, H, W)`` with one γ per channel: the compiled batch norm's case (else the
    reference runs, and raises its shape error where there is one)."""
    return x.ndim == 4 and x.shape[1] == weight.shape[0]


def _is_one_by_one(kernel, stride, padding) -> bool:
    """A 1×1 stride-1 convolution without padding: its unfolding is its channel-major input."""
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _is_one_window(kernel, padding, input_size) -> bool:
    """One window per image (the kernel covers the unpadded input): the unfolding is one transposing copy."""
    return tuple(kernel) == tuple(input_size) and tuple(padding) == (0, 0)


def _is_product(kernel, stride, padding, input_size) -> bool:
    """Whether the unfolding is the input itself or one transposing copy of it (see ``im2col``)."""
    return _is_one_by_one(kernel, stride, padding) or _is_one_window(kernel, padding, input_size)


def _is_2x2_tiling(kernel, stride, padding) -> bool:
    """2×2 windows with stride 2 and no padding: :func:`numba_kernels.max_pool_2x2_kernel`'s case."""
    return tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and tuple(padding) == (0, 0)


def _window(kernel, stride, padding, out_size) -> tuple[int, ...]:
    return (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], out_size[0], out_size[1])


def _bias_gradient(grad_output: np.ndarray) -> np.ndarray:
    """``∂E/∂b = Σ δ`` over the batch and the positions: a GEMV on channel-major memory (no copy)."""
    filters = grad_output.shape[1]
    cm = grad_output.transpose(1, 0, 2, 3)
    if cm.flags.c_contiguous:
        rows = cm.reshape(filters, -1)
        return rows @ ones_vector(rows.shape[1], rows.dtype)
    return grad_output.sum(axis=(0, 2, 3))


class NumbaBackend(NumpyBackend):
    """Fast kernels with numba; outputs and gradients equal the ``"numpy"`` and reference backends'."""

    name = "numba"

    def __init__(self) -> None:
        super().__init__()
        threads.apply_numba_default()  # OpenBLAS and numba threads must not fight over the cores

    # Direct kernels pay off while the layer is small enough that OpenBLAS cannot shine (its
    # thread is one, see kernels.threads) and the wide rows are long enough to fill vector registers.
    # With register-blocked sums (kernels.numba_blocked) they also beat Winograd up to F·C·KH·KW ≈ 9,000:
    # probed forward + backward (training) / forward alone (inference), batch 64, two threads, against
    # the next best path: 16→16 3×3 at 28×28 0.70 / 0.67 (Winograd), 20→20 at 26×26 with pooling
    # 0.86 / 0.93 (Winograd), 20→50 at 12×12 1.02 / 0.72, 32→32 at 14×14 1.03 / 0.97; beyond it
    # Winograd's 2.25× fewer multiplications win: 40→40 at 26×26 1.11 / 1.12, 50→50 at 10×10 1.34 /
    # 1.17, and so does im2col + GEMM's backward (64→64 at 7×7: 1.17 training, though 0.76 forward).
    direct_max_filters_times_rows = 9216  # F · C·KH·KW
    direct_min_row_length = 8  # OW
    correlation_min_channels = 8  # input gradient as a full correlation from this many input channels

    # Images per task of the direct weight gradient: as many as keep a group's padded images and δ
    # rows within this many bytes (L2-resident), at most 8. More images per task add their lanes
    # fewer times (probed, 8 images against one at a time: 0.68× on LeNet-5's second layer, 0.77× on
    # SK's 20→50 at 12×12; the same time for larger planes).
    direct_weight_grad_group_bytes = 131_072

    def _weight_grad_groups(self, shape, kernel, padding, filters, itemsize) -> int:
        """How many groups of images :func:`numba_conv.conv_weight_grad_direct` splits the batch into."""
        channels, batch, height, width = shape
        plane = (height + 2 * padding[0]) * (width + 2 * padding[1])  # an upper bound for a row of δ too
        per_group = max(1, min(8, self.direct_weight_grad_group_bytes // ((channels + filters) * plane * itemsize)))
        return -(-batch // per_group)

    def use_direct(self, weight_shape, stride, out_w) -> bool:
        filters, channels, kernel_h, kernel_w = weight_shape
        return (
            stride == (1, 1)
            and filters * channels * kernel_h * kernel_w <= self.direct_max_filters_times_rows
            and out_w >= self.direct_min_row_length
        )

    # The kernels with the filters in the vector lanes (numba_lanes) compute no position twice and
    # take any stride; the direct kernels' wide rows compute (OH − 1)·Wp + OW entries, rounded up to
    # whole blocks, for OH·OW outputs. The lanes run a k×k convolution (k > 1) up to F·C·KH·KW =
    # lanes_max_filters_times_rows when its stride is not 1 (else im2col + GEMM), when neither the
    # direct kernels nor Winograd take it (im2col + GEMM again), or when the direct kernels' wide rows
    # would waste lanes_min_waste_ratio times what the lanes waste (filters rounded up to whole
    # vectors, positions to whole blocks). Probed A/B (python benchmarks/lanes_on_off.py measures it
    # again), batch 64, two threads, training (forward + backward) / inference against the path
    # before: LeNet-5's 6→16 at 14×14 with pooling 0.88 / 0.75 (direct; wide rows 1.44× the
    # outputs), BASE's 20→50 5×5 at 12×12 0.80 / 0.63 (im2col); resnet_mnist's 16→32 stride 2
    # 0.69 / 0.54 and 32→64 stride 2 0.84 / 0.65 (im2col), 32→32 at 14×14 0.89 / 0.83 (direct,
    # 1.22×), 64→64 at 7×7 0.79 / 0.74 (im2col). Not taken: 16→16 at 28×28 (direct, 1.07×: 1.02
    # in inference), SK's 50→50 at 10×10 (Winograd: 0.98 / 1.02), and 1×1 convolutions, which
    # stay one GEMM (the lanes' backward 1.6–1.9× slower).
    lanes_max_filters_times_rows = 36_864
    lanes_min_waste_ratio = 1.15

    def use_lanes(self, weight_shape, stride, padding, input_size) -> bool:
        """Whether :mod:`numba_lanes` runs this convolution (checked before every other path)."""
        filters, channels, kernel_h, kernel_w = weight_shape
        if filters * channels * kernel_h * kernel_w > self.lanes_max_filters_times_rows or kernel_h * kernel_w == 1:
            return False
        out_h, out_w = conv_output_size_2d(input_size, (kernel_h, kernel_w), stride, padding)
        if tuple(stride) != (1, 1):
            return True
        if self.use_winograd(weight_shape, stride, (out_h, out_w)):
            return False
        if not self.use_direct(weight_shape, stride, out_w):
            return True
        lanes, block = lanes_for(np.float32), numba_lanes.BLOCK  # the same rule for float64 (half the lanes)
        positions = out_h * out_w
        lanes_waste = (-(-filters // lanes) * lanes / filters) * (-(-positions // block) * block / positions)
        padded_w = input_size[1] + 2 * padding[1]
        wide_block = numba_blocked.PRODUCT_BLOCK_VECTORS * lanes
        wide = -(-((out_h - 1) * padded_w + out_w) // wide_block) * wide_block
        return wide / positions >= self.lanes_min_waste_ratio * lanes_waste

    def _lanes_conv2d_forward(self, x, weight, bias, stride, padding, relu, pool_record=None):
        """The convolution by :mod:`numba_lanes`; with ``pool_record`` not None, ReLU → 2×2 stride-2
        max pooling follows in the same pass (recording the maxima if it is True)."""
        n, c, h, w = x.shape
        filters = weight.shape[0]
        kernel = weight.shape[2:]
        out_h, out_w = conv_output_size_2d((h, w), kernel, stride, padding)
        lanes = lanes_for(x.dtype)
        padded_filters = -(-filters // lanes) * lanes
        weight_kf = np.zeros((weight[0].size, padded_filters), dtype=x.dtype)  # (C·KH·KW, F'), zero past F
        weight_kf[:, :filters] = weight.reshape(filters, -1).T
        bias_vector = np.zeros(padded_filters, dtype=x.dtype)
        if bias is not None:
            bias_vector[:filters] = bias
        flat, plane_c, plane_n = plane_layout(x)
        shape = (c, n, h, w)
        cache = LanesConvCache(flat, plane_c, plane_n, shape, weight, tuple(stride), tuple(padding))
        if pool_record is None:
            y = np.empty((filters, n, out_h, out_w), dtype=x.dtype)
            numba_lanes.conv_forward_lanes(
                flat, plane_c, plane_n, shape, kernel, cache.stride, cache.padding, weight_kf.reshape(-1), bias_vector,
                relu, y.reshape(-1),
            )  # fmt: skip
            return as_nchw(y), cache, None
        y = np.empty((filters, n, out_h // 2, out_w // 2), dtype=x.dtype)
        argmax = np.empty(y.shape if pool_record else (1,), dtype=np.int32)
        numba_lanes.conv_pool_forward_lanes(
            flat, plane_c, plane_n, shape, kernel, cache.stride, cache.padding, weight_kf.reshape(-1), bias_vector,
            bool(pool_record), y.reshape(-1), argmax.reshape(-1),
        )  # fmt: skip
        return as_nchw(y), cache, argmax

    def _lanes_conv2d_backward(self, grad_output, cache: LanesConvCache, need_input_grad):
        weight = cache.weight
        filters, channels, kernel_h, kernel_w = weight.shape
        kernel = (kernel_h, kernel_w)
        dtype = grad_output.dtype
        lanes = lanes_for(dtype)
        grad_flat, grad_plane_f, grad_plane_n = plane_layout(grad_output)
        taps = channels * kernel_h * kernel_w
        padded_taps = -(-taps // numba_lanes.BLOCK) * numba_lanes.BLOCK
        padded_filters = -(-filters // lanes) * lanes
        groups = self._weight_grad_groups(cache.shape, kernel, cache.padding, filters, grad_output.itemsize)
        partial = np.empty((groups, padded_taps * padded_filters), dtype=dtype)
        numba_lanes.conv_weight_grad_lanes(
            cache.flat, cache.plane_c, cache.plane_n, cache.shape, kernel, cache.stride, cache.padding,
            grad_flat, grad_plane_f, grad_plane_n, partial,
        )  # fmt: skip
        summed = partial.sum(axis=0).reshape(padded_taps, padded_filters)
        grad_weight = np.ascontiguousarray(summed[:taps, :filters].T).reshape(weight.shape)
        grad_bias = _bias_gradient(grad_output)
        grad_input = None
        few_channels = channels < 2 * lanes
        if need_input_grad and cache.stride == (1, 1) and few_channels and self.use_direct(weight.shape, (1, 1), 8):
            # Fewer channels than two vectors leave the scatter's blocks half empty: the direct
            # kernels' input gradient (which needs only δ and W) instead. Probed on LeNet-5's 6 → 16:
            # 0.39 against 0.44 ms.
            grad_input = self._direct_input_grad(grad_output, weight, cache.shape, cache.padding)
        elif need_input_grad:
            padded_channels = -(-channels // lanes) * lanes
            weight_tfc = np.zeros((kernel_h * kernel_w, filters, padded_channels), dtype=dtype)  # (KH·KW, F, C')
            weight_tfc[:, :, :channels] = weight.transpose(2, 3, 0, 1).reshape(kernel_h * kernel_w, filters, channels)
            out = np.empty(cache.shape, dtype=dtype)  # (C, N, H, W)
            numba_lanes.conv_input_grad_lanes(
                grad_flat, grad_plane_f, grad_plane_n, cache.shape, kernel, cache.stride, cache.padding,
                weight_tfc.reshape(-1), out.reshape(-1),
            )  # fmt: skip
            grad_input = as_nchw(out)
        return grad_input, grad_weight, grad_bias

    # Winograd F(2×2, 3×3) pays off where its transforms are cheap next to its products: from
    # F·C·KH·KW beyond the direct kernels' limit (above). Probed A/B on the exercise 15.6 layers
    # (batch 64, two threads; forward + backward / forward alone, against im2col + GEMM, with both
    # Winograd's products and its weight gradient's dots register-blocked, kernels.numba_blocked):
    # 40→40 at 26×26 with pooling 0.72 / 0.65, 50→50 at 10×10 0.90 / 0.74, 40→100 at 12×12 0.94 /
    # 0.95, 100→100 at 10×10 0.90 / 0.76; but 1→20 1.6× (nothing to share the transforms over).
    winograd_min_channels = 16
    winograd_max_products = 10_000  # F·C
    winograd_min_output = 8
    winograd_images_per_group = 8  # backward's tasks (a function of the shape alone: any thread count, same sums)

    def use_winograd(self, weight_shape, stride, out_size) -> bool:
        """Whether Winograd runs this convolution (not where the direct kernels do)."""
        filters, channels, kernel_h, kernel_w = weight_shape
        return (
            not self.use_direct(weight_shape, stride, out_size[1])
            and (kernel_h, kernel_w) == (3, 3)
            and tuple(stride) == (1, 1)
            and channels >= self.winograd_min_channels
            and filters * channels <= self.winograd_max_products
            and min(out_size) >= self.winograd_min_output
        )

    # Tiles per band of numba_winograd_lanes (forward: whole tile rows, at least one). Probed (batch
    # 64, two threads) on the exercise 15.6 and resnet_mnist layers: forward 24–96 within noise of
    # each other, 12 slower; backward 48 the fastest or within noise of 24 (12 up to 1.3× slower).
    winograd_band_tiles = 48

    def _winograd_conv2d_forward(self, x, weight, bias, padding, out_size, relu=False, pool_record=None):
        """The convolution by Winograd (:mod:`numba_winograd_lanes`): ``(y, conv cache, argmax)``. With
        ``pool_record`` not None, ReLU → 2×2 stride-2 max pooling follows in the same pass (recording
        the maxima if it is True; ``argmax`` is None otherwise)."""
        n, c, h, w = x.shape
        filters = weight.shape[0]
        lanes = lanes_for(x.dtype)
        flat, plane_c, plane_n = plane_layout(x)
        u = numba_winograd.weight_transform(weight.astype(x.dtype, copy=False))  # U = G g Gᵀ (16, F, C)
        u_lanes = numba_winograd_lanes.lanes_weight_transform(u, lanes)  # (16, C·F')
        bias_vector = np.zeros(u_lanes.shape[1] // c, dtype=x.dtype)
        if bias is not None:
            bias_vector[:filters] = bias
        shape = (c, n, h, w)
        band_rows = numba_winograd_lanes.band_rows_for(out_size, self.winograd_band_tiles)
        cache = WinogradConvCache(flat, plane_c, plane_n, shape, weight, u, tuple(padding), out_size)
        wl = numba_winograd_lanes
        if pool_record is None:
            y = np.empty((filters, n, *out_size), dtype=x.dtype)
            epilogue = wl.EPILOGUE_RELU if relu else wl.EPILOGUE_NONE
        else:
            y = np.empty((filters, n, out_size[0] // 2, out_size[1] // 2), dtype=x.dtype)
            epilogue = wl.EPILOGUE_POOL_RECORD if pool_record else wl.EPILOGUE_POOL
        argmax = np.empty(y.shape if pool_record else (1,), dtype=np.int32)
        wl.winograd_forward_lanes(
            flat, plane_c, plane_n, shape, cache.padding, out_size, u_lanes, bias_vector, band_rows, epilogue,
            y.reshape(-1), argmax.reshape(-1),
        )  # fmt: skip
        return as_nchw(y), cache, (argmax if pool_record else None)  # argmax channel-major (F, N, POH, POW)

    def _winograd_conv2d_backward(self, grad_output, cache: WinogradConvCache, need_input_grad):
        weight = cache.weight
        filters, channels = weight.shape[:2]
        batch = cache.shape[1]
        dtype = grad_output.dtype
        lanes = lanes_for(dtype)
        grad_flat, grad_plane_f, grad_plane_n = plane_layout(grad_output)
        padded_c = -(-channels // lanes) * lanes
        u_t = np.zeros((16, filters, padded_c), dtype=dtype)  # U[ξ]ᵀ (F, C'), zero past C
        u_t[:, :, :channels] = cache.transformed
        channels_6 = -(-channels // numba_lanes.BLOCK) * numba_lanes.BLOCK
        filters_padded = -(-filters // lanes) * lanes
        groups = -(-batch // self.winograd_images_per_group)
        partial = np.empty((groups, 16 * channels_6 * filters_padded), dtype=dtype)
        grad_input = np.empty(cache.shape if need_input_grad else (1,), dtype=dtype)  # (C, N, H, W)
        numba_winograd_lanes.winograd_backward_lanes(
            cache.flat, cache.plane_c, cache.plane_n, cache.shape, cache.padding,
            grad_flat, grad_plane_f, grad_plane_n, cache.out_size, u_t.reshape(16, -1), self.winograd_band_tiles,
            bool(need_input_grad), partial, grad_input.reshape(-1),
        )  # fmt: skip
        # ∂E/∂U summed over the groups in order, then ∂E/∂g = Gᵀ (∂E/∂U) G.
        summed = partial.sum(axis=0).reshape(16, channels_6, filters_padded)[:, :channels, :filters]
        grad_u = np.ascontiguousarray(summed.transpose(0, 2, 1))  # (16, F, C)
        grad_weight = numba_winograd.weight_grad_transform(grad_u).astype(weight.dtype, copy=False)
        return (as_nchw(grad_input) if need_input_grad else None), grad_weight, _bias_gradient(grad_output)

    def conv2d_forward(self, x, weight, bias, stride, padding):
        return self._conv2d_forward(x, weight, bias, stride, padding, relu=False)

    fuses_conv_relu = True

    def conv2d_relu_forward(self, x, weight, bias, stride, padding):
        """``relu(conv(x))``: stored by Winograd's output transform or the direct kernel's copy out of
        its rows as ``max(y, 0)``, after the other paths' products in place; the ReLU's own pass and
        array are saved. The cache keeps the output for the ReLU's mask in backward."""
        y, cache = self._conv2d_forward(x, weight, bias, stride, padding, relu=True)
        return y, FusedReluCache(cache, y)  # relu_forward's cache is its output, y here

    def _conv2d_forward(self, x, weight, bias, stride, padding, relu):
        check_conv_input(x, weight)
        n, c, h, w = x.shape
        filters = weight.shape[0]
        kernel = weight.shape[2:]
        out_h, out_w = conv_output_size_2d((h, w), kernel, stride, padding)
        if self.use_lanes(weight.shape, stride, padding, (h, w)):
            y, cache, _ = self._lanes_conv2d_forward(x, weight, bias, stride, padding, relu)
            return y, cache
        if self.use_winograd(weight.shape, stride, (out_h, out_w)):
            y, cache, _ = self._winograd_conv2d_forward(x, weight, bias, padding, (out_h, out_w), relu)
            return y, cache
        if not self.use_direct(weight.shape, stride, out_w):
            unfolding_bytes = weight[0].size * n * out_h * out_w * x.itemsize
            if unfolding_bytes >= self.blocked_min_unfolding_bytes and not _is_product(
                weight.shape[2:], stride, padding, (h, w)
            ):
                y, cache = self._blocked_conv2d_forward(x, weight, bias, stride, padding)
            else:
                y, cache = self._columns_conv2d_forward(x, weight, bias, stride, padding)
            if relu:  # in place over the channel-major array the product wrote, on numba's threads
                written = y.transpose(1, 0, 2, 3)  # (F, N, OH, OW), C-contiguous
                numba_kernels.relu_forward_kernel(*plane_layout(y), written.shape, written.reshape(-1))
            return y, cache
        flat, plane_c, plane_n = plane_layout(x)
        weight_matrix = np.ascontiguousarray(weight.reshape(filters, -1))
        bias_vector = np.zeros(filters, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias)
        y = np.empty((filters, n, out_h, out_w), dtype=x.dtype)
        numba_conv.conv_forward_direct(
            flat, plane_c, plane_n, (c, n, h, w), kernel, padding, weight_matrix, bias_vector, relu, y.reshape(-1)
        )
        return as_nchw(y), DirectConvCache(flat, plane_c, plane_n, (c, n, h, w), weight, padding)

    fuses_conv_pool = True
    direct_pools_2x2 = True  # 2×2 stride-2 pooling of the direct kernels' rows in the same pass

    def conv2d_max_pool2d_forward(
        self, x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding, record=True
    ):
        """``max_pool(relu(conv(x)))`` in one kernel; ``None`` when the backend declines these shapes.

        Two kernels fuse: the direct convolution (pooling its accumulator rows, any window; 2×2
        stride 2 written out), and Winograd's (only 2×2 stride-2 pooling, whose windows are its
        output tiles).

        Returns ``(y, conv_cache, pool_cache)``: the caches the two layers' backward passes use, as if
        Conv2d and the fused ReLU → MaxPool2d had run one after the other.
        """
        check_conv_input(x, weight)
        n, c, h, w = x.shape
        filters, kernel = weight.shape[0], weight.shape[2:]
        conv_size = conv_output_size_2d((h, w), kernel, stride, padding)
        if self.use_lanes(weight.shape, stride, padding, (h, w)):
            if not _is_2x2_tiling(pool_kernel, pool_stride, pool_padding):
                return None  # the convolution, then the pooling kernel
            y, conv_cache, argmax = self._lanes_conv2d_forward(x, weight, bias, stride, padding, True, bool(record))
            window = PoolWindow(conv_size, pool_kernel, pool_stride, pool_padding)
            if record:
                return y, conv_cache, PlaneMaxPoolCache(window, argmax, None, True)

            def lanes_output() -> np.ndarray:  # the same numbers, for the same maxima
                return self._lanes_conv2d_forward(x, weight, bias, stride, padding, False)[0]

            return y, conv_cache, PlaneMaxPoolCache(window, None, lanes_output, True)
        if self.use_winograd(weight.shape, stride, conv_size):
            if not _is_2x2_tiling(pool_kernel, pool_stride, pool_padding):
                return None  # the convolution (Winograd's or not), then the pooling kernel
            # Pooled from the image's outputs while they are in the cache, never stored.
            y, conv_cache, argmax = self._winograd_conv2d_forward(
                x, weight, bias, padding, conv_size, True, bool(record)
            )
            window = PoolWindow(conv_size, pool_kernel, pool_stride, pool_padding)
            if record:
                return y, conv_cache, PlaneMaxPoolCache(window, argmax, None, True)

            def winograd_output() -> np.ndarray:  # the same numbers, for the same maxima
                return self._winograd_conv2d_forward(x, weight, bias, padding, conv_size)[0]

            return y, conv_cache, PlaneMaxPoolCache(window, None, winograd_output, True)
        if not self.use_direct(weight.shape, stride, conv_size[1]):
            return None
        if _is_2x2_tiling(pool_kernel, pool_stride, pool_padding) and not self.direct_pools_2x2:
            return None  # the convolution, then the written-out 2×2 ReLU → max pooling kernel
        pooled = conv_output_size_2d(conv_size, pool_kernel, pool_stride, pool_padding)
        flat, plane_c, plane_n = plane_layout(x)
        weight_matrix = np.ascontiguousarray(weight.reshape(filters, -1))
        bias_vector = np.zeros(filters, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias)
        y = np.empty((filters, n, *pooled), dtype=x.dtype)
        argmax = np.empty(y.shape if record else (1,), dtype=np.int32)
        numba_conv.conv_pool_forward_direct(
            flat, plane_c, plane_n, (c, n, h, w), kernel, padding, weight_matrix, bias_vector,
            _window(pool_kernel, pool_stride, pool_padding, pooled), bool(record), y.reshape(-1), argmax.reshape(-1),
        )  # fmt: skip
        conv_cache = DirectConvCache(flat, plane_c, plane_n, (c, n, h, w), weight, padding)
        window = PoolWindow(conv_size, pool_kernel, pool_stride, pool_padding)
        if record:
            pool_cache = PlaneMaxPoolCache(window, argmax, None, True)
        else:  # should backward follow after all, the convolution's output is computed then

            def conv_output() -> np.ndarray:
                return self.conv2d_forward(x, weight, bias, stride, padding)[0]

            pool_cache = PlaneMaxPoolCache(window, None, conv_output, True)
        return as_nchw(y), conv_cache, pool_cache

    # Winograd's backward pass also serves layers whose forward pass the direct or lanes kernels
    # run (they keep the same input; U = G g Gᵀ is computed again, 16·F·C values): since its
    # layout transposes went through registers it is as fast or faster from 16 channels and
    # filters and 8×8 outputs. Probed (batch 64, two threads, same process, against the backward
    # of the forward's own path; fastest of 12 rounds, and benchmarks/winograd_on_off.py):
    # resnet_mnist's 16 → 16 at 28×28 0.83–1.03, 32 → 32 at 14×14 0.86–0.90 (64 → 64 at 7×7
    # 0.80–0.99: outputs below 8×8 not taken); SK's 20 → 20 at 26×26 0.83–1.07, 20 → 50 at 12×12
    # 0.80–1.05; 16 → 16 at 26×26 without padding 0.72; but 8 → 8 1.6. Whole training steps, the
    # rule on and off in one process: resnet_mnist 0.89 (fastest rounds 0.92), SK 0.95 (0.99).
    winograd_backward_min_channels = 16

    def use_winograd_backward(self, weight_shape, stride, out_size) -> bool:
        """Whether a direct or lanes convolution's backward pass runs through Winograd instead."""
        filters, channels, kernel_h, kernel_w = weight_shape
        return (
            (kernel_h, kernel_w) == (3, 3)
            and tuple(stride) == (1, 1)
            and min(channels, filters) >= self.winograd_backward_min_channels
            and filters * channels <= self.winograd_max_products
            and min(out_size) >= self.winograd_min_output
        )

    def _as_winograd_cache(self, cache, dtype) -> WinogradConvCache | None:
        """The Winograd cache for a direct or lanes convolution's backward pass, or None (not its shape)."""
        stride = getattr(cache, "stride", (1, 1))
        height, width = cache.shape[2:]
        weight = cache.weight
        out_size = conv_output_size_2d((height, width), weight.shape[2:], stride, cache.padding)
        if not self.use_winograd_backward(weight.shape, stride, out_size):
            return None
        transformed = numba_winograd.weight_transform(weight.astype(dtype, copy=False))  # U = G g Gᵀ
        return WinogradConvCache(
            cache.flat, cache.plane_c, cache.plane_n, cache.shape, weight, transformed, tuple(cache.padding), out_size
        )

    def conv2d_backward(self, grad_output, cache, need_input_grad=True):
        grad_output, cache = self.through_fused_relu(grad_output, cache)
        if isinstance(cache, (DirectConvCache, LanesConvCache)):
            winograd = self._as_winograd_cache(cache, grad_output.dtype)
            if winograd is not None:
                return self._winograd_conv2d_backward(grad_output, winograd, need_input_grad)
        if isinstance(cache, ColumnsConvCache):
            return self._columns_conv2d_backward(grad_output, cache, need_input_grad)
        if isinstance(cache, BlockedConvCache):
            return self._blocked_conv2d_backward(grad_output, cache, need_input_grad)
        if isinstance(cache, WinogradConvCache):
            return self._winograd_conv2d_backward(grad_output, cache, need_input_grad)
        if isinstance(cache, LanesConvCache):
            return self._lanes_conv2d_backward(grad_output, cache, need_input_grad)
        weight = cache.weight
        filters = weight.shape[0]
        kernel = weight.shape[2:]
        grad_flat, grad_plane_f, grad_plane_n = plane_layout(grad_output)
        taps = weight[0].size
        groups = self._weight_grad_groups(cache.shape, kernel, cache.padding, filters, grad_output.itemsize)
        taps_first = taps % 4 < filters % 4  # fewer leftover rows for the dots (see the kernel)
        partial = np.empty((groups, taps, filters) if taps_first else (groups, filters, taps), dtype=grad_output.dtype)
        numba_conv.conv_weight_grad_direct(
            cache.flat, cache.plane_c, cache.plane_n, cache.shape, kernel, cache.padding,
            grad_flat, grad_plane_f, grad_plane_n, partial, taps_first,
        )  # fmt: skip
        summed = partial.sum(axis=0)
        grad_weight = (np.ascontiguousarray(summed.T) if taps_first else summed).reshape(weight.shape)
        grad_bias = _bias_gradient(grad_output)
        grad_input = None
        if need_input_grad:
            grad_input = self._direct_input_grad(grad_output, weight, cache.shape, cache.padding)
        return grad_input, grad_weight, grad_bias

    def _direct_input_grad(self, grad_output, weight, shape, padding):
        """Eq. 15.49 for a stride-1 convolution by the direct kernels; ``shape = (C, N, H, W)``."""
        filters, channels = weight.shape[:2]
        kernel = weight.shape[2:]
        batch = shape[1]
        grad_flat, grad_plane_f, grad_plane_n = plane_layout(grad_output)
        out = np.empty(shape, dtype=grad_output.dtype)  # (C, N, H, W)
        full = (kernel[0] - 1 - padding[0], kernel[1] - 1 - padding[1])
        if full == tuple(padding) and channels >= self.correlation_min_channels:
            # Eq. 15.49 as a forward convolution: δ padded by K − 1 − P, correlated with the
            # kernels rotated by 180° and with F and C swapped ("full" convolution, seed 001).
            # Both this and the scatter below are register-blocked; the correlation also
            # computes the positions its padding of δ adds, few for a "same" convolution
            # (K − 1 − P = P). Probed, batch 64: correlation against scatter 0.90 for 16→16 at
            # 28×28 and 0.94 for 32→32 at 14×14 (padding 1), 0.80 for 8→8; but without padding
            # 1.05 for 20→20 at 26×26, 1.29 for 20→50 at 12×12, 1.1–1.4 for LeNet's 6→16.
            rotated = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(channels, -1)
            numba_conv.conv_forward_direct(
                grad_flat, grad_plane_f, grad_plane_n, (filters, batch, *grad_output.shape[2:]), kernel, full,
                rotated, np.zeros(channels, dtype=grad_output.dtype), False, out.reshape(-1),
            )  # fmt: skip
        else:
            numba_conv.conv_input_grad_direct(
                grad_flat, grad_plane_f, grad_plane_n, shape, kernel, padding,
                np.ascontiguousarray(weight.reshape(filters, -1)), out.reshape(-1),
            )  # fmt: skip
        return as_nchw(out)

    # -- convolutions too large for the direct kernels: im2col + GEMM, cache-blocked when huge ------
    # When the whole batch's unfolding would be huge (SK-2's second layer: 53 MB at batch 64), a
    # few images at a time are unfolded into a buffer (``unfold_block_bytes``) and multiplied at
    # once, each thread its own images: the unfolding never goes to main memory, and is made
    # again in backward instead of kept. Probed A/B on the exercise 15.6 layers: 0.8× the time
    # forward and 0.9× backward for that layer, but 1.05–1.3× for unfoldings of a few MB, whose
    # whole-batch products OpenBLAS runs more efficiently -- hence the threshold.
    blocked_min_unfolding_bytes = 2**25
    unfold_block_bytes = 2**21

    def _images_per_block(self, bytes_per_image: int) -> int:
        return max(1, self.unfold_block_bytes // max(1, bytes_per_image))

    def _blocked_conv2d_forward(self, x, weight, bias, stride, padding):
        n, c, h, w = x.shape
        filters = weight.shape[0]
        out_h, out_w = conv_output_size_2d((h, w), weight.shape[2:], stride, padding)
        positions = out_h * out_w
        flat, plane_c, plane_n = plane_layout(x)
        shape = (c, n, h, w)
        window = _window(weight.shape[2:], stride, padding, (out_h, out_w))
        weight_matrix = np.ascontiguousarray(weight.reshape(filters, -1))  # W_mat (F, C·KH·KW)
        taps = weight_matrix.shape[1]
        per_block = self._images_per_block(taps * positions * x.itemsize)
        y = np.empty((filters, n, positions), dtype=x.dtype)  # channel-major output

        blocks = _image_blocks(n, per_block)

        def work(first: int, last: int) -> None:
            columns = np.empty(taps * per_block * positions, dtype=x.dtype)
            for start, count in blocks[first:last]:
                block = columns[: taps * count * positions]
                numba_kernels.im2col_images_kernel(flat, plane_c, plane_n, shape, window, start, count, block)
                target = y[:, start : start + count].reshape(filters, count * positions)  # a view, ld N·OH·OW
                np.matmul(weight_matrix, block.reshape(taps, -1), out=target)  # eq. 15.25 for these images
                if bias is not None:
                    target += bias[:, None]

        gemm.split_over_threads(work, len(blocks))
        cache = BlockedConvCache(flat, plane_c, plane_n, shape, weight, window)
        return as_nchw(y.reshape(filters, n, out_h, out_w)), cache

    def _blocked_conv2d_backward(self, grad_output, cache: BlockedConvCache, need_input_grad):
        weight = cache.weight
        filters = weight.shape[0]
        n = cache.shape[1]
        positions = grad_output.shape[2] * grad_output.shape[3]
        weight_matrix = weight.reshape(filters, -1)
        taps = weight_matrix.shape[1]
        weight_t = np.ascontiguousarray(weight_matrix.T)  # W_matᵀ (C·KH·KW, F)
        delta = np.ascontiguousarray(grad_output.transpose(1, 0, 2, 3)).reshape(filters, n, positions)  # δ (F, N, ·)
        grad_bias = delta.reshape(filters, -1) @ ones_vector(n * positions, delta.dtype)
        per_block = self._images_per_block(taps * positions * delta.itemsize)
        blocks = _image_blocks(n, per_block)
        # One partial weight gradient per block, summed in block order: the same sum however the
        # blocks were shared out among the threads.
        partial_weight = np.empty((len(blocks), filters, taps), dtype=delta.dtype)
        grad_input = np.empty(cache.shape, dtype=delta.dtype) if need_input_grad else None  # (C, N, H, W)

        def work(first: int, last: int) -> None:
            columns = np.empty(taps * per_block * positions, dtype=delta.dtype)
            grad_columns = np.empty_like(columns) if need_input_grad else columns
            for index in range(first, last):
                start, count = blocks[index]
                block = columns[: taps * count * positions]
                numba_kernels.im2col_images_kernel(
                    cache.flat, cache.plane_c, cache.plane_n, cache.shape, cache.window, start, count, block
                )
                delta_block = delta[:, start : start + count].reshape(filters, count * positions)
                # ∂E/∂W = δ φ(x) (eq. 15.38), summed block by block.
                np.matmul(delta_block, block.reshape(taps, -1).T, out=partial_weight[index])
                if grad_input is not None:  # eq. 15.49: col2im(W_matᵀ δ)
                    folded = grad_columns[: taps * count * positions].reshape(taps, -1)
                    np.matmul(weight_t, delta_block, out=folded)
                    numba_kernels.col2im_images_kernel(
                        folded.reshape(-1), cache.shape, cache.window, start, count, grad_input.reshape(-1)
                    )

        gemm.split_over_threads(work, len(blocks))
        grad_weight = partial_weight.sum(axis=0).reshape(weight.shape)
        return (None if grad_input is None else as_nchw(grad_input)), grad_weight, grad_bias

    # -- convolutions that are one product: 1×1, or one window per image (im2col is a copy at most) --
    # The unfolding is kernel-major, cols[c, i, j, n, p, q] = x_pad[n, c, p·SH + i, q·SW + j]: as a
    # (C·KH·KW, N·OH·OW) matrix it is φ(x)ᵀ for the whole batch, so eq. 15.25 is Yᵀ = W_mat · cols
    # with the PyTorch weight as it lies in memory, and Yᵀ (F, N·OH·OW) is channel-major output.

    def _columns_conv2d_forward(self, x, weight, bias, stride, padding):
        filters = weight.shape[0]
        columns = self.im2col(x, weight.shape[2:], stride, padding)  # (C, KH, KW, N, OH, OW)
        n, out_h, out_w = columns.shape[3:]
        columns = columns.reshape(-1, n * out_h * out_w)
        y = gemm.matmul(weight.reshape(filters, -1), columns).reshape(filters, n, out_h, out_w)
        if bias is not None:
            y += bias[:, None, None, None]
        return as_nchw(y), ColumnsConvCache(columns, weight, (x.shape[2], x.shape[3]), stride, padding)

    def _columns_conv2d_backward(self, grad_output, cache, need_input_grad):
        weight = cache.weight
        filters, channels = weight.shape[:2]
        n, out_h, out_w = grad_output.shape[0], grad_output.shape[2], grad_output.shape[3]
        delta = np.ascontiguousarray(grad_output.transpose(1, 0, 2, 3)).reshape(filters, -1)  # δᵀ (F, N·OH·OW)
        # ∂E/∂F = φ(x)ᵀ δ (eq. 15.38), as δᵀ · colsᵀ: the product comes out in the weight's own
        # layout (F, C·KH·KW). The transposed product (cols · δᵀ)ᵀ needs a transposing copy of the
        # result: probed at batch 64, this order takes 0.14–0.25× the time for SK-2's 1600 → 1000
        # fully connected layer, 0.5–0.7× for BASE's 800 → 500, 0.8–0.95× for resnet_mnist's 1×1
        # shortcuts (the long N·OH·OW axis shared by both orders).
        grad_weight = gemm.matmul(delta, cache.columns.T).reshape(weight.shape)
        grad_bias = delta @ ones_vector(delta.shape[1], delta.dtype)
        grad_input = None
        if need_input_grad:  # eq. 15.49: col2im(δ W_mat)
            grad_columns = gemm.matmul(weight.reshape(filters, -1).T, delta)  # (C·KH·KW, N·OH·OW)
            grad_columns = grad_columns.reshape(channels, *weight.shape[2:], n, out_h, out_w)
            grad_input = as_nchw(self.col2im(grad_columns, cache.input_size, cache.stride, cache.padding))
        return grad_input, grad_weight, grad_bias

    def im2col(self, x, kernel, stride, padding):
        n, c, h, w = x.shape
        out_size = conv_output_size_2d((h, w), kernel, stride, padding)
        if _is_one_by_one(kernel, stride, padding):
            # A 1×1 convolution's unfolding is its channel-major input: a plain GEMM, no copy.
            return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(c, 1, 1, n, h, w)
        if _is_one_window(kernel, padding, (h, w)):
            # One window per image (a fully connected layer in convolution form): one transposing copy.
            return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).reshape(c, h, w, n, 1, 1)
        flat, plane_c, plane_n = plane_layout(x)
        columns = np.empty((c, kernel[0], kernel[1], n, *out_size), dtype=x.dtype)
        numba_kernels.im2col_kernel(
            flat, plane_c, plane_n, (c, n, h, w), _window(kernel, stride, padding, out_size), columns.reshape(-1)
        )
        return columns

    def col2im(self, grad_columns, input_size, stride, padding):
        c, kernel_h, kernel_w, n, out_h, out_w = grad_columns.shape
        if _is_one_by_one((kernel_h, kernel_w), stride, padding):
            return np.ascontiguousarray(grad_columns).reshape(c, n, *input_size)  # the adjoints of im2col's
        if _is_one_window((kernel_h, kernel_w), padding, input_size):
            return np.ascontiguousarray(grad_columns.reshape(c, kernel_h, kernel_w, n).transpose(0, 3, 1, 2))
        out = np.empty((c, n, *input_size), dtype=grad_columns.dtype)
        window = _window((kernel_h, kernel_w), stride, padding, (out_h, out_w))
        columns = np.ascontiguousarray(grad_columns).reshape(-1)
        numba_kernels.col2im_kernel(columns, (c, n, *input_size), window, out.reshape(-1))
        return out

    def max_pool2d_forward(self, x, kernel, stride, padding, relu=False, record=True):
        n, c, h, w = x.shape
        out_size = conv_output_size_2d((h, w), kernel, stride, padding)
        flat, plane_c, plane_n = plane_layout(x)
        y = np.empty((c, n, *out_size), dtype=x.dtype)
        argmax = np.empty(y.shape if record else (1,), dtype=np.int32)
        if _is_2x2_tiling(kernel, stride, padding):
            numba_kernels.max_pool_2x2_kernel(
                flat, plane_c, plane_n, (c, n, h, w), out_size, bool(relu), bool(record),
                y.reshape(-1), argmax.reshape(-1),
            )  # fmt: skip
        else:
            numba_kernels.max_pool_forward_kernel(
                flat, plane_c, plane_n, (c, n, h, w), _window(kernel, stride, padding, out_size),
                bool(relu), bool(record), y.reshape(-1), argmax.reshape(-1),
            )  # fmt: skip
        window = PoolWindow((h, w), kernel, stride, padding)
        if not record:
            return as_nchw(y), PlaneMaxPoolCache(window, None, lambda: x, bool(relu))
        return as_nchw(y), PlaneMaxPoolCache(window, argmax, None, bool(relu))

    def max_pool2d_backward(self, grad_output, cache: PlaneMaxPoolCache):
        plane_index = self._plane_index(cache)
        n, c, out_h, out_w = grad_output.shape
        flat, plane_c, plane_n = plane_layout(grad_output)
        input_size = cache.window.input_size
        out = np.empty((c, n, *input_size), dtype=grad_output.dtype)
        numba_kernels.max_pool_backward_kernel(
            flat, plane_c, plane_n, plane_index.reshape(-1), (c, n, *input_size), (out_h, out_w), out.reshape(-1),
        )  # fmt: skip
        return as_nchw(out)

    def _plane_index(self, cache: PlaneMaxPoolCache) -> np.ndarray:
        """The maxima's positions, found again from the pooling's input if inference skipped them."""
        if cache.plane_index is not None:
            return cache.plane_index
        assert cache.pool_input is not None
        window = cache.window
        recorded = self.max_pool2d_forward(cache.pool_input(), window.kernel, window.stride, window.padding, cache.relu)
        plane_index = recorded[1].plane_index
        assert plane_index is not None
        return plane_index

    # -- ReLU on image batches: one compiled pass over channel-major planes, on both cores ----------
    def relu_forward(self, x):
        """``y = max(x, 0)``; the cache is ``y`` itself (``y > 0`` exactly where ``x > 0``)."""
        if x.ndim != 4:
            return super().relu_forward(x)
        n, c, h, w = x.shape
        y = np.empty((c, n, h, w), dtype=x.dtype)
        numba_kernels.relu_forward_kernel(*plane_layout(x), (c, n, h, w), y.reshape(-1))
        return as_nchw(y), as_nchw(y)

    fuses_add_relu = True

    def add_relu_forward(self, inputs):
        """``max(a + b, 0)`` in one compiled pass on numba's threads (a residual block's end); the
        cache is ``y``, as :meth:`relu_forward`'s. Other inputs: the sum, then the ReLU."""
        if len(inputs) != 2 or inputs[0].ndim != 4 or inputs[0].shape != inputs[1].shape:
            return super().add_relu_forward(inputs)
        first, second = inputs
        dtype = np.result_type(first.dtype, second.dtype)
        if first.dtype != dtype or second.dtype != dtype:
            return super().add_relu_forward(inputs)
        n, c, h, w = first.shape
        y = np.empty((c, n, h, w), dtype=dtype)
        numba_kernels.add_relu_kernel(*plane_layout(first), *plane_layout(second), (c, n, h, w), y.reshape(-1))
        return as_nchw(y), as_nchw(y)

    def relu_backward(self, grad_output, cache):
        cm = cache.transpose(1, 0, 2, 3) if cache.ndim == 4 else None
        if cm is None or not cm.flags.c_contiguous or grad_output.shape != cache.shape:
            return super().relu_backward(grad_output, cache)
        n, c, h, w = grad_output.shape
        out = np.empty((c, n, h, w), dtype=np.result_type(grad_output.dtype, cache.dtype))
        numba_kernels.relu_backward_kernel(*plane_layout(grad_output), cm.reshape(-1), (c, n, h, w), out.reshape(-1))
        return as_nchw(out)

    # -- batch normalisation of image batches (numcnn.kernels.numba_norm) ----------------------------
    fuses_batch_norm_relu = True

    def batch_norm_train_forward(self, x, weight, bias, eps, reduce=None):
        if not self._batch_norm_kernel_takes(x, weight, reduce):
            return super().batch_norm_train_forward(x, weight, bias, eps, reduce)  # its errors; synchronised BN
        return self._batch_norm_train(x, weight, bias, eps, relu=False)

    def batch_norm_relu_train_forward(self, x, weight, bias, eps, reduce=None):
        """``relu(batch_norm(x))``: the batch norm's last pass stores ``max(y, 0)``, and its backward
        masks δ as it reads it (:mod:`numcnn.kernels.numba_norm`); the ReLU's two passes are saved."""
        if not self._batch_norm_kernel_takes(x, weight, reduce):
            return super().batch_norm_relu_train_forward(x, weight, bias, eps, reduce)
        return self._batch_norm_train(x, weight, bias, eps, relu=True)

    @staticmethod
    def _batch_norm_kernel_takes(x, weight, reduce) -> bool:
        return _image_batch_for(x, weight) and reduce is None and x.shape[0] * x.shape[2] * x.shape[3] >= 2

    def _batch_norm_train(self, x, weight, bias, eps, relu):
        n, c, h, w = x.shape
        flat, plane_c, plane_n = plane_layout(x)
        y = np.empty((c, n, h, w), dtype=x.dtype)
        normalized = np.empty_like(y)
        mean = np.empty(c, dtype=np.float64)
        variance = np.empty(c, dtype=np.float64)
        numba_norm.batch_norm_train_forward_kernel(
            flat, plane_c, plane_n, (c, n, h, w), weight, bias, float(eps), relu,
            y.reshape(-1), normalized.reshape(-1), mean, variance,
        )  # fmt: skip
        mean, variance = mean.astype(x.dtype), variance.astype(x.dtype)
        inv_std = 1.0 / np.sqrt(variance + x.dtype.type(eps))
        activated = y.reshape(-1) if relu else None
        cache = BatchNormPlaneCache(normalized.reshape(-1), None, None, (c, n, h, w), inv_std, weight, True, activated)
        return as_nchw(y), cache, mean, variance, n * h * w

    def batch_norm_eval_forward(self, x, weight, bias, running_mean, running_var, eps):
        if not _image_batch_for(x, weight):
            return super().batch_norm_eval_forward(x, weight, bias, running_mean, running_var, eps)
        n, c, h, w = x.shape
        inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
        layout = plane_layout(x)
        y = np.empty((c, n, h, w), dtype=x.dtype)
        numba_norm.batch_norm_eval_kernel(*layout, (c, n, h, w), running_mean, inv_std, weight, bias, y.reshape(-1))
        return as_nchw(y), BatchNormPlaneCache(None, layout, running_mean, (c, n, h, w), inv_std, weight, False)

    def batch_norm_backward(self, grad_output, cache, need_input_grad=True):
        if not isinstance(cache, BatchNormPlaneCache):
            return super().batch_norm_backward(grad_output, cache, need_input_grad)
        c = cache.shape[0]
        normalized = cache.normalized
        if normalized is None:  # evaluation mode kept x, not x̂
            assert cache.source is not None and cache.running_mean is not None
            normalized = np.empty(int(np.prod(cache.shape)), dtype=grad_output.dtype)
            ones, zeros = np.ones(c, dtype=grad_output.dtype), np.zeros(c, dtype=grad_output.dtype)
            numba_norm.batch_norm_eval_kernel(
                *cache.source, cache.shape, cache.running_mean, cache.inv_std, ones, zeros, normalized
            )
        grad_flat, grad_plane_c, grad_plane_n = plane_layout(grad_output)
        out = np.empty(cache.shape if need_input_grad else (1, 1, 1, 1), dtype=grad_output.dtype)
        grad_weight = np.empty(c, dtype=np.float64)
        grad_bias = np.empty(c, dtype=np.float64)
        relu = cache.activated is not None
        activated = cache.activated if relu else normalized[:1]
        numba_norm.batch_norm_backward_kernel(
            grad_flat, grad_plane_c, grad_plane_n, normalized, cache.shape, cache.weight, cache.inv_std,
            cache.batch_statistics, relu, activated, bool(need_input_grad), out.reshape(-1), grad_weight, grad_bias,
        )  # fmt: skip
        dtype = grad_output.dtype
        grad_input = as_nchw(out) if need_input_grad else None
        return grad_input, grad_weight.astype(dtype), grad_bias.astype(dtype)

    def sgd_update(self, param, grad, velocity, lr, momentum, weight_decay):
        arrays = (param, grad) if velocity is None else (param, grad, velocity)
        dtype = param.dtype
        if dtype not in (np.float32, np.float64) or any(
            a.dtype != dtype or a.shape != param.shape or not a.flags.c_contiguous for a in arrays
        ):
            return super().sgd_update(param, grad, velocity, lr, momentum, weight_decay)
        scalar = dtype.type  # as NumPy rounds a Python float meeting a float32 array
        numba_kernels.sgd_update_kernel(
            param.reshape(-1), grad.reshape(-1), (param if velocity is None else velocity).reshape(-1),
            scalar(lr), scalar(momentum), scalar(weight_decay), velocity is not None,
        )  # fmt: skip
