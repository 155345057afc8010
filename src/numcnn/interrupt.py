"""Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM.

Python's default SIGINT handling raises ``KeyboardInterrupt`` wherever the program happens to be,
possibly halfway through an optimiser step. :class:`StopRequests` instead only *records* the first
signal; the trainer finishes the current step, writes a checkpoint at that step boundary and raises
:class:`TrainingInterrupted`, which says what is on disk. A second signal while it does so means
"now": it raises ``KeyboardInterrupt`` at once (the checkpoint on disk is still whole, since every
save is atomic).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["StopRequests", "TrainingInterrupted", "HANDLED_SIGNALS"]

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing what :attr:`saved` describes.

    A ``KeyboardInterrupt``, so code that treats Ctrl-C as "stop" keeps doing so. ``exit_code`` is
    the shell's convention for death by a signal: 128 + the signal number (130 for SIGINT)."""

    def __init__(self, message: str, signal_number: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signal_number = int(signal_number)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM into a request the training loop polls (:attr:`signal_number`).

    Outside the main thread (where Python cannot install handlers) or with ``enabled=False`` it
    changes nothing and never reports a request."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:  # the second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signal_number = signal_number

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self) -> StopRequests:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for number in HANDLED_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
