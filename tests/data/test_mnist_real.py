"""The real MNIST files (skipped unless NUMCNN_DATA points at them, e.g. ../shared/data)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from numcnn.data import (
    MNIST_SHA256,
    clear_cache,
    digit_from_array,
    load_mnist,
    locate_mnist,
    prepare_images,
    read_idx,
)
from numcnn.data.idx import read_payload
from numcnn.errors import DataError

# Published class counts of the MNIST training and test sets.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_real_mnist_loads_verified(real_mnist_dir, monkeypatch):
    monkeypatch.setenv("NUMCNN_DATA", str(real_mnist_dir))
    assert locate_mnist() == real_mnist_dir
    data = load_mnist(verify=True)
    assert data.verified and data.directory == real_mnist_dir
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.train_labels.shape == (60000,) and data.train_labels.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28) and data.test_images.dtype == np.uint8
    assert data.test_labels.shape == (10000,) and data.test_labels.dtype == np.uint8
    assert int(data.train_labels[0]) == 5 and int(data.test_labels[0]) == 7
    assert np.bincount(data.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(data.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert sum(TRAIN_COUNTS) == 60000 and sum(TEST_COUNTS) == 10000
    for images in (data.train_images, data.test_images):
        assert images.min() == 0 and images.max() == 255
    assert abs(data.train_images.mean() / 255 - 0.1307) < 5e-5  # the MNIST_MEAN constant


@pytest.mark.slow
def test_real_mnist_normalisation_constants(real_mnist_dir):
    # MNIST_MEAN/MNIST_STD are the training set's statistics, so the prepared set is standardised.
    x = prepare_images(load_mnist(real_mnist_dir).train_images)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert abs(float(x.mean(dtype=np.float64))) < 1e-3
    assert abs(float(x.std()) - 1.0) < 1e-3


@pytest.mark.slow
def test_real_mnist_second_load_comes_from_the_cache(real_mnist_dir):
    # No wall-clock limits: on a shared machine they fail at random. The cache hit is shown by
    # identity instead: a warm load returns the very arrays of the first one, not fresh copies.
    clear_cache()
    first = load_mnist(real_mnist_dir)
    second = load_mnist(real_mnist_dir)
    assert second.train_images is first.train_images and second.train_labels is first.train_labels
    assert second.test_images is first.test_images and second.test_labels is first.test_labels


def test_truncated_real_gzip(real_mnist_dir, tmp_path, check_error):
    source = real_mnist_dir / "t10k-labels-idx1-ubyte.gz"
    if not source.is_file():
        pytest.skip("needs the gzip-compressed t10k labels")
    blob = source.read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(blob[: len(blob) - 100])
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    check_error(excinfo, "t10k-labels-idx1-ubyte.gz", "truncated or corrupt gzip stream")


def test_real_file_with_one_flipped_byte_fails_checksum(real_mnist_dir, tmp_path, check_error):
    name = "t10k-labels-idx1-ubyte"
    source = next(p for p in (real_mnist_dir / f"{name}.gz", real_mnist_dir / name) if p.is_file())
    payload = bytearray(read_payload(source))
    payload[-1] = (payload[-1] + 1) % 10  # still a valid label, so only the checksum can tell
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(payload))
    with pytest.raises(DataError) as excinfo:
        read_idx(path, sha256=MNIST_SHA256["t10k-labels-idx1-ubyte"])
    check_error(excinfo, "t10k-labels-idx1-ubyte", "checksum mismatch (expected ff7bcfd4")


def test_real_files_uncompressed_are_accepted(real_mnist_dir, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    if not (real_mnist_dir / f"{name}.gz").is_file():
        pytest.skip("needs the gzip-compressed t10k labels")
    with gzip.open(real_mnist_dir / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
        shutil.copyfileobj(src, dst)
    labels = read_idx(tmp_path / name, sha256=MNIST_SHA256[name])
    assert labels.shape == (10000,) and labels[0] == 7


def test_digit_preprocessing_nearly_reproduces_mnist(real_mnist_dir):
    # MNIST digits already are what digit_from_array aims for, so it should barely change them;
    # this checks the 20-px box and the (14, 14) centre-of-mass convention against the real data.
    pytest.importorskip("PIL")
    test_images = load_mnist(real_mnist_dir).test_images[:100]
    diffs = [np.abs(digit_from_array(x) - x / 255.0).mean() for x in test_images]
    assert np.median(diffs) < 0.01 and max(diffs) < 0.1
