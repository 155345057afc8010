"""Finding, verifying, downloading and loading MNIST.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0) is four IDX files (see
:mod:`numcnn.data.idx`): 60,000 training and 10,000 test images of 28x28 uint8 grey levels
(white digit, value 255, on black, value 0) and their labels 0-9.

Where the files are looked for, first match wins (:func:`mnist_search_dirs`):

1. the ``data_dir`` argument (the command line's ``--data-dir``);
2. the ``NUMCNN_DATA`` environment variable;
3. the per-user cache, ``$XDG_CACHE_HOME/numcnn`` or ``~/.cache/numcnn``.

Each of these roots may hold the files directly or in a ``mnist/`` subfolder, so
``NUMCNN_DATA=../shared/data`` finds ``../shared/data/mnist/``. Each file may be gzip-compressed
(``name.gz``, as the mirrors serve it) or not (``name``).

Files are verified against SHA-256 digests of the *decompressed* files, not of the ``.gz``
files: gzip output depends on the compressor and its settings, so the same data can arrive in
different wrappers, while the decompressed bytes are what the model actually sees.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from numcnn.data.idx import read_idx, read_payload, sha256_hex
from numcnn.errors import ConfigurationError, DataError, ShapeError, one_line

__all__ = [
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "MNIST_STD",
    "MnistData",
    "load_mnist_test",
    "download_mnist",
    "load_mnist",
    "locate_mnist",
    "mnist_search_dirs",
    "prepare_images",
    "prepare_images_backward",
    "read_idx",
    "user_cache_dir",
]

#: Base names of the four files (without ``.gz``), in the order train images, train labels,
#: test images, test labels.
MNIST_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of each decompressed file (header + payload), keyed by base name.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Mirrors serving the original ``.gz`` files, tried in order. yann.lecun.com comes last
#: because it has been rate-limiting and refusing automated downloads.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Mean and standard deviation of the training pixels scaled to [0, 1]; normalising with them
#: gives the inputs zero mean and unit variance, which keeps early activations well scaled.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801
_ENV_VAR = "NUMCNN_DATA"
_FIX_HINT = "set NUMCNN_DATA or pass --data-dir"


@dataclasses.dataclass(frozen=True)
class MnistData:
    """The four MNIST arrays (read-only, shared with the in-process cache: copy to modify).

    Attributes:
        train_images: ``(60000, 28, 28)`` uint8, 0 = background, 255 = ink.
        train_labels: ``(60000,)`` uint8 digits 0-9.
        test_images: ``(10000, 28, 28)`` uint8.
        test_labels: ``(10000,)`` uint8.
        directory: the folder the files were read from.
        verified: whether every file matched :data:`MNIST_SHA256`.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    directory: Path
    verified: bool


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/numcnn``, or ``~/.cache/numcnn`` when that variable is unset.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory spec requires.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "numcnn"


def mnist_search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the MNIST files, in priority order (see the module docstring)."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get(_ENV_VAR, "")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(user_cache_dir())
    dirs: list[Path] = []
    for root in roots:
        for candidate in (root, root / "mnist"):
            if candidate not in dirs:
                dirs.append(candidate)
    return dirs


def _find_file(directory: Path, name: str) -> Path | None:
    # The .gz form wins: it is what mirrors serve and what download_mnist writes, so a stale
    # half-extracted raw file cannot shadow a freshly downloaded archive.
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def locate_mnist(
    data_dir: str | os.PathLike[str] | None = None, files: tuple[str, ...] = MNIST_FILES
) -> Path:
    """Return the first folder of :func:`mnist_search_dirs` that holds all four MNIST files (or ``files``).

    Raises:
        DataError: no folder holds them all; the message lists every folder searched.
    """
    dirs = mnist_search_dirs(data_dir)
    partial = ""
    for directory in dirs:
        missing = [name for name in files if _find_file(directory, name) is None]
        if not missing:
            return directory
        if len(missing) < len(files) and not partial:
            # Worth saying: a folder with some of the files is almost always the one meant.
            partial = f"; {directory} lacks {', '.join(missing)}"
    looked = ", ".join(str(d) for d in dirs)
    raise DataError(
        f"MNIST files not found (need {', '.join(files)}, each .gz or uncompressed); "
        f"looked in {looked}{partial}; {_FIX_HINT}"
    )


