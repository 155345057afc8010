"""Argument types shared by the command groups (argparse turns their errors into one-line messages)."""

from __future__ import annotations

import argparse

from numcnn.kernels import BACKEND_NAMES

__all__ = ["BACKEND_CHOICES", "positive_int"]

#: What ``--backend`` accepts: every kernel backend, or "auto" (numba when installed, else numpy).
BACKEND_CHOICES = ("auto", *BACKEND_NAMES)


def positive_int(text: str) -> int:
    """An integer >= 1, e.g. ``--epochs``, ``--threads``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
