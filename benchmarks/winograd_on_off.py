"""Winograd F(2×2, 3×3) on and off in one process: what it gains per layer and per training step.

    python benchmarks/winograd_on_off.py                      # the per-layer and whole-step figures
    python benchmarks/winograd_on_off.py --models sk --rounds 3

Per layer: forward and backward of the exercise 15.6 and resnet_mnist 3×3 stride-1 shapes (batch 64,
channel-major input as the layers hand it on), Winograd forced on for every shape, against the path
the numba backend takes without it. Per model: whole training steps and inference batches of a
registry model (the step ``numcnn train`` takes), the two settings alternating, median ms.
Same-process alternation is the only comparison that holds on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from numcnn import kernels
from numcnn.benchmark.runner import BenchConfig, alternating_model_times, configure_threads, median_ms

# (N, C, F, H = W, padding)
LAYERS = [
    (64, 16, 16, 28, 1),  # resnet_mnist block 1
    (64, 32, 32, 14, 1),  # block 2
    (64, 64, 64, 7, 1),  # block 3
    (64, 20, 20, 26, 0),  # SK's second convolution
    (64, 20, 50, 12, 0),  # SK's third
    (64, 50, 50, 10, 0),  # SK's fourth
    (64, 40, 40, 26, 0),  # SK-2's second
]


def _forward_backward_ms(backend, x, weight, padding) -> tuple[float, float]:
    y, cache = backend.conv2d_forward(x, weight, None, (1, 1), padding)
    delta = np.ones_like(y)
    forward = median_ms(lambda: backend.conv2d_forward(x, weight, None, (1, 1), padding))
    backward = median_ms(lambda: backend.conv2d_backward(delta, cache))
    return forward, backward


def _set_winograd(backend, on: bool, everywhere: bool) -> None:
    """On: the backend's own rule, or (``everywhere``) every 3×3 stride-1 shape; off: never."""
    defaults = type(backend)
    backend.winograd_min_channels = (1 if everywhere else defaults.winograd_min_channels) if on else 10**9
    backend.winograd_max_products = 10**9 if everywhere else defaults.winograd_max_products
    backend.winograd_min_output = 1 if everywhere else defaults.winograd_min_output
    # Off also means no Winograd backward pass for the direct and lanes kernels' layers.
    backend.winograd_backward_min_channels = defaults.winograd_backward_min_channels if on else 10**9
    # Winograd never takes a layer the direct kernels take: "everywhere" switches those off.
    backend.direct_max_filters_times_rows = 0 if on and everywhere else defaults.direct_max_filters_times_rows


def layers(backend, rounds: int) -> None:
    print("| layer (C→F, input) | without: forward / backward ms | Winograd | ratio (sum) |")
    print("| --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for n, c, f, size, pad in LAYERS:
        x = np.ascontiguousarray(rng.standard_normal((c, n, size, size), dtype=np.float32)).transpose(1, 0, 2, 3)
        weight = (rng.standard_normal((f, c, 3, 3)) * 0.1).astype(np.float32)
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for on in (False, True):
                _set_winograd(backend, on, everywhere=True)
                results[on].append(_forward_backward_ms(backend, x, weight, (pad, pad)))
        off = min(results[False], key=sum)
        on = min(results[True], key=sum)
        print(
            f"| {c}→{f}, {size}×{size} | {off[0]:.2f} / {off[1]:.2f} | {on[0]:.2f} / {on[1]:.2f} "
            f"| {sum(on) / sum(off):.2f} |"
        )
    _set_winograd(backend, True, everywhere=False)


def steps(backend, names: list[str], rounds: int) -> None:
    print("\n| model | training ms per step: without / with, median | ratio | inference ms per batch | ratio |")
    print("| --- | --- | --- | --- | --- |")
    settings = {on: (lambda on=on: _set_winograd(backend, on, everywhere=False)) for on in (False, True)}
    for name in names:
        times = alternating_model_times(name, settings, rounds)
        cells = []
        for task in (0, 1):
            off, on = statistics.median(times[False][task]), statistics.median(times[True][task])
            # The fastest round too: on a shared machine it is the steadier estimate of the cost.
            best_off, best_on = min(times[False][task]), min(times[True][task])
            cells.append(f"{off:.1f} / {on:.1f} (fastest {best_off:.1f} / {best_on:.1f})")
            cells.append(f"{on / off:.2f} (fastest {best_on / best_off:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    _set_winograd(backend, True, everywhere=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sk,sk_2,resnet_mnist")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of off and on")
    parser.add_argument("--skip-layers", action="store_true")
    args = parser.parse_args()
    name = kernels.set_backend("numba")
    configure_threads(BenchConfig(), name)
    backend = kernels.get_backend("numba")
    if not args.skip_layers:
        layers(backend, max(1, args.rounds // 3))
    steps(backend, args.models.split(","), args.rounds)


if __name__ == "__main__":
    main()
