"""read_idx: the IDX format, gzip detection, corruption checks, checksums and the cache."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest

from numcnn.data import clear_cache, read_idx
from numcnn.errors import DataError


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_uint8_images_round_trip_without_copy(tmp_path, idx_tools, gz):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = idx_tools.write_file(tmp_path / "imgs", idx_tools.idx_bytes(images), gz=gz)

    got = read_idx(path)

    assert got.dtype == np.uint8 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, images)
    assert not got.flags.owndata, "uint8 payload should be a view of the decompressed bytes"
    assert not got.flags.writeable, "cached arrays are shared, so they must be read-only"


def test_labels_magic_2049_gives_1d(tmp_path, idx_tools):
    payload = idx_tools.idx_bytes(np.array([5, 0, 4, 1], dtype=np.uint8))
    assert payload[:4] == (2049).to_bytes(4, "big")
    got = read_idx(idx_tools.write_file(tmp_path / "labels.gz", payload))
    assert got.shape == (4,) and got.tolist() == [5, 0, 4, 1]


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_general_idx_types_are_decoded_big_endian(tmp_path, idx_tools, dtype):
    array = (np.arange(-6, 6).reshape(2, 3, 2) * 3).astype(dtype)
    got = read_idx(idx_tools.write_file(tmp_path / "x.idx", idx_tools.idx_bytes(array), gz=False))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_gzip_is_detected_by_magic_bytes_not_name(tmp_path, idx_tools):
    array = np.full((2, 2), 7, dtype=np.uint8)
    payload = idx_tools.idx_bytes(array)
    compressed_named_raw = idx_tools.write_file(tmp_path / "a.idx", payload, gz=True)
    raw_named_gz = idx_tools.write_file(tmp_path / "b.gz", payload, gz=False)
    np.testing.assert_array_equal(read_idx(compressed_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_truncated_gzip(tmp_path, idx_tools, check_error):
    blob = gzip.compress(idx_tools.idx_bytes(np.zeros((50, 28, 28), np.uint8)) + os.urandom(2000))
    path = tmp_path / "cut-images.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "cut-images.gz", "truncated or corrupt gzip stream")


def test_corrupt_gzip_body(tmp_path, idx_tools, check_error):
    blob = bytearray(gzip.compress(os.urandom(5000)))
    blob[20:40] = bytes(20)  # inside the deflate stream
    blob[-8:-4] = bytes(4)  # and a wrong CRC, in case the deflate data still decodes
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "bad.gz", "truncated or corrupt gzip stream")


@pytest.mark.parametrize(
    "head",
    [b"\x12\x34\x56\x78", b"\x00\x00\x07\x01", b"\x01\x00\x08\x01"],
    ids=["junk", "unknown-type", "nonzero-lead"],
)
def test_wrong_magic(tmp_path, idx_tools, check_error, head):
    payload = head + idx_tools.idx_bytes(np.zeros(4, np.uint8))[4:]
    path = idx_tools.write_file(tmp_path / "weird.gz", payload)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "weird.gz", "not an IDX file", f"0x{head.hex()}")


def test_truncated_header(tmp_path, idx_tools, check_error):
    path = idx_tools.write_file(tmp_path / "short", b"\x00\x00\x08\x03\x00\x00\x00\x02", gz=False)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "short", "truncated IDX header")


def test_payload_shorter_than_dims(tmp_path, idx_tools, check_error):
    payload = idx_tools.idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-100]
    path = idx_tools.write_file(tmp_path / "train-images-idx3-ubyte.gz", payload)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "train-images-idx3-ubyte.gz", "payload length mismatch")
    check_error(excinfo, "header says 3x28x28 = 2352 bytes, file has 2252")


def test_trailing_bytes(tmp_path, idx_tools, check_error):
    payload = idx_tools.idx_bytes(np.zeros(10, np.uint8)) + b"extra"
    path = idx_tools.write_file(tmp_path / "labels.gz", payload)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    check_error(excinfo, "labels.gz", "5 trailing bytes")


def test_missing_file(tmp_path, check_error):
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "nope.gz")
    check_error(excinfo, "nope.gz", "file not found")


def test_directory_instead_of_file(tmp_path, check_error):
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path)
    check_error(excinfo, str(tmp_path), "cannot read")


def test_checksum_of_decompressed_payload(tmp_path, idx_tools, check_error):
    payload = idx_tools.idx_bytes(np.arange(10, dtype=np.uint8))
    path = idx_tools.write_file(tmp_path / "labels.gz", payload)
    good = hashlib.sha256(payload).hexdigest()
    np.testing.assert_array_equal(read_idx(path, sha256=good), np.arange(10))
    # The digest of the .gz bytes is *not* what is checked.
    gz_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as excinfo:
        read_idx(path, sha256=gz_digest)
    check_error(excinfo, "labels.gz", f"checksum mismatch (expected {gz_digest}, got {good})")


def test_cache_returns_same_array_and_notices_rewrites(tmp_path, idx_tools):
    path = idx_tools.write_file(tmp_path / "x.gz", idx_tools.idx_bytes(np.zeros(5, np.uint8)))
    first = read_idx(path)
    assert read_idx(path) is first
    idx_tools.write_file(path, idx_tools.idx_bytes(np.ones(7, np.uint8)))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-timestamp file systems
    second = read_idx(path)
    assert second.tolist() == [1] * 7
    clear_cache()
    assert read_idx(path) is not second
