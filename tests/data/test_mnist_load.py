"""load_mnist / locate_mnist on small synthetic MNIST sets, and prepare_images."""

from __future__ import annotations

import numpy as np
import pytest

from numcnn.data import (
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_STD,
    load_mnist,
    locate_mnist,
    mnist_search_dirs,
    prepare_images,
    user_cache_dir,
)
from numcnn.errors import ConfigurationError, DataError, ShapeError

# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_loads_synthetic_set(tmp_path, make_mnist, gz):
    make_mnist(tmp_path, gz=gz, n_train=12, n_test=5)
    data = load_mnist(tmp_path)
    assert data.directory == tmp_path and data.verified
    assert data.train_images.shape == (12, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (5, 28, 28)
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert data.test_labels.tolist() == [3, 4, 5, 6, 7]


def test_raw_file_accepted_next_to_gz_files(tmp_path, make_mnist, idx_tools):
    make_mnist(tmp_path)
    gz = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(idx_tools.synthetic_payloads()["t10k-labels-idx1-ubyte"])
    gz.unlink()
    assert load_mnist(tmp_path).test_labels.tolist() == [3, 4, 5, 6, 7]


def test_checksums_are_on_by_default(tmp_path, make_mnist, check_error):
    make_mnist(tmp_path, register=False)  # synthetic data cannot match the real MNIST digests
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    message = check_error(
        excinfo, "train-images-idx3-ubyte.gz", "checksum mismatch (expected ba891046"
    )
    assert "got " in message
    data = load_mnist(tmp_path, verify=False)  # user-provided files in MNIST's format
    assert not data.verified and data.train_images.shape == (12, 28, 28)


@pytest.mark.parametrize(
    ("file_name", "payload", "fragments"),
    [
        pytest.param(
            "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8),
            ("t10k-images-idx3-ubyte.gz has 5 images", "t10k-labels-idx1-ubyte.gz has 4 labels"),
            id="count mismatch names both files",
        ),
        pytest.param(
            "train-images-idx3-ubyte.gz", np.zeros(12, np.uint8),
            ("train-images-idx3-ubyte.gz", "expected IDX magic 0x00000803", "got uint8 1-D"),
            id="labels file in place of images",
        ),
        pytest.param(
            "t10k-images-idx3-ubyte.gz", np.zeros((5, 32, 32), np.uint8),
            ("t10k-images-idx3-ubyte.gz", "expected 28x28 images, got 32x32"),
            id="images must be 28x28",
        ),
        pytest.param(
            "train-labels-idx1-ubyte.gz", np.full(12, 11, np.uint8),
            ("train-labels-idx1-ubyte.gz", "label 11 is outside 0-9"),
            id="labels outside 0 to 9",
        ),
    ],
)  # fmt: skip
def test_a_wrong_file_in_the_set_is_named_with_its_problem(
    tmp_path, make_mnist, idx_tools, check_error, file_name, payload, fragments
):
    make_mnist(tmp_path, register=False)
    idx_tools.write_file(tmp_path / file_name, idx_tools.idx_bytes(payload))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path, verify=False)
    check_error(excinfo, *fragments)


def test_corrupt_file_inside_set(tmp_path, make_mnist, check_error):
    make_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    check_error(excinfo, "train-labels-idx1-ubyte.gz", "truncated or corrupt gzip stream")


def test_missing_files_message_lists_dirs_and_fix(tmp_path, make_mnist, monkeypatch, check_error):
    make_mnist(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("NUMCNN_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path / "partial")
    check_error(
        excinfo,
        "MNIST files not found",
        str(tmp_path / "partial"),
        str(tmp_path / "env" / "mnist"),
        str(user_cache_dir() / "mnist"),
        "lacks t10k-labels-idx1-ubyte",
        "set NUMCNN_DATA or pass --data-dir",
    )


def test_missing_files_never_download_by_default(tmp_path, monkeypatch):
    from numcnn.data import mnist

    def forbidden(*args, **kwargs):
        raise AssertionError("download_mnist must not run unless download=True")

    monkeypatch.setattr(mnist, "download_mnist", forbidden)
    with pytest.raises(DataError):
        load_mnist(tmp_path)


# --- search order --------------------------------------------------------------------------


@pytest.fixture
def three_roots(tmp_path, make_mnist, monkeypatch):
    """A valid set under an explicit dir, under $NUMCNN_DATA/mnist and in the user cache."""
    explicit = make_mnist(tmp_path / "explicit")
    env_root = tmp_path / "env"
    make_mnist(env_root / "mnist")
    monkeypatch.setenv("NUMCNN_DATA", str(env_root))
    make_mnist(user_cache_dir())
    return explicit, env_root / "mnist", user_cache_dir()


def test_data_dir_beats_env_beats_cache(three_roots):
    explicit, env_dir, cache = three_roots
    assert locate_mnist(explicit) == explicit
    assert load_mnist(explicit).directory == explicit
    assert locate_mnist() == env_dir
    for name in MNIST_FILES:
        (env_dir / f"{name}.gz").unlink()
    assert locate_mnist() == cache
    assert load_mnist().directory == cache


def test_explicit_dir_without_files_falls_through(three_roots, tmp_path):
    _, env_dir, _ = three_roots
    assert locate_mnist(tmp_path / "empty") == env_dir


def test_search_dirs_order_and_mnist_subfolders(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMCNN_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_search_dirs(tmp_path / "cli") == [
        tmp_path / "cli",
        tmp_path / "cli" / "mnist",
        tmp_path / "shared",
        tmp_path / "shared" / "mnist",
        tmp_path / "xdg" / "numcnn",
        tmp_path / "xdg" / "numcnn" / "mnist",
    ]


def test_cache_dir_falls_back_to_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == tmp_path / ".cache" / "numcnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    assert user_cache_dir() == tmp_path / ".cache" / "numcnn"


# --- prepare_images ------------------------------------------------------------------------


def test_prepare_images_normalises_and_pads():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = prepare_images(images, padding=2)
    assert out.shape == (1, 1, 6, 6) and out.dtype == np.float32
    expected = (images / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(out[0, 0, 2:4, 2:4], expected[0], rtol=1e-6, atol=1e-6)
    border = np.ones((6, 6), bool)
    border[2:4, 2:4] = False
    np.testing.assert_allclose(out[0, 0][border], -MNIST_MEAN / MNIST_STD, rtol=1e-6)


def test_prepare_images_float_input_and_plain_scaling():
    images = np.array([[[0.0, 1.0], [0.5, 0.25]]])
    out = prepare_images(images, dtype=np.float64, mean=0.0, std=1.0)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], images[0])
    grey_levels = np.array([[[0, 255], [127, 64]]], dtype=np.uint8)
    np.testing.assert_allclose(
        prepare_images(grey_levels, dtype=np.float64, mean=0.0, std=1.0)[0, 0],
        [[0.0, 1.0], [127 / 255, 64 / 255]],
        rtol=1e-12,
    )


def test_prepare_images_rejects_bad_arguments():
    with pytest.raises(ShapeError):
        prepare_images(np.zeros((28, 28), np.uint8))
    with pytest.raises(ConfigurationError):
        prepare_images(np.zeros((1, 28, 28), np.uint8), padding=-1)
    with pytest.raises(ConfigurationError):
        prepare_images(np.zeros((1, 28, 28), np.uint8), std=0.0)
    with pytest.raises(ConfigurationError):
        prepare_images(np.zeros((1, 28, 28), np.uint8), dtype=np.int32)
