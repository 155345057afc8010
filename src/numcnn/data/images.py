"""Turn an arbitrary picture of a handwritten digit into an MNIST-like 28x28 input.

A network trained on MNIST only recognises digits that look like MNIST's, so
:func:`digit_from_array` repeats the normalisation LeCun et al. applied to the NIST scans:

1. grey levels, white digit on black (the polarity is decided from the border, which is
   background in any sensible picture of a digit);
2. a linear contrast stretch, background -> 0 and the brightest ink -> 1 (no binarisation:
   anti-aliased stroke edges keep their grey levels, as in MNIST);
3. crop to the ink's bounding box and scale it, preserving the aspect ratio and with
   anti-aliasing, so that its longer side is 20 px;
4. paste the 20x20 box into a 28x28 black canvas so that the ink's centre of mass lands on
   pixel (14, 14) (row, column; pixel centres at integer indices 0-27), shifted by whole pixels.

Why (14, 14) and not the geometric centre 13.5: measured over the 60,000 MNIST training
images, the mean centre of mass is (14.00, 14.01) with every image within 0.52 px of it,
i.e. LeCun's translation rounded to whole pixels towards (14, 14).

Pillow is imported lazily (``pip install 'numcnn[image]'``), so ``import numcnn`` never needs it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from numcnn.errors import DataError, ShapeError, one_line

__all__ = ["CANVAS_SIZE", "CENTRE_OF_MASS", "DIGIT_BOX", "digit_from_array", "load_digit_image"]

#: Side of the output image, as in MNIST.
CANVAS_SIZE = 28
#: Side of the box the digit's longer side is scaled to, as in MNIST.
DIGIT_BOX = 20
#: (row, column) where the ink's centre of mass is placed, MNIST's convention (see above).
CENTRE_OF_MASS = (14.0, 14.0)

# Ink-to-background contrast (in [0, 1] grey units) below which the picture counts as blank:
# 4 grey levels of 255, enough to ignore sensor noise on an empty sheet.
_MIN_CONTRAST = 4.0 / 255.0
# Fraction of the contrast above the background still treated as background, so paper texture
# and JPEG noise do not survive as faint ink that would inflate the bounding box.
_NOISE_FLOOR = 0.05
# Pictures are shrunk to at most this size first: the digit ends up 20 px tall anyway, and
# a 12-megapixel phone photo would otherwise cost seconds of float arithmetic.
_MAX_WORKING_SIDE = 1024
_PILLOW_HINT = "reading images needs Pillow: pip install 'numcnn[image]'"


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(_PILLOW_HINT) from None
    return Image


def _blank(name: str) -> DataError:
    return DataError(f"{name}: no digit found (the image is blank)")


def _resize(box: np.ndarray, height: int, width: int) -> np.ndarray:
    Image = _pillow()
    # Mode "F" (32-bit float) keeps the grey levels exact; Lanczos is a properly scaled
    # low-pass filter when shrinking, i.e. the anti-aliasing MNIST's digits have.
    image = Image.fromarray(np.ascontiguousarray(box, dtype=np.float32))
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)  # Lanczos rings slightly


def digit_from_array(array: Any, *, name: str = "array") -> np.ndarray:
    """Normalise a 2-D grey-level picture of one digit into MNIST's form (see module docstring).

    Args:
        array: ``(H, W)`` grey levels of any size; integer arrays are taken as 0-255, floating
            ones as 0-1 (the scale only matters for deciding that a picture is blank).
            Either polarity: dark ink on light paper or light ink on dark.
        name: how error messages refer to the picture (a file name, for instance).

    Returns:
        ``(28, 28)`` float32 in [0, 1]: background exactly 0, brightest ink 1, values on
        MNIST's 1/255 grid; ink's longer side 20 px, its centre of mass within 0.5 px of
        :data:`CENTRE_OF_MASS` (unless a very lopsided digit had to be kept inside the canvas).

    Raises:
        ShapeError: ``array`` is not 2-D.
        DataError: the picture is empty, blank (no contrast), or has non-finite values.
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ShapeError(f"{name}: expected a 2-D grey-level image, got shape {a.shape}")
    if a.dtype.kind in "ui":
        a = a / 255.0
    elif a.dtype.kind in "bf":
        a = a.astype(np.float64)
    else:
        raise DataError(f"{name}: unsupported pixel type {a.dtype}")
    if a.size == 0:
        raise _blank(name)
    if not np.isfinite(a).all():
        raise DataError(f"{name}: pixel values include NaN or infinity")

    lo, hi = float(a.min()), float(a.max())
    if hi - lo < _MIN_CONTRAST:
        raise _blank(name)
    border = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    background = float(np.median(border))
    if background > (lo + hi) / 2:  # light paper: make the ink the bright part, as in MNIST
        a = (lo + hi) - a
        background = (lo + hi) - background
    ink = float(a.max())
    if ink - background < _MIN_CONTRAST:  # only noise brighter than the paper
        raise _blank(name)
    floor = background + _NOISE_FLOOR * (ink - background)
    a = np.clip((a - floor) / (ink - floor), 0.0, 1.0)

    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = a.shape
    scale = DIGIT_BOX / max(h, w)
    height, width = max(1, round(h * scale)), max(1, round(w * scale))
    box = _resize(a, height, width)
    peak = box.max()
    if peak <= 0:
        raise _blank(name)
    # Shrinking thin pen strokes averages them into faint grey; MNIST ink is saturated.
    box = box / peak

    mass = box.sum()
    cy = float((box.sum(axis=1) * np.arange(height)).sum() / mass)
    cx = float((box.sum(axis=0) * np.arange(width)).sum() / mass)
    # Whole-pixel shifts (floor(x + 0.5), not banker's rounding) avoid a resampling blur;
    # clipping keeps the whole box on the canvas.
    top = int(np.clip(np.floor(CENTRE_OF_MASS[0] - cy + 0.5), 0, CANVAS_SIZE - height))
    left = int(np.clip(np.floor(CENTRE_OF_MASS[1] - cx + 0.5), 0, CANVAS_SIZE - width))
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=np.float64)
    canvas[top : top + height, left : left + width] = box
    # MNIST stores bytes; rounding to that grid also zeroes the tails of Lanczos ringing.
    return (np.round(canvas * 255.0) / 255.0).astype(np.float32)


