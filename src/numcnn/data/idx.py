"""Reader for the IDX file format in which MNIST is distributed.

IDX (Y. LeCun, http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE") is::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   size of each dimension, big-endian uint32
    rest        the elements, C order, big-endian

so MNIST images have magic 0x00000803 (2051: uint8, 3-D: count x rows x cols) and labels
0x00000801 (2049: uint8, 1-D: count). Files may be gzip-compressed (the form the mirrors serve);
gzip is detected by its magic bytes 1f 8b, not by the file name, because users rename files.

Only NumPy and the standard library are imported here, so ``import numcnn`` stays light.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import zlib
from pathlib import Path

import numpy as np

from numcnn.errors import DataError, one_line

__all__ = ["IDX_DTYPES", "clear_cache", "read_idx", "read_payload", "sha256_hex"]

#: IDX element-type byte -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
#: The largest decompressed IDX file read (MNIST's largest is 47 MB; EMNIST ByClass's 0.55 GB).
MAX_PAYLOAD_BYTES = 1 << 30


class _Problem(Exception):
    """A data problem described without the file name, which the public caller prepends."""


def _payload(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _Problem("file not found") from None
    except OSError as exc:
        raise _Problem(f"cannot read ({one_line(exc)})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        # Bounded: a gzip bomb (a few KB that inflate to gigabytes) stops at the limit.
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_PAYLOAD_BYTES + 1)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError):
        raise _Problem("truncated or corrupt gzip stream") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise _Problem(f"decompresses to more than {MAX_PAYLOAD_BYTES >> 20} MiB, far more than any MNIST file")
    return data


def read_payload(path: str | os.PathLike[str]) -> bytes:
    """Return the bytes of ``path``, decompressed when the file starts with the gzip magic 1f 8b.

    The decompressed bytes are the "payload" whose SHA-256 the MNIST tables list; they are
    identical whichever gzip wrapper (or none) a mirror used.

    Raises:
        DataError: the file is missing or unreadable, or its gzip stream is truncated or corrupt.
    """
    try:
        return _payload(Path(path))
    except _Problem as problem:
        raise DataError(f"{path}: {problem}") from None


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _parse_idx(data: bytes) -> np.ndarray:
    if len(data) < 4:
        raise _Problem(f"truncated IDX header ({len(data)} bytes)")
    zero, type_code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[0:4], "big")
    if zero != 0 or type_code not in IDX_DTYPES:
        raise _Problem(f"not an IDX file (bad magic 0x{magic:08x})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise _Problem(
            f"truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header_len})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    # Python ints, so a forged header cannot overflow the size computation.
    expected = dtype.itemsize * functools.reduce(lambda a, b: a * b, shape, 1)
    actual = len(data) - header_len
    dims = "x".join(str(s) for s in shape) or "scalar"
    if actual < expected:
        raise _Problem(
            f"payload length mismatch (header says {dims} = {expected} bytes, file has {actual})"
        )
    if actual > expected:
        raise _Problem(f"{actual - expected} trailing bytes after the {dims} payload")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    array = array.reshape(shape)
    if dtype.byteorder == ">":
        # Multi-byte IDX elements are big-endian; hand out native ones so arithmetic is fast.
        array = array.astype(dtype.newbyteorder("="))
        array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=16)
def _read_cached(
    resolved: str, _mtime_ns: int, _size: int, sha256: str | None
) -> np.ndarray | str:
    # Keyed by the file's identity *and* its mtime/size, so a rewritten file is re-read, and by
    # the expected digest, so a verified and an unverified read never share an entry. Problems
    # are returned (and so cached) as plain strings rather than raised: they are as deterministic
    # as the data, and a cached exception would keep its traceback's frames (and bytes) alive.
    try:
        data = _payload(Path(resolved))
        if sha256 is not None:
            got = sha256_hex(data)
            if got != sha256.lower():
                raise _Problem(f"checksum mismatch (expected {sha256.lower()}, got {got})")
        return _parse_idx(data)
    except _Problem as problem:
        return str(problem)


def read_idx(path: str | os.PathLike[str], *, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array.

    Args:
        path: the file; gzip compression is detected from its first two bytes.
        sha256: if given, the expected hex SHA-256 of the *decompressed* file (header and
            payload), checked before parsing.

    Returns:
        An array whose shape is the header's dimension sizes (MNIST images: ``(N, 28, 28)``
        uint8; labels: ``(N,)`` uint8). uint8 data is a zero-copy ``np.frombuffer`` view of
        the decompressed bytes. The array is **read-only** because results are cached
        in-process (keyed by resolved path, mtime and size) and shared between callers:
        copy it before modifying it.

    Raises:
        DataError: missing/unreadable file, truncated or corrupt gzip stream, checksum
            mismatch, bad magic, truncated header, payload shorter than the header's
            dimensions, or trailing bytes. The message is one line starting with the path.
    """
    try:
        resolved = Path(path).resolve()
        stat = resolved.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None
    result = _read_cached(str(resolved), stat.st_mtime_ns, stat.st_size, sha256)
    if isinstance(result, str):
        raise DataError(f"{path}: {result}") from None
    return result


def clear_cache() -> None:
    """Forget every array cached by :func:`read_idx` (frees the memory they hold)."""
    _read_cached.cache_clear()
