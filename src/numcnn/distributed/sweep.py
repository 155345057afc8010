"""The MPI executor of ``numcnn experiment --executor mpi``: a sweep's runs handed to MPI processes by
``mpi4py.futures`` -- on this machine or, with the launcher's host file, across a cluster.

Three ways to start it, one code path (:func:`mpi_pool`):

``mpiexec -n K numcnn experiment CONFIG --executor mpi``
    the usual one: rank 0 runs the sweep and writes every file, ranks 1..K-1 train runs
    (``MPICommExecutor`` over ``COMM_WORLD``), so K processes give K-1 workers.
``mpiexec -n K python -m mpi4py.futures -m numcnn experiment CONFIG --executor mpi``
    mpi4py's own launcher; the same split, set up by mpi4py before numcnn starts.
``numcnn experiment CONFIG --executor mpi --jobs J`` (no launcher, or ``mpiexec -n 1``)
    ``MPIPoolExecutor`` spawns J worker processes with ``MPI_Comm_spawn``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from numcnn.distributed.comm import World, mpi, world
from numcnn.errors import ConfigurationError

__all__ = ["mpi_pool", "sweep_world"]


def sweep_world(jobs: int | None) -> World:
    """The MPI world of a sweep, after checking that ``--jobs`` fits how the job was launched."""
    current = world()
    if current.size > 1 and jobs is not None:
        raise ConfigurationError(
            f"under mpiexec -n {current.size} the launcher sets the workers ({current.size - 1}); drop --jobs"
        )
    return current


@contextmanager
def mpi_pool(
    current: World, jobs: int | None, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> Iterator[Any]:
    """An ``mpi4py.futures`` executor on rank 0, ``None`` on the other ranks.

    On ranks other than 0 the ``with`` body starts only after rank 0 has shut the pool down: until
    then those processes serve runs. Every worker calls ``initializer(*initargs)`` once."""
    futures = _futures()
    options = {"initializer": initializer, "initargs": initargs, "main": False}
    if current.size > 1:
        with futures.MPICommExecutor(current.comm, root=0, **options) as executor:
            yield executor
    else:
        with futures.MPIPoolExecutor(max_workers=jobs or 1, **options) as executor:
            yield executor


def _futures() -> Any:
    mpi()  # the one-line error when mpi4py is missing
    import mpi4py.futures

    return mpi4py.futures