def _default_download_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    # An explicit folder is used as given; the shared roots get the conventional mnist/ subfolder.
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(_ENV_VAR, "")
    return (Path(env).expanduser() if env else user_cache_dir()) / "mnist"


def _urlopen(url: str, timeout: float) -> IO[bytes]:
    import urllib.request  # lazily: only downloads need it, and it pulls in http/email/ssl

    return urllib.request.urlopen(url, timeout=timeout)


class _FetchFailed(Exception):
    pass


def _progress_bar(name: str, length: Any) -> Any:
    try:
        from tqdm import tqdm  # lazily: `import numcnn` must stay light
    except ImportError:  # a progress bar is a nicety, never a reason to fail a download
        return None
    total = int(length) if length and str(length).isdigit() else None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False)


def _fetch(
    url: str,
    target: Path,
    expected_sha256: str,
    opener: Callable[[str, float], Any],
    timeout: float,
    progress: bool,
) -> None:
    import http.client  # lazily, as for urllib
    import tempfile

    network_errors = (OSError, ValueError, http.client.HTTPException)
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
    except OSError as exc:
        raise DataError(f"{target.parent}: cannot write downloads ({one_line(exc)})") from None
    tmp = Path(tmp_name)
    bar = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = opener(url, timeout)
                with response:
                    length = getattr(response, "headers", {}).get("Content-Length")
                    if progress:
                        bar = _progress_bar(target.name, length)
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            except network_errors as exc:
                raise _FetchFailed(one_line(exc)) from None
        try:
            got = sha256_hex(read_payload(tmp))
        except DataError:
            raise _FetchFailed("truncated or corrupt gzip stream") from None
        if got != expected_sha256:
            raise _FetchFailed(f"checksum mismatch (expected {expected_sha256}, got {got})")
        # Atomic on POSIX and Windows: readers never see a half-written file under the real name.
        os.replace(tmp, target)
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def _payload_matches(path: Path, expected_sha256: str) -> bool:
    try:
        return sha256_hex(read_payload(path)) == expected_sha256
    except DataError:
        return False


