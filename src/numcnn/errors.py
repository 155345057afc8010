"""Exceptions that numcnn raises on bad input.

Every message is one line that names the offending thing and the problem, so the
command-line tool can print it as ``numcnn: error: <message>`` and exit non-zero
without a traceback.
"""

from __future__ import annotations

__all__ = ["NumcnnError", "ShapeError", "ConfigurationError", "DataError", "CheckpointError", "one_line"]


def one_line(error: BaseException) -> str:
    """The text of a foreign exception squeezed onto one line, to quote inside a numcnn message.

    Messages must stay on one line, whatever the OS, zlib or NumPy put into the exception text.
    """
    text = " ".join(str(error).split())
    return text or type(error).__name__


class NumcnnError(Exception):
    """Base class of all errors raised deliberately by numcnn."""


class ShapeError(NumcnnError, ValueError):
    """An array has the wrong number of dimensions or incompatible sizes."""


class ConfigurationError(NumcnnError, ValueError):
    """A layer, model or command was configured with impossible settings."""


class DataError(NumcnnError):
    """A data file is missing, truncated, corrupt or inconsistent."""


class CheckpointError(NumcnnError):
    """A checkpoint file cannot be read or does not describe a known model."""
