"""Progress reporting that reads well both in a terminal and in a log file.

In a terminal, a tqdm bar shows images processed, throughput and the running loss/accuracy, and is
cleared at the end of the epoch (the epoch summary line replaces it). When the output is not a
terminal -- a CI log, ``nohup``, ``| tee`` -- a bar's carriage returns would turn into one endless
line, so instead a plain line is printed at every 10% of the epoch.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Counts processed examples; use as a context manager around one epoch."""

    def __init__(self, total: int, description: str, enabled: bool | None = None, stream=None) -> None:
        self.total = total
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = True if enabled is None else bool(enabled)
        self.use_bar = self.enabled and interactive
        self.done = 0
        self.next_report = 0.1
        self.started = time.perf_counter()
        self.bar = None

    def __enter__(self) -> Progress:
        self.started = time.perf_counter()
        if self.use_bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total, desc=self.description, unit="img", unit_scale=True,
                leave=False, file=self.stream, dynamic_ncols=True,
            )  # fmt: skip
        return self

    def update(self, count: int, **values: float) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            self.bar.set_postfix({key: f"{value:.4f}" for key, value in values.items()}, refresh=False)
        elif self.enabled and self.done >= self.next_report * self.total:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            details = "  ".join(f"{key} {value:.4f}" for key, value in values.items())
            try:
                print(
                    f"{self.description}  {self.done / self.total:4.0%} {self.done}/{self.total}  {details}  "
                    f"{self.done / elapsed:,.0f} img/s",
                    file=self.stream,
                    flush=True,
                )
            except OSError:  # the reader went away (a closed pipe): progress is a courtesy, training goes on
                self.enabled = False
            while self.next_report * self.total <= self.done:
                self.next_report += 0.1

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()
