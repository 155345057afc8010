"""download_mnist against local file:// mirrors and fake openers -- never the network."""

from __future__ import annotations

import io
import urllib.error

import pytest

from numcnn.data import MNIST_FILES, download_mnist, load_mnist, mnist, user_cache_dir
from numcnn.errors import DataError


@pytest.fixture
def good_mirror(tmp_path, make_mnist):
    """A folder of valid synthetic .gz files (checksums registered) and its file:// URL."""
    folder = make_mnist(tmp_path / "good-mirror")
    return folder, folder.as_uri() + "/"


def _downloaded(directory):
    return sorted(p.name for p in directory.iterdir())


def test_downloads_and_verifies_from_file_mirror(tmp_path, good_mirror):
    folder, url = good_mirror
    target = tmp_path / "dest"
    assert download_mnist(target, [url], progress=False) == target
    assert _downloaded(target) == sorted(f"{name}.gz" for name in MNIST_FILES)
    for name in MNIST_FILES:
        assert (target / f"{name}.gz").read_bytes() == (folder / f"{name}.gz").read_bytes()
    assert load_mnist(target).verified


def test_falls_back_from_failing_mirrors(tmp_path, good_mirror, idx_tools):
    _, good_url = good_mirror
    missing_url = (tmp_path / "no-such-mirror").as_uri()  # no trailing slash: one is added
    wrong = tmp_path / "wrong-mirror"  # serves well-formed files with the wrong content
    for name, payload in idx_tools.synthetic_payloads(seed=99).items():
        idx_tools.write_file(wrong / f"{name}.gz", payload)
    target = tmp_path / "dest"
    download_mnist(target, [missing_url, wrong.as_uri(), good_url], progress=True)
    assert _downloaded(target) == sorted(f"{name}.gz" for name in MNIST_FILES)  # no .part left
    assert load_mnist(target).train_images.shape == (12, 28, 28)


def test_all_mirrors_failing_gives_one_line_error(tmp_path, good_mirror, check_error):
    folder, _ = good_mirror
    broken = tmp_path / "broken-mirror"
    broken.mkdir()
    for name in MNIST_FILES:  # truncated copies of the good files
        (broken / f"{name}.gz").write_bytes((folder / f"{name}.gz").read_bytes()[:30])
    target = tmp_path / "dest"
    with pytest.raises(DataError) as excinfo:
        download_mnist(target, [(tmp_path / "gone").as_uri(), broken.as_uri()], progress=False)
    message = check_error(
        excinfo,
        "train-images-idx3-ubyte.gz: download failed from every mirror",
        f"{(tmp_path / 'gone').as_uri()}/train-images-idx3-ubyte.gz (",
        f"{broken.as_uri()}/train-images-idx3-ubyte.gz (truncated or corrupt gzip stream)",
    )
    assert message.count(" (") == 2
    assert not target.exists()  # nothing half-written is left behind, not even the folder the download made


def test_fake_opener_checksum_mismatch_then_success(tmp_path, good_mirror, check_error):
    folder, _ = good_mirror
    calls = []

    def opener(url, timeout):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith("https://bad/"):
            return io.BytesIO((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
        if url.startswith("https://down/"):
            raise urllib.error.URLError("connection refused")
        return io.BytesIO((folder / name).read_bytes())

    target = tmp_path / "dest"
    download_mnist(target, ["https://down", "https://bad/", "https://ok/"], False, opener=opener)
    assert len(calls) == 4 * 3 - 1  # t10k-labels succeeds on the "bad" mirror, which has it
    assert load_mnist(target).verified

    with pytest.raises(DataError) as excinfo:
        download_mnist(tmp_path / "other", ["https://bad/"], False, opener=opener)
    check_error(excinfo, "https://bad/train-images-idx3-ubyte.gz (checksum mismatch (expected ")


def test_existing_valid_files_are_not_downloaded_again(tmp_path, make_mnist):
    target = make_mnist(tmp_path / "dest")

    def opener(url, timeout):
        raise AssertionError(f"unexpected download of {url}")

    assert download_mnist(target, ["https://unused/"], progress=False, opener=opener) == target


def test_default_mirrors_and_opener_are_used(tmp_path, good_mirror, monkeypatch):
    _, url = good_mirror
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url,))
    download_mnist(tmp_path / "dest", progress=False)
    assert load_mnist(tmp_path / "dest").verified


def test_load_mnist_downloads_only_when_asked(tmp_path, good_mirror, monkeypatch, check_error):
    _, url = good_mirror
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url,))
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path / "cli-dir")
    check_error(excinfo, "MNIST files not found", str(tmp_path / "cli-dir"))

    data = load_mnist(tmp_path / "cli-dir", download=True)  # into the explicit folder as given
    assert data.directory == tmp_path / "cli-dir" and data.verified

    data = load_mnist(download=True)  # no folder given: into the user cache's mnist/
    assert data.directory == user_cache_dir() / "mnist"
    assert len(list((user_cache_dir() / "mnist").glob("*.gz"))) == 4


def test_no_mirrors_and_unwritable_target(tmp_path, check_error):
    with pytest.raises(DataError) as excinfo:
        download_mnist(tmp_path / "dest", [], progress=False)
    check_error(excinfo, "no mirrors given")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as excinfo:
        download_mnist(blocker / "dest", ["https://unused/"], progress=False)
    check_error(excinfo, "a-file", "cannot create download folder")


def test_network_guard_is_active():
    # The autouse fixture must stop any real URL; this proves a forgotten patch cannot download.
    with pytest.raises(AssertionError, match="test tried to download"):
        mnist._urlopen("https://example.invalid/x", 1.0)
