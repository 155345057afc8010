"""The SIMD vector value the register-blocked kernels are written with (numcnn.kernels.simd)."""

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from numcnn.kernels.simd import (  # noqa: E402
    VECTOR_BITS,
    lanes_for,
    vfma,
    vlanes,
    vload,
    vselect_greater,
    vsplat,
    vstore,
    vstore_int32,
    vsum,
)


@numba.njit
def _fma_rows(a, b, c, out):
    """``out = a·b + c`` a vector at a time, then the lanes of the first vector of ``out`` summed."""
    lanes = vlanes(out)
    for t in range(0, out.shape[0], lanes):
        vstore(out, t, vfma(vload(a, t), vload(b, t), vload(c, t)))
    return vsum(vload(out, 0)), lanes


@numba.njit
def _scaled_sum(x, scale):
    lanes = vlanes(x)
    total = vsplat(x.dtype.type(0))
    for t in range(0, x.shape[0], lanes):
        total = vfma(vsplat(scale), vload(x, t), total)
    return vsum(total)


@pytest.mark.parametrize("dtype, bits", [(np.float32, 32), (np.float64, 64)])
def test_vector_operations_equal_numpy(dtype, bits, rng):
    lanes = VECTOR_BITS // bits  # one 256-bit register
    assert lanes_for(dtype) == lanes
    a, b, c = (rng.standard_normal(4 * lanes).astype(dtype) for _ in range(3))
    out = np.zeros_like(a)
    first_sum, reported_lanes = _fma_rows(a, b, c, out)
    assert reported_lanes == lanes
    # x87 extended precision (64-bit significand) is close enough to exact for one rounding to float64.
    exact = a.astype(np.longdouble) * b.astype(np.longdouble) + c.astype(np.longdouble)
    np.testing.assert_allclose(out, exact.astype(dtype), rtol=np.finfo(dtype).eps)  # one rounding
    np.testing.assert_allclose(first_sum, out[:lanes].sum(dtype=np.float64), rtol=4 * np.finfo(dtype).eps)
    x = np.arange(1, 4 * lanes + 1, dtype=dtype)
    assert _scaled_sum(x, dtype(0.5)) == 0.5 * x.sum()  # small integers: exact in any order


def test_vector_loads_refuse_strided_arrays():
    """The loads ignore strides, so a strided view is refused when the kernel is compiled."""
    refused = (TypeError, numba.core.errors.TypingError)  # as numba passes the intrinsic's error on
    with pytest.raises(refused, match="C-contiguous 1-D array"):
        _scaled_sum(np.zeros(64)[::2], 1.0)
    with pytest.raises(refused, match="float32 or float64"):
        _scaled_sum(np.zeros(16, dtype=np.int64), 1)


@numba.njit
def _select_and_store(x, y, a, b, out, places):
    lanes = vlanes(out)
    for t in range(0, out.shape[0], lanes):
        picked = vselect_greater(vload(x, t), vload(y, t), vload(a, t), vload(b, t))
        vstore(out, t, picked)
        vstore_int32(places, t, picked)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_select_greater_is_pythons_comparison_and_int32_stores_whole_numbers(dtype):
    """``a if x > y else b`` lane by lane -- false where either side is NaN, as in Python -- and the
    picked whole numbers stored as int32 (the pooling kernels' places of the maxima)."""
    lanes = lanes_for(dtype)
    x = np.array([1, 2, np.nan, 0, -0.0, 5, 3, -1] * 2, dtype=dtype)[: 2 * lanes]
    y = np.array([0, 2, 1, np.nan, 0.0, 4, 7, -2] * 2, dtype=dtype)[: 2 * lanes]
    a = np.arange(2 * lanes, dtype=dtype) + 100
    b = -np.arange(2 * lanes, dtype=dtype) - 1
    out = np.zeros(2 * lanes, dtype=dtype)
    places = np.zeros(2 * lanes, dtype=np.int32)
    _select_and_store(x, y, a, b, out, places)
    expected = np.array([ai if xi > yi else bi for xi, yi, ai, bi in zip(x, y, a, b)], dtype=dtype)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(places, expected.astype(np.int32))
