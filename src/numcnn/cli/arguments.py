"""Argument types shared by the command groups (argparse turns their errors into one-line messages)."""

from __future__ import annotations

import argparse
import math

from numcnn.kernels import BACKEND_NAMES

__all__ = ["BACKEND_CHOICES", "finite_float", "positive_float", "positive_int", "seed_int"]

#: What ``--backend`` accepts: every kernel backend, or "auto" (numba when installed, else numpy).
BACKEND_CHOICES = ("auto", *BACKEND_NAMES)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1, e.g. ``--epochs``, ``--threads``."""
    return _whole_number(text, 1)


def seed_int(text: str) -> int:
    """A random seed: an integer >= 0 (NumPy refuses negative seeds)."""
    return _whole_number(text, 0)


def finite_float(text: str) -> float:
    """A real number, not ``nan`` or ``inf`` (which ``float()`` accepts and no setting means), e.g. ``--lr``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0, e.g. ``gradcheck --eps``."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value
