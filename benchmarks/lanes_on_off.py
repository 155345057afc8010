"""The kernels with the filters in the vector lanes (numba_lanes) on and off in one process.

    python benchmarks/lanes_on_off.py                          # the per-layer and whole-model figures
    python benchmarks/lanes_on_off.py --models lenet5 --rounds 12 --skip-layers

Per layer: training (forward, then both gradients; the pooled layers through the fused
convolution → ReLU → 2×2 pooling) and inference (forward alone) of the LeNet-5, exercise 15.6 and
resnet_mnist shapes, batch 64, channel-major input as the layers hand it on, the lanes forced on
against the path the numba backend takes without them. Per model: training steps and inference
batches of a registry model, the lanes under the backend's own rule against none, alternating,
median ms. Same-process alternation is the only comparison that holds on a machine whose speed
drifts.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from numcnn import kernels
from numcnn.benchmark.runner import BenchConfig, alternating_model_times, configure_threads, median_ms

# (label, C, F, H = W, kernel, stride, padding, pooled), batch 64
LAYERS = [
    ("LeNet-5 second", 6, 16, 14, 5, 1, 0, True),
    ("BASE second", 20, 50, 12, 5, 1, 0, True),
    ("resnet_mnist block 2, stride 2", 16, 32, 28, 3, 2, 1, False),
    ("resnet_mnist block 2", 32, 32, 14, 3, 1, 1, False),
    ("resnet_mnist block 3, stride 2", 32, 64, 14, 3, 2, 1, False),
    ("resnet_mnist block 3", 64, 64, 7, 3, 1, 1, False),
    ("resnet_mnist block 1 (not taken)", 16, 16, 28, 3, 1, 1, False),
    ("SK fourth (not taken: Winograd)", 50, 50, 10, 3, 1, 0, True),
    ("resnet_mnist shortcut 1×1 (not taken)", 16, 32, 28, 1, 2, 0, False),
]


def _set_lanes(backend, mode: str) -> None:
    """"rule": the backend's own choice; "off": never; "forced": every convolution."""
    defaults = type(backend)
    backend.__dict__.pop("use_lanes", None)
    backend.lanes_max_filters_times_rows = 0 if mode == "off" else defaults.lanes_max_filters_times_rows
    if mode == "forced":
        backend.use_lanes = lambda *arguments: True


def _layer_ms(backend, x, weight, stride, padding, pooled) -> tuple[float, float]:
    """(training, inference) ms of one layer."""

    def forward(record: bool):
        if pooled:
            fused = backend.conv2d_max_pool2d_forward(x, weight, None, stride, padding, (2, 2), (2, 2), (0, 0), record)
            if fused is not None:
                return fused[1]
            return backend.conv2d_relu_forward(x, weight, None, stride, padding)[1]
        return backend.conv2d_forward(x, weight, None, stride, padding)[1]

    y = backend.conv2d_forward(x, weight, None, stride, padding)[0]
    delta = np.ascontiguousarray(np.cos(y).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    train = median_ms(lambda: backend.conv2d_backward(delta, forward(True)))
    return train, median_ms(lambda: forward(False))


def layers(backend, rounds: int) -> None:
    print("| layer (C→F, input, kernel/stride) | without: training / inference ms | lanes | ratios |")
    print("| --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for label, c, f, size, kernel, stride, pad, pooled in LAYERS:
        x = np.ascontiguousarray(rng.standard_normal((c, 64, size, size), dtype=np.float32)).transpose(1, 0, 2, 3)
        weight = (rng.standard_normal((f, c, kernel, kernel)) * 0.1).astype(np.float32)
        results: dict[str, list[tuple[float, float]]] = {"off": [], "forced": []}
        for _ in range(rounds):
            for mode in results:
                _set_lanes(backend, mode)
                results[mode].append(_layer_ms(backend, x, weight, (stride, stride), (pad, pad), pooled))
        off = min(results["off"], key=sum)
        on = min(results["forced"], key=sum)
        print(
            f"| {label}: {c}→{f}, {size}×{size}, {kernel}×{kernel}/{stride} | {off[0]:.2f} / {off[1]:.2f} "
            f"| {on[0]:.2f} / {on[1]:.2f} | {on[0] / off[0]:.2f} / {on[1] / off[1]:.2f} |"
        )
    _set_lanes(backend, "rule")


def steps(backend, names: list[str], rounds: int) -> None:
    print("\n| model | training ms per step: without / with, median | ratio | inference ms per batch | ratio |")
    print("| --- | --- | --- | --- | --- |")
    settings = {mode: (lambda mode=mode: _set_lanes(backend, mode)) for mode in ("off", "rule")}
    for name in names:
        times = alternating_model_times(name, settings, rounds)
        cells = []
        for task in (0, 1):
            off, on = statistics.median(times["off"][task]), statistics.median(times["rule"][task])
            cells.append(f"{off:.2f} / {on:.2f}")
            ratios = sorted(b / a for a, b in zip(times["off"][task], times["rule"][task]))
            cells.append(f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    _set_lanes(backend, "rule")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,base,resnet_mnist")
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
