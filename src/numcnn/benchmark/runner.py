"""Timing numcnn (and the same model in PyTorch) on MNIST-shaped synthetic data.

What is measured, per batch size:

* **training** -- SGD-with-momentum steps (:func:`numcnn.train.train_step`: ``zero_grad``, forward,
  loss, backward without the input gradient, ``step``), cycling over a pool of distinct synthetic
  batches. A run times ``steps`` consecutive steps (or ``epochs_equivalent × 60,000`` images as a
  real pass); the epoch time is ``step time × ⌈60,000 / batch⌉``.
* **inference** -- a real forward pass, in eval mode, over 10,000 synthetic images (the size of the
  MNIST test set) in batches of the same size; also timed in ONNX Runtime when ``onnxruntime`` is
  installed (:mod:`numcnn.benchmark.onnx_baseline`).

Every measurement is repeated (``repeats`` ≥ 3) after a warm-up; numcnn and PyTorch runs are
*interleaved* (numcnn, PyTorch, numcnn, PyTorch, ...) so that both see the same machine load, and
the ratio numcnn/PyTorch is computed per pair of neighbouring runs, then summarised as the median
and min–max. No MNIST files are needed: the images have the model's input shape and the scale of
normalised MNIST pixels.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from numcnn import kernels, models
from numcnn.errors import ConfigurationError
from numcnn.inference import inference_model
from numcnn.layers.container import Sequential
from numcnn.layers.fusion import plan_steps, step_backward, step_forward
from numcnn.layers.graph import Graph
from numcnn.losses import LOSS_TYPES
from numcnn.optim import SGD
from numcnn.train import train_step

__all__ = [
    "EPOCH_IMAGES",
    "TEST_IMAGES",
    "BenchConfig",
    "Measurement",
    "BenchResult",
    "run_benchmark",
    "median_ms",
    "alternating_model_times",
]

EPOCH_IMAGES = 60_000  # one MNIST training epoch
TEST_IMAGES = 10_000  # the MNIST test set


@dataclass
class BenchConfig:
    """Settings of one benchmark run (the ``numcnn bench`` options)."""

    model: str = "lenet5"
    batch_sizes: tuple[int, ...] = (64, 256)
    steps: int | None = None  # timed training steps per run; default: 6,400 images' worth
    epochs_equivalent: float | None = None  # instead of steps: time a real pass over this many epochs
    repeats: int = 5
    infer_images: int = TEST_IMAGES  # images per inference run; the time is scaled to 10,000
    warmup_steps: int = 10
    threads: int | None = None  # default: every CPU
    blas_threads: int | None = None  # default: 1 with the numba backend, else `threads`
    backend: str = "auto"
    dtype: str = "float32"
    torch: bool = True
    onnxruntime: bool = True  # time inference in ONNX Runtime too, when installed
    profile: bool = False
    profile_steps: int = 20
    compile_time: bool = True
    # None: the model's recommended learning rate (its spec's ``training``, as ``numcnn train`` uses
    # it), else 0.01 -- so that no model diverges into overflow while it is timed.
    lr: float | None = None
    momentum: float = 0.9
    seed: int = 0

    def learning_rate(self, spec: models.ModelSpec) -> float:
        """``lr``, or the model's recommended one (0.01 where its spec names none)."""
        return float(spec.training.get("lr", 0.01)) if self.lr is None else self.lr

    def validate(self) -> None:
        if self.repeats < 3:
            raise ConfigurationError(f"--repeats must be at least 3 (a median needs several runs), got {self.repeats}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigurationError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.infer_images < 1:
            raise ConfigurationError(f"--infer-images must be >= 1, got {self.infer_images}")
        if self.steps is not None and self.steps < 1:
            raise ConfigurationError(f"--steps must be >= 1, got {self.steps}")
        if self.epochs_equivalent is not None and self.epochs_equivalent <= 0:
            raise ConfigurationError(f"--epochs-equivalent must be > 0, got {self.epochs_equivalent}")
        models.get_spec(self.model)

    def steps_per_run(self, batch_size: int) -> int:
        if self.epochs_equivalent is not None:
            return max(1, math.ceil(self.epochs_equivalent * EPOCH_IMAGES / batch_size))
        return self.steps if self.steps is not None else max(10, 6_400 // batch_size)


@dataclass
class Measurement:
    """Seconds of the repeated runs of one task, scaled to the reported unit (an epoch, 10k images)."""

    task: str  # "train" (seconds per 60,000-image epoch) or "infer" (seconds per 10,000 images)
    batch_size: int
    images: int  # images the reported unit stands for
    numcnn: list[float] = field(default_factory=list)
    torch: list[float] = field(default_factory=list)
    onnxruntime: list[float] = field(default_factory=list)  # inference only

    @property
    def ratios(self) -> list[float]:
        """numcnn / PyTorch, per pair of neighbouring runs."""
        return [ours / theirs for ours, theirs in zip(self.numcnn, self.torch)]

    @property
    def onnxruntime_ratios(self) -> list[float]:
        """numcnn / ONNX Runtime, per pair of neighbouring runs."""
        return [ours / theirs for ours, theirs in zip(self.numcnn, self.onnxruntime)]


@dataclass
class BenchResult:
    config: BenchConfig
    backend: str
    threads: dict
    measurements: list[Measurement]
    torch_note: str  # why PyTorch was not timed, or its version and threads
    peak_memory: dict[int, dict[str, float]]  # batch -> {"train_mib", "infer_mib"} (tracemalloc)
    max_rss_mib: float
    load_average: tuple[tuple[float, float, float], tuple[float, float, float]]  # at start, at end
    profile: dict[int, list[tuple[str, float, float]]] = field(default_factory=dict)  # batch -> rows
    compile_seconds: dict[str, float] | None = None
    steps: dict[int, int] = field(default_factory=dict)
    onnxruntime_note: str = ""  # why ONNX Runtime was not timed, or its version, threads and exporter


def synthetic_data(
    spec: models.ModelSpec, count: int, rng: np.random.Generator, dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Images of the model's input shape, scaled like normalised MNIST (about −0.4 … 2.8), and labels."""
    pixels = rng.random((count, *spec.input_shape)) ** 4  # mostly dark, some bright, like digits
    images = ((pixels - spec.input_mean) / spec.input_std).astype(dtype)
    return images, rng.integers(0, spec.num_classes, size=count)


def _batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images[s : s + batch_size], labels[s : s + batch_size]) for s in range(0, len(labels), batch_size)]


def _cycle(batches: list, count: int) -> list:
    return [batches[k % len(batches)] for k in range(count)]


class NumcnnRunner:
    """The numcnn side: a registry model, its loss and SGD, exactly as ``numcnn train`` uses them."""

    def __init__(self, config: BenchConfig, spec: models.ModelSpec) -> None:
        self.model = models.build(config.model, rng=config.seed, dtype=np.dtype(config.dtype))
        self.loss = LOSS_TYPES[spec.loss]()
        self.optimizer = SGD(self.model.parameters(), lr=config.learning_rate(spec), momentum=config.momentum)

    def train_steps(self, batches) -> None:
        self.model.train()
        for batch in batches:
            train_step(self.model, self.loss, self.optimizer, batch)  # the step 'numcnn train' takes

    def infer(self, batches) -> None:
        # As numcnn.train.evaluate runs it: eval mode, batch norm folded into the convolutions
        # (the folding, a copy of the weights, is inside the timed run).
        runner = inference_model(self.model)
        for x, _ in batches:
            runner.forward(x)
        self.model.train()


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def median_ms(function, repeats: int = 10) -> float:
    """Median milliseconds of ``repeats`` calls of ``function()``, after one untimed call."""
    function()
    return float(np.median([_timed(function) for _ in range(repeats)])) * 1e3


def alternating_model_times(
    name: str, settings: dict, rounds: int, batch_size: int = 64, batches: int = 20
) -> dict[str, tuple[list[float], list[float]]]:
    """Training and inference of registry model ``name`` under each of ``settings`` (``{label: a
    function that applies it}``), the settings taking turns, ``rounds`` times: ``{label: (ms per
    training step, ms per inference batch)}``, one entry per round. Same-process alternation is the
    only comparison that holds on a machine whose speed drifts (the on/off benchmarks use it).
    """
    spec = models.get_spec(name)
    runner = NumcnnRunner(BenchConfig(model=name), spec)
    images, labels = synthetic_data(spec, batch_size * batches, np.random.default_rng(0), np.float32)
    pool = _batches(images, labels, batch_size)
    runner.train_steps(pool[:3])
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in settings}
    for _ in range(rounds):
        for label, apply in settings.items():
            apply()
            times[label][0].append(_timed(runner.train_steps, pool) / len(pool) * 1e3)
            times[label][1].append(_timed(runner.infer, pool) / len(pool) * 1e3)
    return times


