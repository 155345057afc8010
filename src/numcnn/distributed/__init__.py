"""Scaling out on MPI: data-parallel training (:mod:`~numcnn.distributed.trainer`) and sweeps whose runs
are spread over MPI processes (:mod:`~numcnn.distributed.sweep`).

MPI is the engine, not something numcnn re-implements: mpi4py's buffer ``Allreduce`` sums NumPy
arrays in C, and its ``mpi4py.futures`` pool hands out a sweep's runs. mpi4py is an optional
dependency (``pip install "numcnn[mpi]"``, which also brings the MPICH wheel and its ``mpiexec``);
it is imported only when a distributed feature is used, through :func:`~numcnn.distributed.comm.mpi`.
docs/distributed.md has the launch commands and the cost model.
"""

from numcnn.distributed.comm import World, abort_on_error, mpi, world

__all__ = ["World", "abort_on_error", "mpi", "world"]