def download_mnist(
    directory: str | os.PathLike[str],
    mirrors: Iterable[str] | None = None,
    progress: bool = True,
    *,
    opener: Callable[[str, float], Any] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download the four original ``.gz`` files into ``directory`` and verify them.

    Files already present whose decompressed payload matches :data:`MNIST_SHA256` are kept.
    Each missing file is fetched from the first mirror that works: it is streamed to a
    temporary file in ``directory`` (with a tqdm progress bar if ``progress``), its
    decompressed payload is checked, and only then is it renamed into place, atomically.

    Args:
        directory: destination folder, created if needed.
        mirrors: base URLs, tried in order; ``None`` means :data:`MNIST_MIRRORS`.
        progress: show a progress bar per file on stderr.
        opener: ``opener(url, timeout)`` returning a binary file-like object (usable in a
            ``with`` statement; ``.headers`` optional); default ``urllib.request.urlopen``.
            Tests pass a fake here, or use ``file://`` mirrors.
        timeout: seconds before a stalled connection is abandoned.

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: the folder cannot be written, or a file failed on every mirror (the
            one-line message lists each URL tried and why it failed).
    """
    directory = Path(directory).expanduser()
    mirrors = tuple(MNIST_MIRRORS if mirrors is None else mirrors)
    if not mirrors:
        raise DataError(f"{directory}: cannot download MNIST: no mirrors given")
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{directory}: cannot create download folder ({one_line(exc)})") from None
    try:
        _download_files(directory, mirrors, opener, timeout, progress)
    except BaseException:
        # A failed download leaves no trace: the folders made for it go again, if nothing else is in them.
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return directory


def _download_files(directory: Path, mirrors: tuple[str, ...], opener, timeout: float, progress) -> None:
    for name in MNIST_FILES:
        target = directory / f"{name}.gz"
        expected = MNIST_SHA256[name]
        if target.is_file() and _payload_matches(target, expected):
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + target.name
            try:
                _fetch(url, target, expected, opener or _urlopen, timeout, progress)
                break
            except _FetchFailed as exc:
                failures.append(f"{url} ({exc})")
        else:
            raise DataError(f"{target}: download failed from every mirror: {'; '.join(failures)}")


def _check_kind(array: np.ndarray, path: Path, images: bool) -> None:
    magic, kind, ndim = (_IMAGE_MAGIC, "images", 3) if images else (_LABEL_MAGIC, "labels", 1)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise DataError(
            f"{path}: expected IDX magic 0x{magic:08x} (uint8 {kind}, {ndim}-D), "
            f"got {array.dtype} {array.ndim}-D data"
        )
    if images and array.shape[1:] != (28, 28):
        raise DataError(f"{path}: expected 28x28 images, got {array.shape[1]}x{array.shape[2]}")


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False, verify: bool = True
) -> MnistData:
    """Load MNIST from the first folder of :func:`mnist_search_dirs` that holds it.

    Parsed arrays are cached in-process (see :func:`~numcnn.data.idx.read_idx`), so repeated
    calls cost microseconds; a cold load of all 70,000 images takes a few tenths of a second.

    Args:
        data_dir: folder searched first (the command line's ``--data-dir``).
        download: if the files are found nowhere, download them (into ``data_dir`` if given,
            else into ``$NUMCNN_DATA/mnist`` or the user cache's ``mnist/``) instead of failing.
        verify: check each decompressed file against :data:`MNIST_SHA256`; turn off only for
            deliberately different files in MNIST's format.

    Returns:
        :class:`MnistData` with ``(N, 28, 28)`` uint8 images and ``(N,)`` uint8 labels.

    Raises:
        DataError: files missing (the message lists the folders searched), unreadable,
            corrupt, failing verification, of the wrong kind, with labels outside 0-9, or
            with image and label counts that disagree.
    """
    directory, arrays = _read_checked(data_dir, MNIST_FILES, download, verify)
    train_images, train_labels, test_images, test_labels = arrays
    return MnistData(train_images, train_labels, test_images, test_labels, directory=directory, verified=verify)


def prepare_images(
    images: np.ndarray,
    *,
    padding: int = 0,
    dtype: Any = np.float32,
    mean: float = MNIST_MEAN,
    std: float = MNIST_STD,
) -> np.ndarray:
    """Turn ``(N, H, W)`` images into the ``(N, 1, H + 2p, W + 2p)`` normalised network input.

    Integer images are taken as grey levels 0-255 and floating ones as already in [0, 1]
    (what :func:`numcnn.data.images.load_digit_image` returns); either is mapped to
    ``(x - mean) / std``. Pass ``mean=0, std=1`` for plain [0, 1] inputs.

    ``padding`` adds a border of *background* (``(0 - mean) / std``, not 0): LeNet-5 takes
    32x32 inputs, i.e. MNIST's 28x28 padded by 2, and the border must look like blank paper.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ShapeError(f"prepare_images: expected (N, H, W) images, got shape {images.shape}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ConfigurationError(f"prepare_images: padding must be an int >= 0, got {padding!r}")
    if not std > 0:
        raise ConfigurationError(f"prepare_images: std must be > 0, got {std!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ConfigurationError(f"prepare_images: dtype must be floating, got {dtype}")
    n, h, w = images.shape
    p = int(padding)
    scale = 1.0 / 255.0 if images.dtype.kind in "ui" else 1.0
    out = np.empty((n, 1, h + 2 * p, w + 2 * p), dtype=dtype)
    if p:
        background = dtype.type(-mean / std)
        out[:, :, :p, :] = background
        out[:, :, -p:, :] = background
        out[:, :, :, :p] = background
        out[:, :, :, -p:] = background
    inner = out[:, 0, p : p + h, p : p + w]
    # One fused pass straight into the output: no float64 temporary of the whole data set.
    np.multiply(images, scale / std, out=inner, dtype=dtype, casting="unsafe")
    inner -= dtype.type(mean / std)
    return out


def prepare_images_backward(grad_inputs: np.ndarray, *, padding: int = 0, std: float = MNIST_STD) -> np.ndarray:
    """The derivative of :func:`prepare_images` for floating images: ``∂E/∂pixels`` from ``∂E/∂input``.

    The input is ``(pixel − mean) / std`` inside a constant border of width ``padding``, so
    ``∂E/∂pixel = ∂E/∂input / std`` on the inner ``H × W`` window and the border gets no gradient.
    The result is in pixel units of [0, 1] (for 0-255 grey levels divide it by 255).

    Shape: ``(N, 1, H + 2p, W + 2p)`` → ``(N, H, W)``.
    """
    grad_inputs = np.asarray(grad_inputs)
    if grad_inputs.ndim != 4 or grad_inputs.shape[1] != 1:
        raise ShapeError(f"prepare_images_backward: expected (N, 1, H, W) gradients, got shape {grad_inputs.shape}")
    p = int(padding)
    h, w = grad_inputs.shape[2] - 2 * p, grad_inputs.shape[3] - 2 * p
    if h < 1 or w < 1:
        raise ShapeError(f"prepare_images_backward: padding {p} leaves no image in shape {grad_inputs.shape}")
    return grad_inputs[:, 0, p : p + h, p : p + w] / std


#: The two files of MNIST's test set, all that evaluating a trained model needs.
MNIST_TEST_FILES = MNIST_FILES[2:]


def load_mnist_test(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images ``(10000, 28, 28)`` and labels ``(10000,)`` of MNIST, read from the first
    folder of :func:`mnist_search_dirs` that holds the two test files (the training files may be absent).

    Raises:
        DataError: as :func:`load_mnist`, for the two test files.
    """
    _, (images, labels) = _read_checked(data_dir, MNIST_TEST_FILES, download, verify)
    return images, labels


def _read_checked(
    data_dir: str | os.PathLike[str] | None, names: tuple[str, ...], download: bool, verify: bool
) -> tuple[Path, list[np.ndarray]]:
    """Locate (or download) the folder holding ``names`` -- (images, labels) pairs in MNIST's order --
    and read them, checked: kind, checksum when ``verify``, equal counts per pair, labels 0-9."""
    try:
        directory = locate_mnist(data_dir, names)
    except DataError:
        if not download:
            raise
        directory = download_mnist(_default_download_dir(data_dir))
    found = [_find_file(directory, name) for name in names]
    paths = [path for path in found if path is not None]
    if len(paths) != len(found):  # deleted between locating and reading
        raise DataError(f"{directory}: MNIST files disappeared while loading; {_FIX_HINT}")
    arrays = []
    for name, path in zip(names, paths):
        array = read_idx(path, sha256=MNIST_SHA256[name] if verify else None)
        _check_kind(array, path, images="images" in name)
        arrays.append(array)
    for first in range(0, len(arrays), 2):
        images, labels = arrays[first], arrays[first + 1]
        image_path, label_path = paths[first], paths[first + 1]
        if len(images) != len(labels):
            raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise DataError(f"{label_path}: label {int(labels.max())} is outside 0-9")
    return directory, arrays
