"""The cost model of synchronous data-parallel SGD (docs/distributed.md): when does adding hosts help?

One step on ``N`` hosts with a global batch of ``b`` images costs the compute of ``b/N`` images plus
one allreduce of the flat gradient buffer of ``P`` parameters (``B = P·bytes`` bytes)::

    T(N) = t_img · b/N  +  2(N−1)·α  +  2(N−1)/N · B · β

The allreduce term is the ring algorithm's (Patarasuk & Yuan 2009; what MPICH and NCCL use for
large buffers): a reduce-scatter and an all-gather, each ``N−1`` rounds of a ``B/N`` chunk, every
round paying the latency ``α``; ``β`` is seconds per byte (``1/bandwidth``). numcnn sends the
gradients after the whole backward pass (no overlap of communication and computation), so the
terms add. Speed-up ``S(N) = T(1)/T(N)``, efficiency ``S(N)/N``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepCost", "step_cost", "allreduce_seconds"]


def allreduce_seconds(nbytes: float, hosts: int, latency: float, seconds_per_byte: float) -> float:
    """Ring allreduce of ``nbytes`` over ``hosts``: ``2(N−1)·α + 2(N−1)/N · bytes · β`` (0 for one host)."""
    if hosts < 1:
        raise ValueError(f"hosts must be >= 1, got {hosts}")
    rounds = 2 * (hosts - 1)
    return rounds * latency + rounds / hosts * nbytes * seconds_per_byte


@dataclass(frozen=True)
class StepCost:
    """One step of the model on ``hosts`` hosts: its parts in seconds, speed-up and efficiency."""

    hosts: int
    compute: float
    communication: float
    speedup: float

    @property
    def seconds(self) -> float:
        return self.compute + self.communication

    @property
    def efficiency(self) -> float:
        return self.speedup / self.hosts


def step_cost(
    hosts: int, *, parameters: int, seconds_per_image: float, batch: int,
    bytes_per_value: int = 4, latency: float = 25e-6, bandwidth_bits: float = 10e9,
) -> StepCost:  # fmt: skip
    """:class:`StepCost` of one data-parallel step (defaults: float32, 25 µs latency, 10 Gb/s)."""
    seconds_per_byte = 8.0 / bandwidth_bits
    compute = seconds_per_image * batch / hosts
    communication = allreduce_seconds(parameters * bytes_per_value, hosts, latency, seconds_per_byte)
    return StepCost(hosts, compute, communication, seconds_per_image * batch / (compute + communication))
