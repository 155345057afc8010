"""Synchronous data-parallel training on MPI: ``mpiexec -n N numcnn train --distributed``.

Every rank runs :func:`numcnn.train.fit` on the same configuration, with a :class:`DataParallel`
as its ``parallel`` argument, which is all that makes the run distributed:

* every rank builds the same initial model from the seed and draws the same global batch order
  (the shared ``init`` and ``shuffle`` streams of :mod:`numcnn.streams`);
* :meth:`DataParallel.shard` gives a rank its contiguous part of each global batch of
  ``--batch-size`` examples (parts differ by at most one example);
* between backward and the optimiser step (:func:`numcnn.train.train_step`'s hook), the flat
  gradient buffer is scaled by ``n_r / B`` and summed with one ``Allreduce``
  (:meth:`DataParallel.reduce_gradients`). Rank ``r``'s gradient is that of the mean loss over its
  ``n_r`` examples, so ``Σ_r (n_r / B) ∇E_r = ∇E`` of the global batch's mean loss ``E`` -- the
  gradient one process computes -- also when the parts are uneven. A penalty's gradient (added once
  per backward on every rank) is weighted the same way and sums to itself;
* every rank then takes the same optimiser step, so the weights stay equal without being sent;
* at the end of an epoch the training sums are added over ranks and the floating-point buffers
  (batch norm's running estimates) averaged, so every rank holds the same model; evaluation gives
  each rank a contiguous part of the test set and adds the sums;
* rank 0 alone writes metrics, progress and checkpoints; on ``--resume`` it reads the checkpoint
  and sends its state to the other ranks (:meth:`DataParallel.share`), so the other ranks need not
  see the run folder and the number of ranks may change between runs.

What differs from one process, by design: batch norm normalises with each rank's own batch
statistics (a batch of ``B/N``) unless ``sync_bn`` sums them over ranks
(:mod:`numcnn.functional.normalization`), and dropout masks and augmentations come from each rank's
own stream -- see docs/distributed.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from numcnn import models
from numcnn.distributed.comm import World
from numcnn.errors import ConfigurationError
from numcnn.layers import BatchNorm1d, BatchNorm2d
from numcnn.layers.base import Layer
from numcnn.layers.flat import flat_gradient, walk_layers
from numcnn.streams import streams
from numcnn.train import History, TrainConfig, fit

__all__ = ["DataParallel", "shard_bounds", "check_batches", "fit_distributed", "use_sync_bn"]


def shard_bounds(count: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of part ``index`` when ``count`` items are cut into ``parts`` contiguous parts
    whose sizes differ by at most one (the first ``count % parts`` parts get the extra item)."""
    base, extra = divmod(count, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def check_batches(examples: int, batch_size: int, ranks: int, *, even: bool = False) -> None:
    """Every global batch of an epoch must give every rank at least one example (an empty part would
    have no mean loss) -- with ``even``, the same number (synchronised batch norm weights every rank's
    gradient alike); a one-line error otherwise."""
    sizes = {min(batch_size, examples), examples % batch_size or batch_size}
    for size in sorted(sizes):
        if size < ranks or (even and size % ranks):
            need = f"a multiple of {ranks} examples" if even else f"at least {ranks} examples"
            raise ConfigurationError(
                f"with {examples} training examples in batches of {batch_size}, a batch has {size} "
                f"example{'' if size == 1 else 's'}, but "
                f"{ranks} processes need {need}{' (--sync-bn)' if even else ''}; change --batch-size or --train-limit"
            )


def use_sync_bn(model: Layer, reduce: Callable[[np.ndarray], np.ndarray]) -> int:
    """Give every batch-norm layer of ``model`` the sum over processes; returns how many there are."""
    layers = [layer for layer in walk_layers(model) if isinstance(layer, (BatchNorm1d, BatchNorm2d))]
    for layer in layers:
        layer.reduce = reduce
    return len(layers)


def fit_distributed(
    config: TrainConfig,
    data: Any,
    out_dir: str | Path | None,
    world: World,
    *,
    resume: bool = False,
    overwrite: bool = False,
    sync_bn: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool | None = None,
) -> History:
    """This rank's part of a data-parallel :func:`numcnn.train.fit` of ``config`` (every rank calls it
    alike); rank 0 writes ``out_dir`` and logs. Returns the history (the same model on every rank)."""
    config.validate()
    parallel = DataParallel(world)
    examples = _training_examples(config, data)
    check_batches(examples, config.batch_size, world.size, even=sync_bn)
    model = None
    if sync_bn:
        model = models.build(config.model, rng=streams(config.seed).init, dtype=np.dtype(config.dtype))
        if not use_sync_bn(model, parallel.sum_channels):
            raise ConfigurationError(f"--sync-bn: model {config.model!r} has no batch norm layers")
    writes = parallel.writes
    history = fit(
        config, data, out_dir if writes else None, model=model, resume=resume and writes,
        overwrite=overwrite and writes, parallel=parallel, rank=world.rank,
        log=log if writes else _quiet, show_progress=show_progress if writes else False,
    )  # fmt: skip
    if writes:
        log(
            f"{world.size} processes; one allreduce of {parallel.bytes_per_step:,} bytes of gradients per step"
            + (", batch norm synchronised" if sync_bn else "")
        )
    return history


def _quiet(line: str) -> None:
    """The log of ranks other than 0."""


def _training_examples(config: TrainConfig, data: Any) -> int:
    """How many examples an epoch trains on (as :func:`numcnn.train.fit` selects them)."""
    available = len(data.train_labels) - config.train_offset
    selected = available if config.train_limit is None else min(config.train_limit, available)
    return selected - config.validation_size


class DataParallel:
    """:class:`numcnn.train.Parallel` over an MPI world (see the module docstring)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rank = world.rank
        self.size = world.size
        self.writes = world.is_root
        self._weight = 1.0  # n_r / B of the current step
        self.bytes_per_step = 0  # the size of the last gradient allreduce

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's part of a global batch (an index array); remembers its share for the gradient."""
        start, stop = shard_bounds(len(batch), self.size, self.rank)
        self._weight = (stop - start) / len(batch)
        return batch[start:stop]

    def reduce_gradients(self, model: Layer) -> None:
        """The step's hook: ``∇E = Σ_r (n_r / B) ∇E_r`` in every rank's flat gradient buffer."""
        gradient = flat_gradient(model)
        gradient *= gradient.dtype.type(self._weight)
        self.world.allreduce_sum(gradient)
        self.bytes_per_step = gradient.nbytes

    def sum_channels(self, values: np.ndarray) -> np.ndarray:
        """A per-channel array summed over ranks (synchronised batch norm), in a new array."""
        return self.world.allreduce_sum(np.array(values, copy=True))

    def sum(self, *values: float) -> tuple[float, ...]:
        """Sums over ranks of a few numbers (training and evaluation totals)."""
        return self.world.sum_scalars(*values)

    def part(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` evaluation examples."""
        return slice(*shard_bounds(count, self.size, self.rank))

    def synchronise_buffers(self, model: Layer) -> None:
        """Average the floating-point buffers (batch norm's running estimates) over ranks; integer
        buffers (batch counters) are the same on every rank already."""
        for _, buffer in model.named_buffers():
            if np.issubdtype(buffer.dtype, np.floating):
                self.world.allreduce_sum(buffer)
                buffer /= self.size

    def share(self, state: Any) -> Any:
        """Rank 0's ``state`` on every rank (what a resumed run restored from its checkpoint)."""
        return self.world.broadcast(state)
