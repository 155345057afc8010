"""Matrix products on every core, without waking a second BLAS thread pool.

The numba backend gives OpenBLAS one thread (:mod:`numcnn.kernels.threads`): OpenBLAS's idle
workers spin for a while after each product and starve the numba kernels that follow. So a large
product ``A @ B`` is cut here into bands -- column bands of ``B`` and ``C`` when ``C`` is wider
than tall, else row bands of ``A`` and ``C`` -- and each band is one single-threaded OpenBLAS call,
the bands shared out among numba's thread count of Python threads (NumPy releases the GIL inside
the product). The bands are views with the full matrix's leading dimension, so nothing is copied,
and the worker threads sleep on a lock between products instead of spinning.

**Same numbers on any thread count.** How a product is cut depends on its shape alone, never on
the thread count; threads only decide who computes which band. So a run with one thread, two, or
one per MPI process gives bitwise the same products (OpenBLAS may block a band differently from
the whole product, so the result equals ``A @ B`` up to rounding, always the same rounding).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["matmul", "split_over_threads", "thread_count"]

# Below this many multiply-adds a product is too short for a hand-over to another thread to pay
# (a hand-over costs some tens of microseconds; probed on the exercise 15.6 layers).
MIN_SPLIT_MULTIPLY_ADDS = 2_000_000
# How products are cut (a function of the shape alone): at most MAX_BANDS bands of at least
# MIN_BAND rows or columns. Four bands keep up to four cores busy; more would only shrink the calls.
MAX_BANDS = 4
MIN_BAND = 32

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (process id, workers): a forked child needs its own threads


def _workers() -> ThreadPoolExecutor:
    """The worker threads: one fewer than numba's thread count (the calling thread is the other)."""
    global _pool, _pool_key
    key = (os.getpid(), max(1, thread_count() - 1))
    with _lock:
        if _pool is None or _pool_key != key:
            _pool = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix="numcnn-gemm")
            _pool_key = key
        return _pool


def thread_count() -> int:
    """numba's thread count: how many parts :func:`matmul` and :func:`split_over_threads` make at most."""
    import numba

    return int(numba.get_num_threads())


def _bands(length: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges cutting ``length`` rows or columns: a function of the shape alone."""
    parts = max(1, min(MAX_BANDS, length // MIN_BAND))
    edges = [length * t // parts for t in range(parts + 1)]
    return list(itertools.pairwise(edges))


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D ``a`` ``(M, K)`` and ``b`` ``(K, N)``, in bands over numba's threads when large."""
    rows, inner = a.shape
    columns = b.shape[1]
    by_columns = columns >= rows
    bands = _bands(columns if by_columns else rows)
    if rows * inner * columns < MIN_SPLIT_MULTIPLY_ADDS or len(bands) < 2:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((rows, columns), dtype=np.result_type(a.dtype, b.dtype))

    def work(first: int, last: int) -> None:
        for lo, hi in bands[first:last]:
            if by_columns:
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
            else:
                np.matmul(a[lo:hi], b, out=out[lo:hi])

    split_over_threads(work, len(bands))
    return out


def split_over_threads(work: Callable[[int, int], None], count: int) -> None:
    """Run ``work(first, last)`` on consecutive ranges covering tasks ``0 … count − 1``, a range per thread.

    The calling thread takes the first range; numba's thread count decides how many ranges (one
    when called from a worker, so that nothing waits for itself). ``work`` must give the same
    results however the tasks are grouped (see the module docstring).
    """
    threads = min(thread_count(), count)
    if threads < 2 or threading.current_thread().name.startswith("numcnn-gemm"):
        work(0, count)
        return
    edges = [count * t // threads for t in range(threads + 1)]
    pool = _workers()
    futures = [pool.submit(work, edges[t], edges[t + 1]) for t in range(1, threads)]
    try:
        work(edges[0], edges[1])
    finally:
        for future in futures:
            future.result()
