"""Writing to stdout when its reader may go away (``numcnn train | head``).

A closed pipe raises ``BrokenPipeError`` at the next write. For most commands that simply ends the
command (:func:`numcnn.cli.main.main` exits quietly); a training run, though, must not lose its
work to a reader that stopped listening, so its lines go through :func:`tolerant_print`.
"""

from __future__ import annotations

import os
import sys

__all__ = ["silence_stdout", "tolerant_print"]


def silence_stdout() -> None:
    """Point stdout at ``/dev/null`` once its reader is gone, so no later write or the interpreter's
    final flush fails again (the recipe of the Python docs' "Note on SIGPIPE")."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured by a test): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def tolerant_print(line: str) -> None:
    """``print`` for output that must never stop the work: after a closed pipe the rest is dropped."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        silence_stdout()
