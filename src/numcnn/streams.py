"""One independent random stream per purpose of a training run, all derived from its seed.

A run draws random numbers for several unrelated purposes. Drawing them all from one generator
couples them: switching dropout on would change the shuffling order, and a second process (a rank
of a distributed run) could not share the shuffling order while drawing its own dropout masks.
:func:`streams` therefore derives one generator per purpose from the seed with NumPy's
:class:`~numpy.random.SeedSequence` (the documented way to make independent streams)::

    purpose     generator                                         shared by all ranks?
    init        default_rng(seed)                                 yes: every rank builds the same model
    shuffle     default_rng(SeedSequence(seed, spawn_key=(1,)))    yes: one global batch order
    dropout     default_rng(SeedSequence(seed, spawn_key=(2, rank)))   no: each rank its own masks
    augment     default_rng(SeedSequence(seed, spawn_key=(3, rank)))   no: each rank its own transforms
    curvature   default_rng(SeedSequence(seed, spawn_key=(4,)))    yes: SDLM's curvature samples

``SeedSequence(seed, spawn_key=(k,))`` is exactly ``SeedSequence(seed).spawn(k + 1)[k]``, so the
derivation is stable across NumPy versions and platforms. ``init`` is the root generator itself,
so a run's initial weights are those of ``numcnn.models.build(name, rng=seed)``. The purpose
numbers are part of the format: new purposes get new numbers, existing ones never change.

Every stream except ``init`` (used once, before training) is saved in checkpoints
(:meth:`RandomStreams.state`), so a resumed run draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from numcnn.errors import CheckpointError, ConfigurationError

__all__ = ["RandomStreams", "streams", "PURPOSES"]

# purpose -> (spawn number, one stream per rank?)
PURPOSES: dict[str, tuple[int, bool]] = {
    "shuffle": (1, False),
    "dropout": (2, True),
    "augment": (3, True),
    "curvature": (4, False),
}


@dataclass
class RandomStreams:
    """The generators of one process of a run (see the module docstring for their derivation)."""

    init: np.random.Generator
    shuffle: np.random.Generator
    dropout: np.random.Generator
    augment: np.random.Generator
    curvature: np.random.Generator

    def state(self) -> dict[str, dict[str, Any]]:
        """The bit-generator state of every stream that training draws from (JSON-serialisable)."""
        return {name: getattr(self, name).bit_generator.state for name in PURPOSES}

    def load_state(self, state: dict[str, dict[str, Any]]) -> None:
        """Put every stream back where :meth:`state` found it."""
        missing = sorted(set(PURPOSES) - set(state))
        if missing:
            raise CheckpointError(f"the saved random state lacks the stream(s) {', '.join(missing)}")
        for name in PURPOSES:
            try:
                getattr(self, name).bit_generator.state = state[name]
            except (TypeError, ValueError, KeyError) as error:
                raise CheckpointError(f"the saved state of the {name!r} random stream is unusable ({error})") from None


def streams(seed: int, rank: int = 0) -> RandomStreams:
    """The random streams of process ``rank`` (0 for a single-process run) of a run seeded with ``seed``.

    Ranks share ``init``, ``shuffle`` and ``curvature`` and get their own ``dropout`` and ``augment``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigurationError(f"the seed must be an integer >= 0, got {seed!r}")
    if rank < 0:
        raise ConfigurationError(f"the rank must be >= 0, got {rank}")

    def derived(purpose: str) -> np.random.Generator:
        number, per_rank = PURPOSES[purpose]
        key = (number, int(rank)) if per_rank else (number,)
        return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))

    return RandomStreams(
        init=np.random.default_rng(int(seed)),
        shuffle=derived("shuffle"),
        dropout=derived("dropout"),
        augment=derived("augment"),
        curvature=derived("curvature"),
    )
