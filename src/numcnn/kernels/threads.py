"""Deliberate thread counts, and waiting policies, for the two thread pools the fast backends use.

The matrix products run on OpenBLAS's threads (through NumPy), the numba kernels on numba's. On a
small machine the two pools must not both try to use every core: a pool that has just finished
keeps its threads spinning for a while, and the other pool's threads then wait for a core. The
probes on a 2-core machine found the layer kernels starved unless OpenBLAS got one thread while
numba kernels run, so that is the default policy of :func:`set_threads` for the numba backend.

**Spinning under load.** numba's ``omp`` threading layer (GNU libgomp, chosen by default when TBB
is absent) keeps its worker threads spinning for a while after each parallel kernel, waiting for
the next one. Between two kernels the main thread runs NumPy and OpenBLAS code; on an idle
machine the spinning worker has a core of its own, but when other processes keep the cores busy it
takes the main thread's (or the other process's) time slices. Measured on the shared 2-core
machine: a LeNet-5 epoch of 6,400 images took 4–5× longer with 2 numba threads than with 1, and
as long as with 1 thread or less once the workers slept instead of spinning
(``docs/performance.md``). So, before numba's first parallel kernel,
:func:`configure_numba_threading` sets ``OMP_WAIT_POLICY=passive`` (workers sleep at once) unless
the user chose a threading layer or a libgomp waiting policy; the ``workqueue`` layer, which never
spins, is not chosen because it aborts when two Python threads run kernels at once (e.g. a web
server's worker threads). And the default numba thread count is capped at the CPUs this process
may run on (``os.sched_getaffinity``: containers and ``taskset`` often allow fewer than the machine has).

Everything here is lazy: threadpoolctl and numba are imported only when a count is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from numcnn.errors import ConfigurationError

__all__ = [
    "apply_numba_default",
    "configure_numba_threading",
    "default_numba_threads",
    "environment_without_own_settings",
    "numba_threading_environment",
    "set_threads",
    "thread_report",
]

_blas_limiter = None  # keeps threadpoolctl's limit object alive (and the limit in force)
_explicit = False  # set_threads was called: never override the user's choice
BLAS_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# Variables by which a user chooses how numba's threads wait; any of them set: numcnn sets none.
THREADING_ENVIRONMENT = ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def numba_threading_environment(environ: Mapping[str, str], gomp_loaded: bool) -> dict[str, str]:
    """The environment variables to set before numba's first parallel kernel (see the module docstring).

    ``gomp_loaded``: libgomp is already in the process (loaded by another library); it read its
    waiting policy when it was loaded, so setting one now would change nothing.
    """
    if gomp_loaded or any(environ.get(name) for name in THREADING_ENVIRONMENT):
        return {}
    return {"OMP_WAIT_POLICY": "passive"}


def _gomp_loaded() -> bool:
    """Whether GNU libgomp is mapped into this process already (Linux; False where unknown)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


_threading_configured = False
_environment_set: dict[str, str] = {}  # what configure_numba_threading put into os.environ


def configure_numba_threading() -> dict[str, str]:
    """Set the waiting policy of numba's threads, once, before its first parallel kernel; return what was set."""
    global _threading_configured
    if _threading_configured:
        return {}
    _threading_configured = True
    settings = numba_threading_environment(os.environ, _gomp_loaded())
    os.environ.update(settings)  # read by libgomp when numba loads it, at the first parallel kernel
    _environment_set.update(settings)
    return settings


def environment_without_own_settings(
    environ: Mapping[str, str] | None = None, own: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A copy of ``environ`` (default: this process's) without the variables numcnn set itself.

    For another framework's process (the benchmark's PyTorch side): numcnn's choice of libgomp's
    waiting policy suits numcnn's kernels, and another framework should run as its users run it.
    A variable the user set, or changed since, stays. ``own`` defaults to what
    :func:`configure_numba_threading` set in this process.
    """
    environ = os.environ if environ is None else environ
    own = _environment_set if own is None else own
    return {name: value for name, value in environ.items() if own.get(name) != value}


def default_numba_threads(numba_threads: int, usable_cpus: int | None, environ: Mapping[str, str]) -> int:
    """numba's default thread count, capped at the CPUs this process may use, unless ``NUMBA_NUM_THREADS`` chose it.

    ``numba_threads``: numba's own default (the machine's CPU count); ``usable_cpus``: the CPUs
    in this process's affinity mask (None where unknown).
    """
    if environ.get("NUMBA_NUM_THREADS") or usable_cpus is None:
        return numba_threads
    return max(1, min(numba_threads, usable_cpus))


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def apply_numba_default() -> None:
    """Defaults for the thread pools when the numba backend starts, unless the user chose otherwise.

    Called once, when the numba backend is first used: numba's threads sleep instead of spinning
    between kernels (:func:`configure_numba_threading`), numba uses at most the CPUs this process
    may run on, and OpenBLAS gets one thread. A count chosen with :func:`set_threads` or with
    ``NUMBA_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is left alone.
    """
    global _blas_limiter
    configure_numba_threading()
    if _explicit:
        return
    import numba

    started = _numba_pool_size()
    threads = default_numba_threads(started, _usable_cpus(), os.environ)
    if threads != started:
        numba.set_num_threads(threads)
    if any(os.environ.get(name) for name in BLAS_ENVIRONMENT):
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
        configure_numba_threading()  # before numba starts its threads
        import numba  # only reached when the numba backend is in use

        available = _numba_pool_size()
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


def _numba_pool_size() -> int:
    """The threads numba starts (NUMBA_NUM_THREADS, by default the machine's CPU count)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)  # set at import from the environment


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
        report["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "libgomp default")
    return report


def _numba_threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not started"
