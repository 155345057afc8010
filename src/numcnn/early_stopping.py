"""Early stopping: stop when the validation loss has not improved for ``patience`` epochs, and
hand back the weights of the best epoch rather than the last.

The validation set is held out of the training examples (``TrainConfig.validation_size``):
choosing the epoch by the *test* error would make the test error an optimistic estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from numcnn.errors import ConfigurationError

__all__ = ["EarlyStopping"]


@dataclass
class EarlyStopping:
    """Tracks the best validation loss; :attr:`should_stop` after ``patience`` epochs without a
    decrease of more than ``min_delta``. Its :meth:`state` goes into checkpoints so resuming keeps it."""

    patience: int
    min_delta: float = 0.0
    best_value: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_record: dict[str, Any] = field(default_factory=dict)  # the metrics of the best epoch

    def __post_init__(self) -> None:
        if self.patience < 1 or self.min_delta < 0:
            raise ConfigurationError(f"early stopping needs patience >= 1 and min_delta >= 0, got {self.patience}")

    def update(self, value: float, epoch: int, record: dict[str, Any] | None = None) -> bool:
        """Record the validation loss of ``epoch``; True when it is the new best."""
        if value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            self.best_record = dict(record or {})
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return asdict(self)

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` saved in a checkpoint."""
        restored = EarlyStopping(**state)
        self.best_value, self.best_epoch = restored.best_value, restored.best_epoch
        self.bad_epochs, self.best_record = restored.bad_epochs, restored.best_record
