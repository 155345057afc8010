"""Deliberate thread counts for the two thread pools the fast backends use.

The matrix products run on OpenBLAS's threads (through NumPy), the numba kernels on numba's. On a
small machine the two pools must not both try to use every core: a pool that has just finished
keeps its threads spinning for a while, and the other pool's threads then wait for a core. The
probes on a 2-core machine found the layer kernels starved unless OpenBLAS got one thread while
numba kernels run, so that is the default policy of :func:`set_threads` for the numba backend.

Everything here is lazy: threadpoolctl and numba are imported only when a count is set.
"""

from __future__ import annotations

import os
import sys

from numcnn.errors import ConfigurationError

__all__ = ["set_threads", "thread_report", "apply_numba_default"]

_blas_limiter = None  # keeps threadpoolctl's limit object alive (and the limit in force)
_explicit = False  # set_threads was called: never override the user's choice
BLAS_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def apply_numba_default() -> None:
    """Give OpenBLAS one thread when the numba backend starts, unless the user chose a count.

    Called once, when the numba backend is first used. A count chosen with :func:`set_threads` or
    with ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is left alone.
    """
    global _blas_limiter
    if _explicit or any(os.environ.get(name) for name in BLAS_ENVIRONMENT):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is a dependency, but a missing one must not stop training
        return
    _blas_limiter = threadpool_limits(limits=1, user_api="blas")


def set_threads(threads: int, backend: str | None = None, blas_threads: int | None = None) -> dict[str, int]:
    """Use ``threads`` threads for the kernels of ``backend`` (default: the active one); return the counts now in force.

    The backend matters: with numba, OpenBLAS must stay on one thread (measured: two numba and two
    OpenBLAS threads on two cores made LeNet-5 inference 15 times slower).

    * ``"numba"``: numba gets ``threads``; OpenBLAS gets ``blas_threads``, by default 1 (see above).
    * ``"numpy"`` / ``"reference"``: OpenBLAS gets ``blas_threads``, by default ``threads`` (NumPy's
      own loops use one core).
    """
    global _blas_limiter, _explicit
    _explicit = True
    if threads < 1:
        raise ConfigurationError(f"the number of threads must be >= 1, got {threads}")
    if backend is None:
        from numcnn.kernels import backend_name

        backend = backend_name()
    counts: dict[str, int] = {}
    if backend == "numba":
        import numba  # only reached when the numba backend is in use

        available = numba.config.NUMBA_NUM_THREADS
        if threads > available:
            raise ConfigurationError(
                f"numba was started with {available} threads (NUMBA_NUM_THREADS); cannot use {threads}"
            )
        numba.set_num_threads(threads)
        counts["numba"] = threads
        blas = 1 if blas_threads is None else blas_threads
    else:
        blas = threads if blas_threads is None else blas_threads
    from threadpoolctl import threadpool_limits

    _blas_limiter = threadpool_limits(limits=blas, user_api="blas")
    counts["blas"] = blas
    return counts


def thread_report() -> dict[str, object]:
    """Thread counts of the pools now loaded (for the benchmark's header)."""
    from threadpoolctl import threadpool_info

    report: dict[str, object] = {"cpus": os.cpu_count()}
    for pool in threadpool_info():
        report[f"{pool.get('internal_api')}"] = pool.get("num_threads")
    if "numba" in sys.modules:
        import numba

        report["numba"] = numba.get_num_threads()
        report["numba_threading_layer"] = _numba_threading_layer()
    return report


def _numba_threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not started"
