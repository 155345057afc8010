"""Learning-rate schedules: the rate used in each epoch as a function of the epoch number.

The trainer sets the optimiser's rate at the start of every epoch (``epoch`` counts from 1), so a
schedule is a pure function of the epoch and a resumed run picks up exactly where it stopped. The
formulas are PyTorch's epoch-wise schedulers with ``η₀`` the configured learning rate:

* ``constant``:     ``η = η₀``
* ``step``:         ``η = η₀ · γ^⌊(epoch − 1)/step⌋``                    (``StepLR``)
* ``exponential``:  ``η = η₀ · γ^(epoch − 1)``                            (``ExponentialLR``)
* ``cosine``:       ``η = η_min + (η₀ − η_min)(1 + cos(π (epoch − 1)/E))/2`` (``CosineAnnealingLR``,
  ``T_max = E`` the number of epochs: from ``η₀`` in epoch 1 down towards ``η_min``)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numcnn.errors import ConfigurationError

__all__ = ["SCHEDULES", "Schedule"]

SCHEDULES = ("constant", "step", "exponential", "cosine")


@dataclass(frozen=True)
class Schedule:
    """``schedule(epoch)`` is the learning rate of that epoch (1-based)."""

    kind: str
    base_lr: float
    epochs: int
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            choices = ", ".join(SCHEDULES)
            raise ConfigurationError(f"unknown learning-rate schedule {self.kind!r}; choose from {choices}")
        if self.step_size < 1 or not 0 < self.gamma <= 1 or not 0 <= self.min_lr <= self.base_lr:
            raise ConfigurationError(
                f"schedule needs step >= 1, 0 < gamma <= 1 and 0 <= min lr <= lr; got step {self.step_size}, "
                f"gamma {self.gamma}, min lr {self.min_lr}, lr {self.base_lr}"
            )

    def __call__(self, epoch: int) -> float:
        return self.base_lr * self.factor(epoch)

    def factor(self, epoch: int) -> float:
        """The rate of ``epoch`` as a multiple of ``base_lr``; the trainer scales every parameter
        group's own rate by it, so per-layer rates keep their ratios."""
        if epoch < 1:
            raise ConfigurationError(f"epochs count from 1, got {epoch}")
        done = epoch - 1  # epochs completed before this one
        if self.kind == "step":
            return self.gamma ** (done // self.step_size)
        if self.kind == "exponential":
            return self.gamma**done
        if self.kind == "cosine":
            floor = self.min_lr / self.base_lr
            return floor + (1 - floor) * (1 + math.cos(math.pi * done / self.epochs)) / 2
        return 1.0
