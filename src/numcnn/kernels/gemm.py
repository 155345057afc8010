"""Matrix products on every core, without waking a second BLAS thread pool.

The numba backend gives OpenBLAS one thread (:mod:`numcnn.kernels.threads`): OpenBLAS's idle
workers spin for a while after each product and starve the numba kernels that follow. So a large
product ``A @ B`` is split here into as many bands as numba has threads -- column bands of ``B``
and ``C`` when ``C`` is wider than tall, else row bands of ``A`` and ``C`` -- and each band is
one single-threaded OpenBLAS call in its own Python thread (NumPy releases the GIL inside the
product). The bands are views with the full matrix's leading dimension, so nothing is copied,
and the worker threads sleep on a lock between products instead of spinning.

Every entry of ``C`` is still one dot product over the whole inner dimension, computed by one
call; OpenBLAS may pick other blockings for a band than for the whole, so the result equals
``A @ B`` up to rounding.
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


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D ``a`` ``(M, K)`` and ``b`` ``(K, N)``, split over numba's thread count when large."""
    rows, inner = a.shape
    columns = b.shape[1]
    threads = thread_count()
    if (
        threads < 2
        or rows * inner * columns < MIN_SPLIT_MULTIPLY_ADDS
        or threading.current_thread().name.startswith("numcnn-gemm")
    ):
        return np.matmul(a, b, out=out)
    by_columns = columns >= rows
    length = columns if by_columns else rows
    threads = min(threads, length // 16)  # bands of at least 16 rows or columns
    if threads < 2:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((rows, columns), dtype=np.result_type(a.dtype, b.dtype))
    edges = [length * t // threads for t in range(threads + 1)]
    bands = []
    for lo, hi in itertools.pairwise(edges):
        if by_columns:
            bands.append((a, b[:, lo:hi], out[:, lo:hi]))
        else:
            bands.append((a[lo:hi], b, out[lo:hi]))
    pool = _workers()
    futures = [pool.submit(np.matmul, left, right, out=target) for left, right, target in bands[1:]]
    left, right, target = bands[0]
    np.matmul(left, right, out=target)
    for future in futures:
        future.result()
    return out


def split_over_threads(work: Callable[[int, int, int], None], count: int) -> int:
    """Run ``work(first, last, part)`` on consecutive ranges covering ``0 … count − 1``, one per thread.

    The calling thread takes the first range; numba's thread count decides how many ranges (one
    when called from a worker, so that nothing waits for itself). Returns the number of ranges.
    """
    threads = min(thread_count(), count)
    if threads < 2 or threading.current_thread().name.startswith("numcnn-gemm"):
        work(0, count, 0)
        return 1
    edges = [count * t // threads for t in range(threads + 1)]
    pool = _workers()
    futures = [pool.submit(work, edges[t], edges[t + 1], t) for t in range(1, threads)]
    try:
        work(edges[0], edges[1], 0)
    finally:
        for future in futures:
            future.result()
    return threads
