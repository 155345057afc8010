"""A seeded, fast subset of benchmarks/fuzz_inputs.py: malformed IDX files, images and checkpoints give a
one-line NumcnnError (or load correctly), never another exception and never silently wrong data."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from numcnn import models
from numcnn.checkpoint import load_checkpoint, save_checkpoint
from numcnn.data import load_digit_image, read_idx
from numcnn.data.idx import clear_cache
from numcnn.errors import CheckpointError, DataError, NumcnnError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LABELS = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 20) + bytes(range(10)) * 2


def corrupt(data: bytes, cut: int, flips: list[tuple[int, int]], tail: bytes) -> bytes:
    buffer = bytearray(data[: max(0, len(data) - cut)])
    for position, bit in flips:
        if buffer:
            buffer[position % len(buffer)] ^= 1 << bit
    return bytes(buffer) + tail


mutations = st.tuples(
    st.integers(0, 40), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4), st.binary(max_size=8)
)


@seed(8)
@FAST
@given(mutation=mutations, compress=st.booleans())
def test_a_damaged_idx_file_is_refused_or_read_exactly(tmp_path, mutation, compress):
    data = corrupt(LABELS, *mutation)
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(data) if compress else data)
    clear_cache()
    try:
        array = read_idx(path, sha256=hashlib.sha256(LABELS).hexdigest())
    except NumcnnError as error:
        assert "\n" not in str(error)
        return
    assert data == LABELS and array.tolist() == list(range(10)) * 2  # accepted only when undamaged


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    from numcnn.data import idx

    monkeypatch.setattr(idx, "MAX_PAYLOAD_BYTES", 1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    payload = bytes([0, 0, 8, 1]) + struct.pack(">I", 8 << 20) + bytes(8 << 20)
    bomb = compressor.compress(payload) + compressor.flush()
    (tmp_path / "bomb").write_bytes(bomb)
    clear_cache()
    with pytest.raises(DataError, match="decompresses to more than 1 MiB"):
        read_idx(tmp_path / "bomb")


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(10000, 10000), (2**31 - 1, 2**31 - 1), (100000, 1)])
def test_a_decompression_bomb_image_is_refused_before_decoding(tmp_path, size):
    pytest.importorskip("PIL")
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(*size))
    with pytest.raises(DataError) as refused:  # by numcnn's size limit or Pillow's own bomb check
        load_digit_image(path)
    assert "\n" not in str(refused.value) and str(refused.value).startswith(str(path))


@seed(9)
@FAST
@given(mutation=mutations, form=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
def test_a_damaged_image_is_refused_or_read(tmp_path, mutation, form):
    Image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    picture = Image.new("L", (40, 60), 255)
    picture.paste(0, (15, 5, 25, 55))
    picture.save(buffer, format=form)
    path = tmp_path / "digit.img"
    path.write_bytes(corrupt(buffer.getvalue(), *mutation))
    try:
        digit = load_digit_image(path)
    except NumcnnError as error:
        assert "\n" not in str(error)
        return
    assert digit.shape == (28, 28) and np.isfinite(digit).all()


@pytest.fixture(scope="module")
def checkpoint_arrays(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "model.npz"
    save_checkpoint(path, models.build("lenet5", rng=0), "lenet5", meta={"epoch": 1})
    with np.load(path, allow_pickle=False) as archive:
        return path.read_bytes(), {key: archive[key] for key in archive.files}


def damaged(arrays: dict, how: str, key: str) -> dict:
    changed = dict(arrays)
    value = changed[key]
    if how == "shape":
        changed[key] = value.reshape(-1)[:-1]
    elif how == "complex":
        changed[key] = value.astype(np.complex64)
    elif how == "integer":
        changed[key] = value.astype(np.int64)
    elif how == "text":
        changed[key] = value.astype("U4")
    elif how == "nan":
        changed[key] = np.where(np.arange(value.size).reshape(value.shape) == 0, np.nan, value)
    elif how == "missing":
        del changed[key]
    elif how == "extra":
        changed["state/ghost.weight"] = np.zeros(2, np.float32)
    elif how == "meta-list":
        changed["meta"] = np.array("[1, 2]")
    elif how == "meta-number":
        changed["meta"] = np.arange(3)
    elif how == "meta-values":
        meta = json.loads(str(arrays["meta"]))
        changed["meta"] = np.array(json.dumps({**meta, "version": "one", "dtype": [1]}))
    return changed


@seed(10)
@FAST
@given(
    how=st.sampled_from(["shape", "complex", "integer", "text", "nan", "missing", "extra", "meta-list", "meta-number",
                         "meta-values"]),
    index=st.integers(0, 9),
)  # fmt: skip
def test_a_checkpoint_with_altered_content_is_refused(tmp_path, checkpoint_arrays, how, index):
    _, arrays = checkpoint_arrays
    keys = sorted(key for key in arrays if key.startswith("state/"))
    path = tmp_path / "damaged.npz"
    np.savez(path, **damaged(arrays, how, keys[index % len(keys)]))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert "\n" not in str(refused.value)


@seed(11)
@FAST
@given(mutation=mutations)
def test_a_damaged_checkpoint_file_is_refused_or_loads_the_same_weights(tmp_path, checkpoint_arrays, mutation):
    original, arrays = checkpoint_arrays
    path = tmp_path / "damaged.npz"
    path.write_bytes(corrupt(original, *mutation))
    try:
        loaded = load_checkpoint(path)
    except NumcnnError as error:
        assert "\n" not in str(error)
        return
    for name, value in loaded.model.state_dict().items():
        assert np.array_equal(value, arrays[f"state/{name}"])


def test_a_zip_bomb_or_forged_array_header_is_refused_before_reading(tmp_path, checkpoint_arrays):
    _, arrays = checkpoint_arrays
    path = tmp_path / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    meta = io.BytesIO()
    np.lib.format.write_array(meta, arrays["meta"])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.npy", meta.getvalue())
        archive.writestr("state/0.weight.npy", header.getvalue() + bytes(1 << 16))
    with pytest.raises(CheckpointError, match="would need 4,000,000,00"):
        load_checkpoint(path)
