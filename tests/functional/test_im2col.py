"""im2col / col2im / conv_output_size: seed 004's worked example, adjointness, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional import col2im, conv_output_size, im2col, im2row_matrix, pair

# Seed 004, eq. 15.19: the 3×4 image A.
SEED_004_A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=np.float64)
# Seed 004: B = im2col(A, [2 2]) in MATLAB, columns in column-major window order.
SEED_004_B = np.array(
    [
        [1, 4, 2, 5, 3, 6],
        [4, 7, 5, 8, 6, 9],
        [2, 5, 3, 6, 1, 1],
        [5, 8, 6, 9, 1, 1],
    ],
    dtype=np.float64,
)


def test_seed_004_im2col_matrix_B():
    columns = im2col(SEED_004_A[None, None], 2)  # (1, 1, 2, 2, 2, 3)
    phi = im2row_matrix(columns[0])  # (OH·OW, KH·KW) = (6, 4), row-major in both indices
    # MATLAB orders windows and kernel entries column-major: p = row + OH·col, q = i + KH·j.
    matlab_window_order = [r * 3 + c for c in range(3) for r in range(2)]
    matlab_kernel_order = [i * 2 + j for j in range(2) for i in range(2)]
    B = phi[matlab_window_order][:, matlab_kernel_order].T
    np.testing.assert_array_equal(B, SEED_004_B)


def test_seed_004_eq_15_20_product_gives_the_convolution():
    phi = im2row_matrix(im2col(SEED_004_A[None, None], 2)[0])
    result = phi @ np.ones(4)  # φ(x) F with F = vec(ones(2, 2))
    np.testing.assert_array_equal(result.reshape(2, 3), [[12, 16, 11], [24, 28, 17]])


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [(28, 5, 1, 2, 28), (28, 5, 1, 0, 24), (7, 3, 2, 1, 4), (8, 3, 2, 0, 3), (6, 6, 1, 0, 1), (5, 2, 3, 0, 2)],
)
def test_conv_output_size(size, kernel, stride, padding, expected):
    assert conv_output_size(size, kernel, stride, padding) == expected


def test_conv_output_size_rejects_kernel_larger_than_padded_input():
    with pytest.raises(ConfigurationError, match="larger than the padded input"):
        conv_output_size(4, 7, 1, 1)


def test_pair_validation():
    assert pair(3) == (3, 3)
    assert pair((2, 5)) == (2, 5)
    for bad in ("3", (1, 2, 3), 2.5, True):
        with pytest.raises(ConfigurationError):
            pair(bad, "kernel_size")


def test_im2col_rejects_non_4d_input():
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        im2col(np.zeros((3, 4)), 2)


def test_im2col_entries_follow_the_index_map(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    columns = im2col(x, (3, 2), stride=(2, 1), padding=(1, 0))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    _n, _c, _kh, _kw, oh, ow = columns.shape
    assert (oh, ow) == (conv_output_size(7, 3, 2, 1), conv_output_size(6, 2, 1, 0))
    for index in np.ndindex(columns.shape):
        b, ch, i, j, p, q = index
        assert columns[index] == padded[b, ch, p * 2 + i, q * 1 + j]


window = st.tuples(
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    vertical=window,
    horizontal=window,
    seed=st.integers(0, 2**32 - 1),
)
def test_col2im_is_the_adjoint_of_im2col(n, c, h, w, vertical, horizontal, seed):
    (kh, sh, ph), (kw, sw, pw) = vertical, horizontal
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)  # the kernel fits into the padded input
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((n, c, h, w))
    columns = im2col(x, (kh, kw), (sh, sw), (ph, pw))
    y = generator.standard_normal(columns.shape)
    left = np.sum(columns * y)  # ⟨im2col(x), y⟩
    right = np.sum(x * col2im(y, (h, w), (sh, sw), (ph, pw)))  # ⟨x, col2im(y)⟩
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


def test_col2im_counts_window_overlaps():
    # col2im of all-ones columns counts how many windows cover each pixel.
    columns = np.ones((1, 1, 2, 2, 2, 3))
    counts = col2im(columns, (3, 4), stride=1)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_col2im_rejects_inconsistent_sizes():
    with pytest.raises(ShapeError, match="do not come from an input"):
        col2im(np.ones((1, 1, 2, 2, 2, 3)), (5, 5))
