"""How close the register-blocked products run to the core's multiply-add peak (one thread).

    python benchmarks/vector_peak.py

Prints, in GFLOP/s on one core: the peak of twelve independent chains of vector multiply-adds
(``simd.vfma`` on registers only: what the FMA units can do at numcnn's vector width), and
:func:`numcnn.kernels.numba_lanes.lane_products` -- the products of the lanes and Winograd kernels
-- on shapes of the exercise 15.6 and ``resnet_mnist`` layers, its data in L1, driven from jitted
code so that no Python call is timed. A kernel near the first figure cannot go faster at this
width; the rest of a layer's time is elsewhere (copies, transforms, threads).

Every accumulator is stored where it can be read back: a benchmark whose results are dropped lets
LLVM delete the unused chains and report a peak several times too high.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from numcnn.kernels.numba_lanes import BLOCK, lane_products
from numcnn.kernels.simd import VECTOR_BITS, vfma, vlanes, vload, vsplat, vstore

CHAINS = 12


@numba.njit(cache=False)
def _fma_chains(seed, steps, out):
    """``CHAINS`` independent chains ``a ← w0·w1 + a``, ``steps`` times; every chain stored in ``out``."""
    lanes = vlanes(out)
    w0, w1 = vload(seed, 0), vload(seed, lanes)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = vsplat(out.dtype.type(0))
    for _ in range(steps):
        a0, a1, a2, a3 = vfma(w0, w1, a0), vfma(w0, w1, a1), vfma(w0, w1, a2), vfma(w0, w1, a3)
        a4, a5, a6, a7 = vfma(w0, w1, a4), vfma(w0, w1, a5), vfma(w0, w1, a6), vfma(w0, w1, a7)
        a8, a9, a10, a11 = vfma(w0, w1, a8), vfma(w0, w1, a9), vfma(w0, w1, a10), vfma(w0, w1, a11)
    for k, accumulator in enumerate((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)):
        vstore(out, k * lanes, accumulator)


@numba.njit(cache=False)
def _products(weight, bias, source, offsets, positions, out, calls):
    for _ in range(calls):
        lane_products(weight, bias, source, offsets, positions, out)


def _fastest(function, rounds: int = 7) -> float:
    function()  # compiles
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    numba.set_num_threads(1)
    lanes = VECTOR_BITS // 32
    seed = np.full(2 * lanes, 1.0, dtype=np.float32)
    out = np.empty(CHAINS * lanes, dtype=np.float32)
    steps = 20_000_000
    seconds = _fastest(lambda: _fma_chains(seed, steps, out))
    print(f"{VECTOR_BITS}-bit vectors, float32, one thread")
    print(f"multiply-add peak ({CHAINS} chains): {2 * CHAINS * lanes * steps / seconds / 1e9:.0f} GFLOP/s")
    rng = np.random.default_rng(0)
    # (taps K = input channels, filters F' padded to whole vectors, positions P): Winograd's products
    # for SK's 20 → 20, SK-2's 40 → 40 and 100 → 100 (a band of 48 tiles), resnet_mnist's 32 → 32
    # by the lanes kernels (K = 32·3·3).
    for taps, filters, count in [(20, 24, 48), (40, 40, 48), (100, 104, 30), (288, 32, 48)]:
        row = 56  # floats between one tap's row of positions and the next
        source = rng.standard_normal(taps * row + 64, dtype=np.float32)
        offsets = np.arange(taps, dtype=np.int64) * row
        positions = np.arange(-(-count // BLOCK) * BLOCK, dtype=np.int64) % count
        weight = rng.standard_normal(taps * filters, dtype=np.float32)
        bias = np.zeros(filters, dtype=np.float32)
        products = np.empty(positions.size * filters, dtype=np.float32)
        calls = max(1, 200_000_000 // (taps * filters * positions.size))
        arguments = (weight, bias, source, offsets, positions, products, calls)
        seconds = _fastest(lambda arguments=arguments: _products(*arguments))
        rate = 2 * taps * filters * positions.size * calls / seconds / 1e9
        print(f"lane_products K={taps} F'={filters} P={positions.size}: {rate:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