def configure_threads(config: BenchConfig, backend: str) -> dict:
    from numcnn.kernels.threads import set_threads

    threads = config.threads or os.cpu_count() or 1
    return set_threads(threads, backend, config.blas_threads)


def run_benchmark(config: BenchConfig, log=print) -> BenchResult:
    """Run every measurement of ``config``; ``log`` receives progress lines."""
    config.validate()
    load_start = os.getloadavg()
    backend = kernels.set_backend(config.backend)
    threads: dict = configure_threads(config, backend)
    # numcnn may have chosen libgomp's waiting policy (numcnn.kernels.threads): say so next to the
    # thread counts. PyTorch runs in its own process without it (numcnn.benchmark.torch_process).
    threads["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "default")
    spec = models.get_spec(config.model)
    config = dataclasses.replace(config, lr=config.learning_rate(spec))  # the report names the rate used
    ours = NumcnnRunner(config, spec)
    theirs, torch_note = _torch_runner(config, spec, ours)
    try:
        return _measure(config, spec, backend, threads, ours, theirs, torch_note, load_start, log)
    finally:
        if theirs is not None:
            theirs.close()


def _measure(config, spec, backend, threads, ours, theirs, torch_note, load_start, log) -> BenchResult:
    rng = np.random.default_rng(config.seed)
    onnx, onnx_note = _onnx_runner(config, spec, ours)
    count = config.infer_images
    images, labels = synthetic_data(spec, max(count, 16 * max(config.batch_sizes)), rng, config.dtype)
    test_images, test_labels = images[:count], labels[:count]
    per_test_set = TEST_IMAGES / count

    measurements, steps_used, memory, profile = [], {}, {}, {}
    for batch_size in config.batch_sizes:
        steps = config.steps_per_run(batch_size)
        steps_used[batch_size] = steps
        pool = _batches(images[: 16 * batch_size], labels[: 16 * batch_size], batch_size)
        train_batches, test_batches = _cycle(pool, steps), _batches(test_images, test_labels, batch_size)
        if theirs:  # sent once; each run below is timed in PyTorch's process
            theirs.load("train", train_batches)
            theirs.load("test", test_batches)
            theirs.load("warm-up train", train_batches[: config.warmup_steps])
            theirs.load("warm-up test", test_batches[:3])
        log(f"batch {batch_size}: warming up ...")
        ours.train_steps(_cycle(pool, config.warmup_steps))
        ours.infer(test_batches[:3])
        if theirs:
            theirs.train_seconds("warm-up train")
            theirs.infer_seconds("warm-up test")
        if onnx:
            onnx.infer(test_batches[:3])
        per_epoch = math.ceil(EPOCH_IMAGES / batch_size) / steps
        train = Measurement("train", batch_size, EPOCH_IMAGES)
        infer = Measurement("infer", batch_size, TEST_IMAGES)
        for repeat in range(config.repeats):
            log(f"batch {batch_size}: run {repeat + 1}/{config.repeats}")
            train.numcnn.append(_timed(ours.train_steps, train_batches) * per_epoch)
            if theirs:
                train.torch.append(theirs.train_seconds("train") * per_epoch)
            infer.numcnn.append(_timed(ours.infer, test_batches) * per_test_set)
            if theirs:
                infer.torch.append(theirs.infer_seconds("test") * per_test_set)
            if onnx:
                infer.onnxruntime.append(_timed(onnx.infer, test_batches) * per_test_set)
        measurements += [train, infer]
        memory[batch_size] = _peak_memory(ours, pool[0], test_batches[0])
        if config.profile and isinstance(ours.model, Sequential):
            profile[batch_size] = profile_layers(ours, pool, config.profile_steps)
        elif config.profile and isinstance(ours.model, Graph):
            profile[batch_size] = profile_graph(ours, pool, config.profile_steps)
    compile_seconds = None
    if config.compile_time and backend == "numba":
        from numcnn.benchmark.compile_time import measure_compile_time

        log("measuring numba's first-run compile time in fresh processes ...")
        compile_seconds = measure_compile_time(config.model, config.dtype)
    return BenchResult(
        config, backend, threads, measurements, torch_note, memory,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, (load_start, os.getloadavg()),
        profile, compile_seconds, steps_used, onnx_note,
    )  # fmt: skip


def _torch_runner(config: BenchConfig, spec, ours: NumcnnRunner):
    from numcnn.benchmark.torch_baseline import torch_available
    from numcnn.benchmark.torch_process import TorchProcess

    if not config.torch:
        return None, ""  # asked not to: the report does not mention PyTorch at all
    if not torch_available():
        return None, "PyTorch not installed (pip install torch==2.13.0 to compare)"
    if config.dtype != "float32":
        return None, "PyTorch timed in float32 only"
    count = config.threads or os.cpu_count() or 1
    try:
        runner = TorchProcess(spec, ours.model, config.learning_rate(spec), config.momentum, count)
    except ConfigurationError as error:  # a layer without a torch.nn twin: time numcnn alone
        return None, f"PyTorch not timed: {error}"
    policy = runner.child_environ("OMP_WAIT_POLICY") or "libgomp's default"
    return runner, f"PyTorch {runner.version}, {runner.thread_count} threads, own process (OMP_WAIT_POLICY {policy})"


def _onnx_runner(config: BenchConfig, spec, ours: NumcnnRunner):
    from numcnn.benchmark.onnx_baseline import OnnxRunner, onnxruntime_available

    if not config.onnxruntime:
        return None, "ONNX Runtime not timed (--no-onnxruntime)"
    if not onnxruntime_available():
        return None, "ONNX Runtime not installed (pip install onnxruntime to compare inference)"
    if config.dtype != "float32":
        return None, "ONNX Runtime timed in float32 only"
    count = config.threads or os.cpu_count() or 1
    try:
        runner = OnnxRunner(ours.model, None, spec.input_shape, count)
    except ConfigurationError as error:
        return None, f"ONNX Runtime not timed: {error}"
    return runner, runner.note()


def _peak_memory(ours: NumcnnRunner, train_batch, test_batch) -> dict[str, float]:
    """Peak memory NumPy allocated during one training step and one inference batch (tracemalloc)."""
    result = {}
    for key, run, batch in (("train_mib", ours.train_steps, train_batch), ("infer_mib", ours.infer, test_batch)):
        tracemalloc.start()
        try:
            run([batch])
            result[key] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    return result


def profile_layers(ours: NumcnnRunner, pool, steps: int) -> list[tuple[str, float, float]]:
    """Mean forward and backward microseconds per step of each planned layer step, loss and optimiser."""
    model, loss = ours.model, ours.loss
    layers = model.layers
    plan = plan_steps(layers, model.allow_fusion)
    names = ["+".join(type(layers[k]).__name__ for k in range(first, last + 1)) + f" [{first}]" for first, last in plan]
    forward, backward = np.zeros(len(plan)), np.zeros(len(plan))
    other = {"loss": 0.0, "optimizer": 0.0}
    model.train()
    for k in range(steps):
        x, y = pool[k % len(pool)]
        model.zero_grad()
        for index, step in enumerate(plan):
            started = time.perf_counter()
            x = step_forward(layers, step, x)
            forward[index] += time.perf_counter() - started
        started = time.perf_counter()
        loss.forward(x, y)
        grad = loss.backward()
        other["loss"] += time.perf_counter() - started
        for index in range(len(plan) - 1, -1, -1):
            started = time.perf_counter()
            grad = step_backward(layers, plan[index], grad, need_input_grad=False)
            backward[index] += time.perf_counter() - started
        started = time.perf_counter()
        ours.optimizer.step()
        other["optimizer"] += time.perf_counter() - started
    scale = 1e6 / steps
    rows = [(name, float(f * scale), float(b * scale)) for name, f, b in zip(names, forward, backward)]
    rows += [(name, seconds * scale, 0.0) for name, seconds in other.items()]
    return rows


def profile_graph(ours: NumcnnRunner, pool, steps: int) -> list[tuple[str, float, float]]:
    """:func:`profile_layers` for a :class:`~numcnn.layers.Graph`: mean forward and backward microseconds
    per step of each node, loss and optimiser.

    The graph runs its nodes one after the other, so a node's time is the time from the previous
    node's hook (or the start of the pass) to its own; the hooks only read the clock. Hooked layers
    are not fused, but graphs fuse nothing anyway.
    """
    model, loss = ours.model, ours.loss
    names = {id(node.layer): f"{type(node.layer).__name__} {node.name}" for node in model.nodes}
    order = list(names.values())
    forward = dict.fromkeys(order, 0.0)
    backward = dict.fromkeys(order, 0.0)
    other = {"loss": 0.0, "optimizer": 0.0}
    clock = [0.0]

    def timer(totals: dict[str, float]):
        def hook(layer, *_arrays) -> None:
            now = time.perf_counter()
            totals[names[id(layer)]] += now - clock[0]
            clock[0] = now

        return hook

    handles = [node.layer.register_forward_hook(timer(forward)) for node in model.nodes]
    handles += [node.layer.register_backward_hook(timer(backward)) for node in model.nodes]
    try:
        model.train()
        for k in range(steps):
            x, y = pool[k % len(pool)]
            model.zero_grad()
            clock[0] = time.perf_counter()
            outputs = model.forward(x)
            started = time.perf_counter()
            loss.forward(outputs, y)
            grad = loss.backward()
            other["loss"] += time.perf_counter() - started
            clock[0] = time.perf_counter()
            model.backward(grad, need_input_grad=False)
            started = time.perf_counter()
            ours.optimizer.step()
            other["optimizer"] += time.perf_counter() - started
    finally:
        for handle in handles:
            handle.remove()
    scale = 1e6 / steps
    rows = [(name, forward[name] * scale, backward[name] * scale) for name in order]
    rows += [(name, seconds * scale, 0.0) for name, seconds in other.items()]
    return rows
