"""The MPI world as numcnn uses it: which process this is, how to sum buffers, how to stop every
process when one fails.

A distributed job must never hang: a process that stops with an error while the others wait in a
collective operation would leave them waiting for ever (MPICH's ``mpiexec`` only cleans up after a
process that dies without finalising MPI). :func:`abort_on_error` therefore turns any error into a
one-line message and ``MPI_Abort``, which ends every process of the job with that exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError, NumcnnError, one_line

__all__ = ["World", "abort_on_error", "mpi", "world"]


def mpi() -> Any:
    """The ``mpi4py.MPI`` module, imported on first use; a one-line error when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError as error:  # mpi4py absent, or present without an MPI library to load
        raise ConfigurationError(
            f"MPI is not available ({one_line(error)}); install it with: pip install \"numcnn[mpi]\""
        ) from None
    return MPI


@dataclass(frozen=True)
class World:
    """The processes of the job: ``size`` ranks, this one ``rank``; rank 0 writes every file."""

    comm: Any  # an mpi4py intracommunicator (COMM_WORLD)

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def size(self) -> int:
        return int(self.comm.Get_size())

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        """Sum ``buffer`` over all ranks in place (one buffer ``Allreduce``, no pickling) and return it."""
        if self.size > 1:
            self.comm.Allreduce(mpi().IN_PLACE, buffer, op=mpi().SUM)
        return buffer

    def sum_scalars(self, *values: float) -> tuple[float, ...]:
        """Sum a few numbers over all ranks (float64, whatever the training dtype)."""
        buffer = np.array(values, dtype=np.float64)
        return tuple(float(v) for v in self.allreduce_sum(buffer))

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled: for small things such as a decision or a message)."""
        return self.comm.bcast(value, root=0) if self.size > 1 else value

    def ranks_on_this_host(self) -> int:
        """How many ranks of the job share this machine (and its cores)."""
        local = self.comm.Split_type(mpi().COMM_TYPE_SHARED)
        try:
            return int(local.Get_size())
        finally:
            local.Free()

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        """End every process of the job now with exit ``code`` (MPI_Abort)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


def world() -> World:
    """``MPI.COMM_WORLD`` (initialising MPI on first use)."""
    return World(mpi().COMM_WORLD)


ABORT_GRACE_SECONDS = 0.5


@contextmanager
def abort_on_error(current: World, code: int = 1) -> Iterator[None]:
    """Run a distributed section so that an error on any rank ends the whole job, not only that rank.

    numcnn's own errors print ``numcnn: error: ...`` (naming the rank unless it is rank 0); anything
    else, including Ctrl-C, prints one line naming the rank and its exception. Then ``MPI_Abort`` ends
    every process, which MPI reports with a line of its own (when every rank meets the same error,
    the first to abort usually ends the others before they print theirs). With one process the
    error simply propagates, as without MPI."""
    try:
        yield
    except BaseException as error:
        if current.size == 1 or (isinstance(error, SystemExit) and not error.code):
            raise
        if isinstance(error, NumcnnError):
            message = f"numcnn: error: {error}" + (f" (rank {current.rank})" if current.rank else "")
        elif isinstance(error, KeyboardInterrupt):
            message, code = f"numcnn: interrupted on rank {current.rank}; the last checkpoint is kept", 130
        else:
            message = f"numcnn: error: rank {current.rank} failed: {type(error).__name__}: {one_line(error)}"
        print(message, file=sys.stderr, flush=True)
        # The launcher forwards each rank's stderr through its own proxy, and MPI_Abort tears the
        # proxies down at once: on a loaded machine the line above was lost with them (seen once in
        # CI: exit 1, empty stderr). A moment's pause lets it through; an error path can afford it.
        time.sleep(ABORT_GRACE_SECONDS)
        current.abort(code)
