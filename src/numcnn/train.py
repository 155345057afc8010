"""Training and evaluation loops for the registered models on MNIST.

One training step is the whole story of back-propagation, in five calls (:func:`train_step`)::

    model.zero_grad()                          # gradients are accumulated with +=, so clear them
    outputs = model.forward(images)            # every layer caches what its backward needs
    value = loss.forward(outputs, labels)      # E
    model.backward(loss.backward(), need_input_grad=False)   # δ from the output back to layer 1
    optimizer.step()                           # w ← w − η·v

:func:`train_step` is the only copy of it: ``numcnn train`` (:func:`fit`, :func:`train_epoch`),
``numcnn bench`` and a distributed trainer all call it; its ``hook`` runs between ``backward`` and
the optimiser step, where a data-parallel trainer sums the flat gradient buffer over processes
(:func:`numcnn.layers.flat.flat_gradient`).

Randomness: every purpose (initialisation, shuffling, dropout, augmentation, SDLM's curvature
samples) has its own generator derived from ``TrainConfig.seed`` (:func:`numcnn.streams.streams`),
so the same configuration reproduces the same run. Checkpoints hold every stream's state and, inside
an epoch, the step reached, so a resumed run continues exactly where the interrupted one stopped --
its final weights equal an uninterrupted run's bit for bit.

Safety: a run stops at the first non-finite loss or parameter (:class:`TrainingDiverged`), keeping
the last good checkpoint; on SIGINT/SIGTERM (with ``handle_signals``) it finishes the current step,
writes a checkpoint there and raises :class:`~numcnn.interrupt.TrainingInterrupted`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from numcnn import models
from numcnn.augment import Augmenter
from numcnn.checkpoint import load_checkpoint, previous_path, save_checkpoint
from numcnn.early_stopping import EarlyStopping
from numcnn.errors import CheckpointError, ConfigurationError, DataError, NumcnnError
from numcnn.inference import inference_model
from numcnn.interrupt import StopRequests, TrainingInterrupted
from numcnn.layers import Dropout
from numcnn.layers.base import Layer
from numcnn.layers.flat import flat_buffers, walk_layers
from numcnn.losses import LOSS_TYPES, Loss
from numcnn.optim import SGD, Optimizer, layer_groups
from numcnn.progress import Progress
from numcnn.rundir import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    METRICS_NAME,
    check_run_directory,
    clear_run_files,
    describe_position,
    describe_run,
    reconcile_metrics,
    remove_stale_temporaries,
)
from numcnn.schedules import Schedule
from numcnn.sdlm import LECUN_1998_SCHEDULE, SDLM, layers_without_curvature
from numcnn.streams import PURPOSES, RandomStreams, streams

__all__ = [
    "TrainConfig",
    "EpochMetrics",
    "EpochPosition",
    "History",
    "Split",
    "StepResult",
    "Parallel",
    "TrainingDiverged",
    "prepare_split",
    "make_loss",
    "make_optimizer",
    "make_schedule",
    "make_augmenter",
    "evaluate",
    "train_step",
    "nonfinite",
    "train_epoch",
    "fit",
    "use_dropout_generator",
    "configure_compute",
    "load_data",
    "read_metrics",
    "CHECKPOINT_NAME",
    "METRICS_NAME",
]

OPTIMIZERS = ("sgd", "sdlm")


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved in the checkpoint)."""

    model: str = "lenet5"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    train_limit: int | None = None  # use only this many training examples ...
    train_offset: int = 0  # ... starting at this index (disjoint subsets)
    dtype: str = "float32"
    eval_batch_size: int = 1000
    optimizer: str = "sgd"  # "sdlm": LeCun's stochastic diagonal Levenberg-Marquardt (numcnn.sdlm)
    damping: float = 0.02  # SDLM's μ in η / (μ + h_kk)
    curvature_samples: int = 500  # SDLM: samples the curvature is re-estimated on before each epoch
    layer_lr: dict[str, float] = field(default_factory=dict)  # learning rate per layer index, e.g. {"0": 0.01}
    # Learning-rate schedule per epoch (numcnn.schedules): constant, step, exponential or cosine; it
    # scales every parameter group's own rate (so per-layer rates keep their ratios).
    lr_schedule: str = "constant"
    lr_step: int = 10  # step: epochs between decays
    lr_gamma: float = 0.1  # step, exponential: decay factor
    lr_min: float = 0.0  # cosine: the rate it anneals towards (for the groups at ``lr``)
    # Early stopping (numcnn.early_stopping): patience in epochs, 0 = off; needs a validation set,
    # the last ``validation_size`` of the selected training examples, held out of training.
    early_stopping: int = 0
    validation_size: int = 0
    # Augmentation of training batches (numcnn.augment); flips are wrong for digits, so off.
    augment_shift: int = 0  # pixels
    augment_rotate: float = 0.0  # degrees
    augment_flip: bool = False

    @classmethod
    def for_model(cls, model: str, **settings) -> TrainConfig:
        """The configuration for ``model``: the defaults here, then the model's recommended
        settings (:attr:`ModelSpec.training`), then every ``settings`` value that is not ``None``."""
        values = dict(models.get_spec(model).training)
        values.update({name: value for name, value in settings.items() if value is not None})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigurationError(f"unknown training setting(s) for {model!r}: {', '.join(unknown)}")
        return cls(model=model, **values)

    def validate(self) -> None:
        models.get_spec(self.model)  # unknown names fail here, with the list of known ones
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigurationError("epochs, batch size and evaluation batch size must be >= 1")
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ConfigurationError("the learning rate must be > 0, momentum and weight decay >= 0")
        if self.train_offset < 0 or (self.train_limit is not None and self.train_limit < 1):
            raise ConfigurationError("train offset must be >= 0 and train limit >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigurationError(f"the seed must be an integer >= 0, got {self.seed!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigurationError(f"dtype must be float32 or float64, got {self.dtype!r}")
        make_schedule(self)  # each of these raises a one-line error on impossible settings
        Augmenter(self.augment_shift, self.augment_rotate, self.augment_flip)
        if self.early_stopping:
            EarlyStopping(self.early_stopping)
        if self.validation_size < 0 or (self.early_stopping and self.validation_size == 0):
            raise ConfigurationError(
                "early stopping needs a validation set: hold out training examples with validation_size > 0 "
                "(--validation-size K on the command line)"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigurationError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.damping <= 0 or self.curvature_samples < 1:
            raise ConfigurationError("SDLM's damping must be > 0 and its curvature sample count >= 1")
        if any(lr <= 0 for lr in self.layer_lr.values()):
            raise ConfigurationError(f"per-layer learning rates must be > 0, got {self.layer_lr}")


@dataclass
class EpochMetrics:
    """One line of ``metrics.jsonl``; accuracies are fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # training time of this epoch
    eval_seconds: float = 0.0
    lr: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        record = asdict(self)
        record.update(record.pop("extra"))
        return json.dumps(record)


@dataclass
class Split:
    """Model-ready inputs ``(N, C, H, W)`` and integer labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class History(list):
    """The :class:`EpochMetrics` of the epochs a :func:`fit` call ran, plus the trained ``model`` and
    ``final``: the metrics that describe ``model`` as returned -- the last epoch's, or with early
    stopping those of the best epoch, whose weights were restored."""

    model: Layer | None = None
    final: EpochMetrics | None = None


def prepare_split(spec: models.ModelSpec, images: np.ndarray, labels: np.ndarray, dtype="float32") -> Split:
    """Normalise raw uint8 images ``(N, H, W)`` the way ``spec`` expects its inputs."""
    return Split(spec.prepare(images, dtype), labels.astype(np.int64))


def make_loss(spec: models.ModelSpec) -> Loss:
    try:
        return LOSS_TYPES[spec.loss]()
    except KeyError:
        raise ConfigurationError(f"model {spec.name!r} asks for unknown loss {spec.loss!r}") from None


def make_optimizer(config: TrainConfig, model: Layer) -> Optimizer:
    """The optimiser a configuration asks for, bound to ``model``'s parameters.

    ``"sgd"``: :class:`~numcnn.optim.SGD` with momentum and weight decay. ``"sdlm"``:
    :class:`~numcnn.sdlm.SDLM` with damping ``μ``, its curvature re-estimated before every epoch, and
    the paper's decreasing η schedule (:data:`~numcnn.sdlm.LECUN_1998_SCHEDULE`) starting from ``lr`` --
    unless ``lr_schedule`` names another schedule, which then sets η per epoch instead. A model with a
    layer that has no curvature pass is refused here, before any training.
    ``layer_lr`` gives layers their own learning rate (param groups) with either optimiser.
    """
    parameters = layer_groups(model, config.layer_lr) if config.layer_lr else model.parameters()
    if config.optimizer == "sdlm":
        lacking = layers_without_curvature(model)
        if lacking:
            raise ConfigurationError(
                f"SDLM needs a curvature pass in every layer; {', '.join(lacking)} has none (use --optimizer sgd)"
            )
        lecun = config.lr_schedule == "constant"  # the default: LeCun's own steps of η
        return SDLM(
            parameters, lr=config.lr, damping=config.damping,
            schedule=LECUN_1998_SCHEDULE if lecun else None, curvature_samples=config.curvature_samples,
        )  # fmt: skip
    return SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_schedule(config: TrainConfig) -> Schedule:
    """The learning rate of every epoch (:mod:`numcnn.schedules`)."""
    return Schedule(config.lr_schedule, config.lr, config.epochs, config.lr_step, config.lr_gamma, config.lr_min)


def make_augmenter(config: TrainConfig, spec: models.ModelSpec) -> Augmenter | None:
    """The training-batch augmentation, or None when it is off; uncovered pixels get the background."""
    augmenter = Augmenter(
        config.augment_shift, config.augment_rotate, config.augment_flip, fill=-spec.input_mean / spec.input_std
    )
    return augmenter if augmenter.active else None


class Parallel(Protocol):
    """How :func:`fit` spreads one run over processes (data parallelism); implemented over MPI by
    :class:`numcnn.distributed.trainer.DataParallel`. Every process calls ``fit`` with the same settings."""

    rank: int
    writes: bool  # this process writes the run's files (and resumes from them); the others receive

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This process's part of a global batch (an array of example indices)."""
        ...

    def reduce_gradients(self, model: Layer) -> None:
        """Between backward and the optimiser step: turn this process's gradient into the global batch's."""
        ...

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over the processes."""
        ...

    def part(self, count: int) -> slice:
        """This process's part of ``count`` evaluation examples."""
        ...

    def synchronise_buffers(self, model: Layer) -> None:
        """Make the non-trained buffers (batch norm's running estimates) the same on every process."""
        ...

    def share(self, state: Any) -> Any:
        """The writing process's ``state`` on every process."""
        ...


def evaluate(
    model: Layer, loss: Loss, spec: models.ModelSpec, split: Split, batch_size: int = 1000,
    parallel: Parallel | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Mean loss and accuracy of ``model`` on ``split``, in eval mode (restored afterwards).

    With ``parallel`` each process evaluates its part of ``split`` and the sums are added."""
    was_training = model.training
    runner = inference_model(model)  # eval mode, batch norm folded into the convolutions
    total_loss, correct = 0.0, 0
    part = slice(0, len(split)) if parallel is None else parallel.part(len(split))
    images_part, labels_part = split.images[part], split.labels[part]
    try:
        for start in range(0, len(labels_part), batch_size):
            images = images_part[start : start + batch_size]
            labels = labels_part[start : start + batch_size]
            outputs = runner.forward(images)
            total_loss += loss.forward(outputs, labels) * len(labels)
            correct += int(np.count_nonzero(spec.predict_classes(outputs) == labels))
    finally:
        model.train(was_training)
    if parallel is not None:
        total_loss, correct_sum = parallel.sum(total_loss, correct)
        correct = int(correct_sum)
    return total_loss / len(split), correct / len(split)


class TrainingDiverged(NumcnnError):
    """The training loss or a parameter became NaN or infinite (Keras's ``TerminateOnNaN``)."""


@dataclass
class StepResult:
    """What one :func:`train_step` measured on its batch."""

    loss: float  # Ẽ = E + Ω, the batch's mean loss plus the model's penalties
    correct: int | None  # correctly classified examples (None without ``predict``)
    count: int  # examples in the batch


def train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    batch: tuple[np.ndarray, np.ndarray],
    *,
    hook: Callable[[Layer], None] | None = None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> StepResult:
    """One step of gradient descent on ``batch = (images, labels)``: forward, loss, backward, ``hook``, update.

    ``hook(model)`` runs after the gradients ∂Ẽ/∂w are complete and before ``optimizer.step()``; a
    data-parallel trainer sums the flat gradient buffer over its processes there
    (:func:`numcnn.layers.flat.flat_gradient`). ``predict`` maps the model's outputs to class
    labels (e.g. ``spec.predict_classes``) to count the correct ones. The step checks nothing:
    see :func:`nonfinite`.

    Shape:
        - images: model input, ``(N, C, H, W)``
        - labels: ``(N,)`` integer classes
    """
    images, labels = batch
    model.zero_grad()
    outputs = model.forward(images)
    value = float(loss.forward(outputs, labels) + model.penalty())  # Ẽ = E + Ω (e.g. seed 000 eq. 11)
    # The input images need no gradient: skipping it saves the first layer's col2im.
    model.backward(loss.backward(), need_input_grad=False)
    if hook is not None:
        hook(model)
    optimizer.step()
    correct = None if predict is None else int(np.count_nonzero(predict(outputs) == labels))
    return StepResult(value, correct, len(labels))


def nonfinite(value: float, params: np.ndarray | Layer) -> str | None:
    """What is not finite after a step -- the loss ``value`` or a parameter -- or ``None``.

    ``params`` is the flat parameter buffer (:func:`numcnn.layers.flat.flat_buffers`) or the model.
    ``min`` and ``max`` propagate NaN and ±inf without allocating, so the check costs two passes
    over the parameters (a few µs for LeNet-5's 61,706, against milliseconds per step)."""
    if not math.isfinite(value):
        return f"the training loss became {value}"
    arrays = [params] if isinstance(params, np.ndarray) else [p for p, _ in params.parameters()]
    for array in arrays:
        if array.size and not (math.isfinite(array.min()) and math.isfinite(array.max())):
            return "a parameter became NaN or infinite"
    return None


@dataclass
class EpochPosition:
    """How far an epoch has got: saved in checkpoints written inside an epoch, so that resuming
    replays the same batch order from the next step with the same running totals."""

    epoch: int
    step: int = 0  # batches finished
    order_state: dict[str, Any] | None = None  # the shuffle stream before this epoch's permutation
    total_loss: float = 0.0  # Σ batch loss × batch size
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch before the checkpoint

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochPosition:
        try:
            return cls(**values)
        except TypeError as error:
            raise CheckpointError(f"the saved position inside the epoch is unusable ({error})") from None


def train_epoch(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    spec: models.ModelSpec,
    split: Split,
    batch_size: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
    augment: Augmenter | None = None,
    *,
    augment_rng: np.random.Generator | None = None,
    hook: Callable[[Layer], None] | None = None,
    position: EpochPosition | None = None,
    after_step: Callable[[EpochPosition], None] | None = None,
    parallel: Parallel | None = None,
) -> tuple[float, float]:
    """One pass over ``split`` in the order ``rng.permutation`` gives; returns the mean training loss and accuracy.

    ``parallel``: this process trains on its shard of each batch, the gradients are combined before
    each step (ahead of ``hook``), and the returned means are over all processes' examples; ``position``
    holds this process's own totals.

    ``augment`` transforms each batch with ``augment_rng`` (default: ``rng``, after the shuffle).
    ``position`` resumes an epoch a checkpoint stopped inside: the shuffle generator is put back to
    its state before the permutation, so the same order is drawn, and the epoch continues at
    ``position.step`` with its running totals. ``position`` is updated after every step and passed
    to ``after_step`` (checkpoints, interruption). ``hook``: see :func:`train_step`.

    Raises :class:`TrainingDiverged` naming the epoch and step at the first non-finite loss or parameter.
    """
    model.train()
    position = position if position is not None else EpochPosition(epoch=0)
    if position.order_state is None:
        position.order_state = dict(rng.bit_generator.state)
    else:
        rng.bit_generator.state = position.order_state
    order = rng.permutation(len(split))
    augment_rng = rng if augment_rng is None else augment_rng
    if parallel is not None:
        hook = _then(parallel.reduce_gradients, hook)
    buffers = flat_buffers(model)
    watched: np.ndarray | Layer = buffers.params if buffers is not None else model
    if progress is not None and position.seen:
        progress.update(position.seen, **_running_means(position))
    for step in range(position.step, math.ceil(len(split) / batch_size)):
        batch = order[step * batch_size : (step + 1) * batch_size]
        if parallel is not None:
            batch = parallel.shard(batch)
        images, labels = split.images[batch], split.labels[batch]
        if augment is not None:
            images = augment(images, augment_rng)
        # Overflow on the way to divergence would print NumPy warnings; nonfinite() reports it in one line.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = train_step(model, loss, optimizer, (images, labels), hook=hook, predict=spec.predict_classes)
        problem = nonfinite(result.loss, watched)
        if problem is not None:
            raise TrainingDiverged(f"training diverged at epoch {position.epoch}, step {step + 1}: {problem}")
        position.step = step + 1
        position.total_loss += result.loss * result.count
        position.correct += result.correct or 0
        position.seen += result.count
        if progress is not None:
            progress.update(result.count, **_running_means(position))
        if after_step is not None:
            after_step(position)
    if parallel is None:
        return position.total_loss / position.seen, position.correct / position.seen
    parallel.synchronise_buffers(model)
    total_loss, correct, seen = parallel.sum(position.total_loss, position.correct, position.seen)
    return total_loss / seen, correct / seen


def _then(first: Callable[[Layer], None], second: Callable[[Layer], None] | None) -> Callable[[Layer], None]:
    """A step hook that runs ``first``, then ``second`` (if any)."""
    if second is None:
        return first

    def both(model: Layer) -> None:
        first(model)
        second(model)

    return both


def _running_means(position: EpochPosition) -> dict[str, float]:
    return {"loss": position.total_loss / position.seen, "accuracy": position.correct / position.seen}


def use_dropout_generator(model: Layer, rng: np.random.Generator) -> None:
    """Make every :class:`~numcnn.layers.Dropout` layer of ``model`` draw its masks from ``rng``."""
    for layer in walk_layers(model):
        if isinstance(layer, Dropout):
            layer.rng = rng


def _select(images: np.ndarray, labels: np.ndarray, offset: int, limit: int | None):
    if offset >= len(labels):
        raise ConfigurationError(f"train offset {offset} is beyond the {len(labels)} training examples")
    stop = len(labels) if limit is None else offset + limit
    if stop > len(labels):
        raise ConfigurationError(
            f"asked for {limit} training examples from index {offset}, but there are only {len(labels)}"
        )
    return images[offset:stop], labels[offset:stop]


def _check_given_model(model: Layer, config: TrainConfig) -> None:
    spec = getattr(model, "spec", None)
    if spec is not None and spec.name != config.model:
        raise ConfigurationError(f"fit was given a {spec.name!r} model but the configuration names {config.model!r}")
    dtypes = {str(param.dtype) for param, _ in model.parameters()}
    if dtypes and dtypes != {config.dtype}:
        raise ConfigurationError(f"the given model's parameters are {', '.join(sorted(dtypes))}, not {config.dtype}")


@dataclass
class _Run:
    """What the epoch loop of :func:`fit` shares with its checkpoint writer."""

    config: TrainConfig
    model: Layer
    optimizer: Optimizer
    streams: RandomStreams
    out_path: Path | None
    stopper: EarlyStopping | None
    log: Callable[[str], None]
    saved_at: str | None = None  # the position of the checkpoint on disk (describe_position), for messages

    def save(self, finished_epochs: int, position: EpochPosition | None = None, record: dict | None = None) -> None:
        """Write ``model.npz`` (the previous one becomes ``model.prev.npz``): at the end of epoch
        ``finished_epochs`` (with its metrics ``record``), or inside the next epoch at ``position``."""
        if self.out_path is None:
            return
        meta: dict[str, Any] = {
            "epoch": finished_epochs, "config": asdict(self.config), "rng_states": self.streams.state(),
        }  # fmt: skip
        if position is not None:
            meta["position"] = asdict(position)
        if record is not None:
            meta["metrics"] = record
        if self.stopper is not None:
            meta["early_stopping"] = self.stopper.state()
        path = self.out_path / CHECKPOINT_NAME
        save_checkpoint(
            path, self.model, self.config.model, optimizer_state=self.optimizer.state_dict(), meta=meta,
            keep_previous=True,
        )  # fmt: skip
        self.saved_at = describe_position(meta)

    def on_disk(self, written: str = "saved to") -> str:
        """For messages: what the run directory holds now."""
        if self.out_path is None:
            return "nothing was saved (no run directory)"
        if self.saved_at is None:
            return f"no checkpoint yet in {self.out_path}"
        return f"checkpoint at {self.saved_at} {written} {self.out_path / CHECKPOINT_NAME}"


def fit(
    config: TrainConfig,
    data,
    out_dir: str | Path | None = None,
    *,
    model: Layer | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    handle_signals: bool = False,
    hook: Callable[[Layer], None] | None = None,
    rank: int = 0,
    parallel: Parallel | None = None,
    log: Callable[[str], None] = print,
    show_progress: bool | None = None,
) -> History:
    """Train ``config.model`` on ``data`` (an object with ``train_images/labels``, ``test_images/labels``).

    ``model``: train this model (of the architecture ``config.model``, in ``config.dtype``) instead
    of building one from ``config.seed``; its dropout layers are given the run's dropout stream.

    With ``out_dir``, after every epoch -- and every ``checkpoint_every`` steps inside an epoch, if
    > 0 -- a checkpoint ``model.npz`` is written (the one it replaces is kept as ``model.prev.npz``)
    and after every epoch a line is appended to ``metrics.jsonl``. A directory that is not empty is
    refused unless ``resume`` (continue from the checkpoint there up to ``config.epochs`` in total,
    from the exact step it was written at) or ``overwrite`` (delete the previous run's files first).

    ``handle_signals``: on SIGINT/SIGTERM finish the current step, write a checkpoint there and raise
    :class:`~numcnn.interrupt.TrainingInterrupted` saying what is on disk. A non-finite loss or
    parameter raises :class:`TrainingDiverged` (the last good checkpoint stays). ``hook``: run between
    backward and the optimiser step (:func:`train_step`); ``rank``: which process's random streams
    (:func:`numcnn.streams.streams`).

    ``parallel`` makes this call one process of a data-parallel run (:class:`Parallel`; see
    :mod:`numcnn.distributed.trainer`): the writing process passes ``out_dir`` and ``resume`` and
    the others ``None`` and ``False``; the state the writing process starts from (fresh or restored)
    is then shared with all. Checkpoints are written at the end of epochs only (no
    ``checkpoint_every`` or ``handle_signals``: a position inside an epoch would need every process's sums).

    Returns the metrics of the epochs run by this call as a :class:`History`, which also carries the
    trained model. With early stopping the model is returned with the weights of its best validation
    epoch (also saved as ``best.npz``).
    """
    config.validate()
    if parallel is not None and (checkpoint_every or handle_signals):
        raise ConfigurationError("a data-parallel run writes checkpoints at epoch ends only (no --checkpoint-every)")
    if checkpoint_every < 0:
        raise ConfigurationError(f"the checkpoint interval must be >= 0 steps, got {checkpoint_every}")
    spec = models.get_spec(config.model)
    random = streams(config.seed, rank)
    if model is None:
        model = models.build(config.model, rng=random.init, dtype=np.dtype(config.dtype))
    else:
        _check_given_model(model, config)
    use_dropout_generator(model, random.dropout)
    loss = make_loss(spec)
    optimizer = make_optimizer(config, model)
    schedule, augment = make_schedule(config), make_augmenter(config, spec)
    stopper = EarlyStopping(config.early_stopping) if config.early_stopping else None

    # Every check on the data and on a resumed checkpoint comes before anything in ``out_dir`` is
    # written: a run that cannot start must leave a previous run's files as they were.
    train_images, train_labels = _select(data.train_images, data.train_labels, config.train_offset, config.train_limit)
    validation_split = None
    if config.validation_size:
        cut = len(train_labels) - config.validation_size
        if cut < 1:
            raise ConfigurationError(f"validation size {config.validation_size} leaves no training examples")
        validation_split = prepare_split(spec, train_images[cut:], train_labels[cut:], config.dtype)
        train_images, train_labels = train_images[:cut], train_labels[:cut]
    train_split = prepare_split(spec, train_images, train_labels, config.dtype)
    test_split = prepare_split(spec, data.test_images, data.test_labels, config.dtype)

    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        check_run_directory(out_path, resume=resume, overwrite=overwrite)
    run = _Run(config, model, optimizer, random, out_path, stopper, log)
    first_epoch, position = 1, None
    if resume:
        first_epoch, position = _restore(run)
        log(f"resuming {config.model} from the {run.on_disk('in')}")
    elif out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            clear_run_files(out_path)
        (out_path / METRICS_NAME).write_text("")  # a fresh run starts a fresh log
    if out_path is not None:
        remove_stale_temporaries(out_path)
    if parallel is not None:
        first_epoch, position = _share_start(run, parallel, first_epoch, position)
    log(
        f"training {config.model} ({model.num_parameters():,} parameters) on {len(train_split):,} images, "
        f"testing on {len(test_split):,}; batch {config.batch_size}, lr {config.lr}, "
        + (f"SDLM damping {config.damping}" if config.optimizer == "sdlm" else f"momentum {config.momentum}")
    )

    history = History()
    best_state = None
    initial_lrs = [group["lr"] for group in optimizer.param_groups]  # what a schedule scales
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    started = time.perf_counter()  # when the training time of the current epoch (re)started counting
    with StopRequests(enabled=handle_signals) as stop:

        def stop_if_requested() -> None:
            if stop.signal_number is not None:
                raise TrainingInterrupted(f"interrupted: {run.on_disk()}", stop.signal_number)

        def after_step(reached: EpochPosition) -> None:
            nonlocal started
            periodic = checkpoint_every and reached.step % checkpoint_every == 0 and reached.step < steps_per_epoch
            if stop.requested or periodic:
                reached.seconds += time.perf_counter() - started
                started = time.perf_counter()
                run.save(reached.epoch - 1, reached)
                stop_if_requested()

        try:
            for epoch in range(first_epoch, config.epochs + 1):
                if position is None or position.epoch != epoch:
                    position = EpochPosition(epoch)
                    # SDLM: η for this epoch and a fresh curvature estimate
                    optimizer.start_epoch(
                        epoch, model=model, loss=loss, images=train_split.images, labels=train_split.labels,
                        rng=random.curvature,
                    )  # fmt: skip
                else:
                    optimizer.start_epoch(epoch)  # inside an epoch: η only; the curvature estimate was saved
                if config.lr_schedule != "constant":
                    for group, initial_lr in zip(optimizer.param_groups, initial_lrs):
                        group["lr"] = initial_lr * schedule.factor(epoch)
                progress = Progress(len(train_split), f"epoch {epoch}/{config.epochs}", enabled=show_progress)
                started = time.perf_counter()
                with progress:
                    train_loss, train_accuracy = train_epoch(
                        model, loss, optimizer, spec, train_split, config.batch_size, random.shuffle, progress,
                        augment, augment_rng=random.augment, hook=hook, position=position, after_step=after_step,
                        parallel=parallel,
                    )  # fmt: skip
                seconds = position.seconds + time.perf_counter() - started
                started = time.perf_counter()
                test_loss, test_accuracy = evaluate(model, loss, spec, test_split, config.eval_batch_size, parallel)
                extra = {}
                if validation_split is not None:
                    validation = evaluate(model, loss, spec, validation_split, config.eval_batch_size, parallel)
                    extra = {"val_loss": validation[0], "val_accuracy": validation[1]}
                metrics = EpochMetrics(
                    epoch, train_loss, train_accuracy, test_loss, test_accuracy, seconds,
                    eval_seconds=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"], extra=extra,
                )  # fmt: skip
                history.append(metrics)
                log(
                    f"epoch {epoch:>3}/{config.epochs}  train loss {train_loss:.4f} acc {train_accuracy:.2%}  "
                    f"test loss {test_loss:.4f} acc {test_accuracy:.2%} (error {1 - test_accuracy:.2%})  "
                    f"{seconds:.1f}s" + (f"  val loss {extra['val_loss']:.4f}" if extra else "")
                )
                if stopper is not None and stopper.update(extra["val_loss"], epoch, asdict(metrics)):
                    best_state = model.state_dict()
                    if out_path is not None:
                        meta = {"epoch": epoch, "config": asdict(config)}
                        save_checkpoint(out_path / BEST_CHECKPOINT_NAME, model, config.model, meta=meta)
                record = json.loads(metrics.to_json())
                run.save(epoch, record=record)
                if out_path is not None:
                    with open(out_path / METRICS_NAME, "a", encoding="utf-8") as handle:
                        handle.write(metrics.to_json() + "\n")
                stop_if_requested()
                if stopper is not None and stopper.should_stop:
                    log(f"early stopping: the validation loss has not improved for {stopper.patience} epochs")
                    break
        except TrainingDiverged as error:
            kept = run.on_disk("kept in") if run.saved_at else run.on_disk()
            raise TrainingDiverged(f"{error}; {kept}; lower the learning rate (--lr)") from None

    history.model = model
    history.final = history[-1] if history else None
    if stopper is not None and stopper.best_epoch:
        if parallel is not None and best_state is None:  # the best epoch predates a resume: in best.npz
            best_state = parallel.share(_best_weights(out_path) if parallel.writes else None)
        _restore_best(model, best_state, out_path)
        history.final = EpochMetrics(**stopper.best_record)
        log(f"restored the weights of epoch {stopper.best_epoch} (validation loss {stopper.best_value:.4f})")
    return history


def _share_start(
    run: _Run, parallel: Parallel, first_epoch: int, position: EpochPosition | None
) -> tuple[int, EpochPosition | None]:
    """The writing process's starting point -- weights, optimiser state, shared random streams, early
    stopping, epoch and position -- on every process of a data-parallel run. The processes built the
    same model from the seed; this matters when the writing process resumed a checkpoint, which the
    others need not be able to read (and which may come from a run with another number of processes).
    A process's own streams (dropout, augmentation) stay as derived from the seed and its rank."""
    state = None
    if parallel.writes:
        state = {
            "epoch": first_epoch, "position": None if position is None else asdict(position),
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "streams": {name: value for name, value in run.streams.state().items() if not PURPOSES[name][1]},
            "early_stopping": None if run.stopper is None else run.stopper.state(),
        }  # fmt: skip
    state = parallel.share(state)
    if parallel.writes:
        return first_epoch, position
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    for name, value in state["streams"].items():
        getattr(run.streams, name).bit_generator.state = value
    if run.stopper is not None and state["early_stopping"] is not None:
        run.stopper.load_state(state["early_stopping"])
    shared = None if state["position"] is None else EpochPosition.from_dict(state["position"])
    if shared is not None:  # the totals so far are the writing process's: counted once, there
        shared.total_loss, shared.correct, shared.seen = 0.0, 0, 0
    return int(state["epoch"]), shared


def _restore_best(model, best_state: dict | None, out_path: Path | None) -> None:
    """Put the best epoch's weights back: from memory, or from ``best.npz`` when it predates a resume."""
    model.load_state_dict(_best_weights(out_path) if best_state is None else best_state)


def _best_weights(out_path: Path | None) -> dict[str, np.ndarray]:
    if out_path is None:
        raise CheckpointError("the best epoch's weights are neither in memory nor in a run directory")
    return load_checkpoint(out_path / BEST_CHECKPOINT_NAME).model.state_dict()


def _load_resumable(out_path: Path, log: Callable[[str], None]):
    """The checkpoint to resume from: ``model.npz``, or ``model.prev.npz`` if the newer one is unreadable."""
    path = out_path / CHECKPOINT_NAME
    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        previous = previous_path(path)
        if not previous.is_file():
            raise
        log(f"note: {error}; resuming from the previous checkpoint {previous}")
        return load_checkpoint(previous)


def _restore(run: _Run) -> tuple[int, EpochPosition | None]:
    """Load weights, optimiser, random streams and early-stopping state from ``run.out_path``.

    Returns the epoch to run next and, for a checkpoint written inside that epoch, the position to
    continue from. With the saved settings an interrupted run continues exactly. A schedule planned
    over the total number of epochs (cosine) is planned anew when ``config.epochs`` differs from the
    saved run's, so extending a finished run raises the rate again; that is logged."""
    out_path, config, log = run.out_path, run.config, run.log
    if out_path is None:
        raise ConfigurationError("resuming needs the run directory (--out) that holds model.npz")
    if not (out_path / CHECKPOINT_NAME).is_file() and not previous_path(out_path / CHECKPOINT_NAME).is_file():
        raise ConfigurationError(f"{out_path}: {describe_run(out_path).split(' in ')[0]} to resume from")
    checkpoint = _load_resumable(out_path, log)
    saved = checkpoint.meta.get("config", {})
    for key in ("model", "dtype", "batch_size", "train_limit", "train_offset", "validation_size", "optimizer"):
        if key in saved and saved[key] != getattr(config, key):
            raise CheckpointError(
                f"{out_path / CHECKPOINT_NAME}: saved run used {key}={saved[key]!r}, not {getattr(config, key)!r}"
            )
    run.model.load_state_dict(checkpoint.model.state_dict())
    run.optimizer.load_state_dict(checkpoint.optimizer_state)
    if "rng_states" in checkpoint.meta:
        run.streams.load_state(checkpoint.meta["rng_states"])
    elif "rng_state" in checkpoint.meta:  # numcnn before per-purpose streams: one generator did everything
        run.streams.shuffle.bit_generator.state = checkpoint.meta["rng_state"]
        log("note: the checkpoint predates per-purpose random streams: shuffling continues, dropout and "
            "augmentation restart their streams")  # fmt: skip
    finished = int(checkpoint.meta["epoch"])
    position = checkpoint.meta.get("position")
    resumed = EpochPosition.from_dict(position) if position else None
    if run.stopper is not None and "early_stopping" in checkpoint.meta:
        run.stopper.load_state(checkpoint.meta["early_stopping"])
        if run.stopper.should_stop:
            raise ConfigurationError(f"{out_path} stopped early at epoch {finished}; there is nothing to resume")
    next_epoch = resumed.epoch if resumed is not None else finished + 1
    # Before any refusal below: a kill between a checkpoint and its metrics line is repaired even then.
    reconcile_metrics(out_path, finished, checkpoint.meta.get("metrics"))
    if next_epoch > config.epochs:
        raise ConfigurationError(f"{out_path} already holds {finished} epochs; ask for more with --epochs")
    saved_epochs = saved.get("epochs", config.epochs)
    if config.lr_schedule == "cosine" and saved_epochs != config.epochs:
        log(
            f"note: the run was planned for {saved_epochs} epochs, now {config.epochs}: the cosine schedule is "
            f"re-planned over {config.epochs} epochs "
            f"(epoch {next_epoch} gets lr {make_schedule(config)(next_epoch):.4g})"
        )
    run.saved_at = describe_position(checkpoint.meta)
    return next_epoch, resumed


def configure_compute(backend: str | None = None, threads: int | None = None) -> None:
    """Select the kernel backend (None: keep the current one) and its thread counts (numba's and
    OpenBLAS's, numcnn.kernels.threads; None: the libraries' own choice) before a run."""
    from numcnn import kernels
    from numcnn.kernels.threads import set_threads

    if backend is not None:
        kernels.set_backend(backend)
    if threads is not None:
        set_threads(threads, backend=kernels.backend_name())


def load_data(data_dir: str | Path | None = None, *, download: bool = True, dataset=None):
    """``dataset`` when given (any object with MNIST's four arrays), else MNIST (numcnn.data.load_mnist)."""
    if dataset is not None:
        return dataset
    from numcnn.data import load_mnist

    return load_mnist(data_dir, download=download)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of ``run_dir/metrics.jsonl``, oldest first."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise DataError(f"{path}: no metrics file (is {run_dir} a 'numcnn train --out' directory?)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {number} is not valid JSON") from None
    return records