def _grey_levels(image: Any) -> np.ndarray:
    """Grey levels of a Pillow image as a 2-D array (uint8, or float in [0, 1])."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(image, dtype=np.float64)
        peak = float(a.max()) if a.size else 0.0
        # 16-bit PNGs and the like: bring them to [0, 1] so the blank test means the same.
        for full_scale in (1.0, 255.0, 65535.0):
            if peak <= full_scale:
                return a / full_scale
        return a / peak
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"
        alpha = rgba[..., 3]
        # Transparent pixels have arbitrary colour (often black, the same as dark ink), so
        # composite onto white and onto black and keep whichever shows the digit, i.e. has
        # more contrast: dark ink on clear background shows on white, light ink on black.
        on_white, on_black = grey * alpha + (1.0 - alpha), grey * alpha
        return on_white if on_white.std() >= on_black.std() else on_black
    try:
        return np.asarray(image.convert("L"))
    except ValueError:  # modes without a direct conversion to "L" (e.g. LAB, HSV)
        return np.asarray(image.convert("RGB").convert("L"))


#: Larger pictures are refused before decoding: 50 megapixels is beyond any phone photo of a digit,
#: and a forged header (a "decompression bomb") would otherwise make Pillow allocate gigabytes.
_MAX_PIXELS = 50_000_000


def load_digit_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file of one handwritten digit as a ``(28, 28)`` float32 MNIST-like array.

    Any format, size and colour mode Pillow reads is accepted (EXIF rotation of phone photos
    is applied); the picture is normalised by :func:`digit_from_array`.

    Raises:
        DataError: Pillow is missing, the file is missing or is not a readable image, or the
            picture is blank. Messages are one line starting with the file name.
    """
    Image = _pillow()
    from PIL import ImageOps

    try:
        with warnings.catch_warnings():
            # Pillow warns about large pictures; the size check below refuses them itself.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            width, height = opened.size
            if width < 1 or height < 1 or width * height > _MAX_PIXELS:
                limit = f"at most {_MAX_PIXELS:,} pixels"
                raise DataError(f"{path}: a {width}×{height} picture is not a digit photo ({limit})")
            # JPEG only: let the decoder skip detail we would throw away anyway.
            opened.draft(opened.mode, (_MAX_WORKING_SIDE, _MAX_WORKING_SIDE))
            image = ImageOps.exif_transpose(opened)
            image.load()
            if max(image.size) > _MAX_WORKING_SIDE:
                image.thumbnail((_MAX_WORKING_SIDE, _MAX_WORKING_SIDE), Image.Resampling.BOX)
            grey = _grey_levels(image)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not an image (Pillow cannot identify it)") from None
    except DataError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error, ...) on damage
        raise DataError(f"{path}: cannot read image ({one_line(exc)})") from None
    return digit_from_array(grey, name=str(path))
