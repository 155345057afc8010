"""Data augmentation for image batches: random shifts (pad-and-crop), small rotations, flips.

Applied to each training batch after normalisation, with the trainer's seeded generator, so a run
is reproducible and resumes exactly. Uncovered pixels are filled with the *background* value of the
normalised images (``−mean/std``, what a 0 grey level becomes), not with 0. Labels are untouched:
the transformations are small enough not to change what a digit is -- which is why horizontal flips
are off by default (a mirrored 2, 3, 4, 5, 7 or 9 is no longer that digit) and rotations should
stay within about ±15°, where a 6 does not turn into a 9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numcnn.errors import ConfigurationError, ShapeError

__all__ = ["Augmenter", "random_shift", "random_rotation", "random_flip"]


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float = 0.0) -> np.ndarray:
    """Translate each image by ``(dy, dx)`` drawn uniformly from ``{−s, …, s}²``.

    Equivalent to padding by ``s`` (with ``fill``) and cropping an ``H × W`` window at a random offset.
    Shape: ``(N, C, H, W)`` → same.
    """
    if max_shift == 0:
        return images
    n, _, height, width = images.shape
    s = max_shift
    padded = np.pad(images, ((0, 0), (0, 0), (s, s), (s, s)), constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(2, 3))  # (N, C, 2s+1, 2s+1, H, W)
    rows, cols = rng.integers(0, 2 * s + 1, size=(2, n))  # window offset s + d ↔ the content moves by −d
    return np.ascontiguousarray(windows[np.arange(n), :, rows, cols])


def random_rotation(images: np.ndarray, max_degrees: float, rng: np.random.Generator, fill: float = 0.0) -> np.ndarray:
    """Rotate each image about its centre by an angle drawn from ``U(−r, r)`` degrees, bilinearly.

    Inverse mapping: output pixel ``p = (row, column)`` takes the input at ``R (p − c) + c`` with
    ``R = [[cos θ, −sin θ], [sin θ, cos θ]]`` and ``c`` the centre, interpolated from its four
    neighbours; points outside the image read ``fill``. Shape: ``(N, C, H, W)`` → same.
    """
    if max_degrees == 0:
        return images
    n, channels, height, width = images.shape
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=n))
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    y, x = np.meshgrid(np.arange(height) - centre_y, np.arange(width) - centre_x, indexing="ij")
    source_y = cos * y - sin * x + centre_y  # (N, H, W)
    source_x = sin * y + cos * x + centre_x

    # Pad by one pixel of background so that every neighbour index is valid after clipping.
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    top = np.clip(np.floor(source_y), -1, height).astype(np.int64)
    left = np.clip(np.floor(source_x), -1, width).astype(np.int64)
    weight_y = np.clip(source_y - top, 0.0, 1.0)[:, None].astype(images.dtype)  # (N, 1, H, W)
    weight_x = np.clip(source_x - left, 0.0, 1.0)[:, None].astype(images.dtype)
    batch = np.arange(n)[:, None, None, None]
    channel = np.arange(channels)[None, :, None, None]

    def at(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Pixels at (rows, cols) of every channel; −1 and H (or W) are the background border."""
        padded_rows = np.clip(rows + 1, 0, height + 1)[:, None]
        padded_cols = np.clip(cols + 1, 0, width + 1)[:, None]
        return padded[batch, channel, padded_rows, padded_cols]

    upper = at(top, left) * (1 - weight_x) + at(top, left + 1) * weight_x
    lower = at(top + 1, left) * (1 - weight_x) + at(top + 1, left + 1) * weight_x
    return upper * (1 - weight_y) + lower * weight_y


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror a random half (in expectation) of the images left-right. Shape: unchanged."""
    flip = rng.random(images.shape[0]) < 0.5
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out


@dataclass(frozen=True)
class Augmenter:
    """``augmenter(images, rng)``: rotation, then shift, then flip, each only when switched on."""

    shift: int = 0  # pixels
    rotate: float = 0.0  # degrees
    flip: bool = False
    fill: float = 0.0  # the normalised background value

    def __post_init__(self) -> None:
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ConfigurationError(f"augmentation shift must be an int >= 0 pixels, got {self.shift!r}")
        if not 0 <= self.rotate <= 180 or not math.isfinite(self.rotate):
            raise ConfigurationError(f"augmentation rotation must be in [0, 180] degrees, got {self.rotate!r}")

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.flip)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if images.ndim != 4:
            raise ShapeError(f"augmentation expects (N, C, H, W) images, got shape {images.shape}")
        images = random_rotation(images, self.rotate, rng, self.fill)
        images = random_shift(images, self.shift, rng, self.fill)
        return random_flip(images, rng) if self.flip else images
