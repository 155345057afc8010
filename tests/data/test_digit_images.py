"""digit_from_array / load_digit_image: any picture of a digit -> an MNIST-like 28x28 array.

Convention checked here: the ink's centre of mass lands within 0.5 px of (row 14, column 14),
pixel centres at integer indices 0-27 -- the mean centre of mass of MNIST's training images.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from numcnn.data import CENTRE_OF_MASS, digit_from_array, load_digit_image
from numcnn.errors import DataError, ShapeError

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def draw_one(width: int = 120, height: int = 200, ink: int = 0, paper: int = 255) -> np.ndarray:
    """A thick, off-centre "1" with a flag: dark ink on light paper by default."""
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    draw.line([(70, 25), (70, 180)], fill=ink, width=18)
    draw.line([(70, 25), (40, 60)], fill=ink, width=14)
    return np.asarray(image)


def draw_ring(size: int = 150) -> np.ndarray:
    """A "0": a thick ring, light ink on dark paper, placed near a corner."""
    image = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(image).ellipse([10, 10, 10 + size, 10 + int(size * 1.4)], outline=255, width=15)
    return np.asarray(image)


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(digit.shape)
    mass = digit.sum()
    return float((rows * digit).sum() / mass), float((cols * digit).sum() / mass)


def ink_box(digit: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("picture", [draw_one, draw_ring], ids=["one", "ring"])
def test_mnist_like_output(picture):
    digit = digit_from_array(picture())
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() == 0.0 and digit.max() == pytest.approx(1.0)
    assert (digit[:4] == 0).all() and (digit[-3:] == 0).all()  # blank margins, as in MNIST
    assert digit[0, 0] == 0 and digit[-1, -1] == 0
    cy, cx = centre_of_mass(digit)
    assert CENTRE_OF_MASS == (14.0, 14.0)
    assert abs(cy - 14.0) <= 0.5 and abs(cx - 14.0) <= 0.5, (cy, cx)
    assert max(ink_box(digit)) in (19, 20, 21)
    levels = digit.astype(np.float64) * 255  # MNIST stores bytes: values on the 1/255 grid
    assert np.abs(levels - np.round(levels)).max() < 1e-4


def test_aspect_ratio_is_preserved():
    height, width = ink_box(digit_from_array(draw_ring()))
    assert height == 20 and abs(width - 20 / 1.4) <= 1.5


def test_polarity_does_not_matter():
    dark_on_light = draw_one()
    light_on_dark = 255 - dark_on_light
    expected = digit_from_array(dark_on_light)
    np.testing.assert_allclose(digit_from_array(light_on_dark), expected, atol=1e-6)
    # Low-contrast pencil on grey paper normalises to the same picture too.
    faint = (100 + dark_on_light.astype(np.float64) * (60 / 255)) / 255
    np.testing.assert_allclose(digit_from_array(faint), expected, atol=2 / 255)


def test_paper_noise_is_not_ink():
    rng = np.random.default_rng(0)
    noisy = draw_one().astype(np.float64) + rng.normal(0, 4, (200, 120))
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    digit = digit_from_array(noisy)
    assert max(ink_box(digit)) in (19, 20, 21)
    assert (digit[:4] == 0).all()


@pytest.mark.parametrize(
    "blank", [np.zeros((50, 40)), np.full((30, 30), 255, np.uint8), np.full((9, 9), 0.5) + 1e-4],
)
def test_blank_image(blank, check_error):
    with pytest.raises(DataError) as excinfo:
        digit_from_array(blank, name="empty.png")
    check_error(excinfo, "empty.png: no digit found (the image is blank)")


def test_bad_arrays(check_error):
    with pytest.raises(ShapeError):
        digit_from_array(np.zeros((4, 4, 3)))
    nan = np.zeros((10, 10))
    nan[5, 5] = np.nan
    with pytest.raises(DataError) as excinfo:
        digit_from_array(nan)
    check_error(excinfo, "array: pixel values include NaN or infinity")


# --- files ---------------------------------------------------------------------------------


def test_png_and_jpeg_files_give_the_array_result(tmp_path):
    expected = digit_from_array(draw_one())
    png = tmp_path / "one.png"
    Image.fromarray(draw_one()).convert("RGB").save(png)
    np.testing.assert_allclose(load_digit_image(png), expected, atol=1e-6)
    jpeg = tmp_path / "one.jpg"
    Image.fromarray(draw_one()).save(jpeg, quality=85)
    from_jpeg = load_digit_image(jpeg)
    assert np.abs(from_jpeg - expected).mean() < 0.02
    cy, cx = centre_of_mass(from_jpeg)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_transparent_png_with_dark_ink(tmp_path):
    ink = 255 - draw_one()  # alpha: opaque where the stroke is
    rgba = np.zeros((200, 120, 4), np.uint8)  # black everywhere, even where transparent
    rgba[..., 3] = ink
    path = tmp_path / "transparent.png"
    Image.fromarray(rgba).save(path)
    np.testing.assert_allclose(load_digit_image(path), digit_from_array(draw_one()), atol=1e-6)


def test_large_photo_is_handled(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(draw_one()).resize((1200, 2000)).save(path)
    digit = load_digit_image(path)
    assert max(ink_box(digit)) in (19, 20, 21)


def test_file_errors(tmp_path, check_error):
    with pytest.raises(DataError) as excinfo:
        load_digit_image(tmp_path / "missing.png")
    check_error(excinfo, "missing.png", "file not found")

    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(DataError) as excinfo:
        load_digit_image(text)
    check_error(excinfo, "notes.png", "not an image")

    truncated = tmp_path / "cut.png"
    Image.fromarray(draw_one()).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError) as excinfo:
        load_digit_image(truncated)
    check_error(excinfo, "cut.png")

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(blank)
    with pytest.raises(DataError) as excinfo:
        load_digit_image(blank)
    check_error(excinfo, f"{blank}: no digit found (the image is blank)")


def test_missing_pillow_gives_install_hint(monkeypatch, check_error):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(DataError) as excinfo:
        load_digit_image("anything.png")
    check_error(excinfo, "reading images needs Pillow: pip install 'numcnn[image]'")


def test_importing_the_data_package_stays_light():
    code = (
        "import sys, numcnn.data; "
        "heavy = [m for m in ('PIL', 'tqdm', 'urllib.request', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
