"""The ``numcnn`` command-line tool."""

from numcnn.cli.main import main

__all__ = ["main"]
