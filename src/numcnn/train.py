"""Training and evaluation loops for the registered models on MNIST.

One training step is the whole story of back-propagation, in five calls::

    model.zero_grad()                          # gradients are accumulated with +=, so clear them
    outputs = model.forward(images)            # every layer caches what its backward needs
    value = loss.forward(outputs, labels)      # E
    model.backward(loss.backward(), need_input_grad=False)   # δ from the output back to layer 1
    optimizer.step()                           # w ← w − η·v

A single ``numpy.random.Generator`` seeded from ``TrainConfig.seed`` draws the initial weights and
then every epoch's shuffle, so the same configuration reproduces the same run; its state is saved
in each checkpoint, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from numcnn import models
from numcnn.augment import Augmenter
from numcnn.checkpoint import load_checkpoint, save_checkpoint
from numcnn.early_stopping import EarlyStopping
from numcnn.errors import CheckpointError, ConfigurationError, DataError
from numcnn.layers import Sequential
from numcnn.losses import LOSS_TYPES, Loss
from numcnn.optim import SGD, Optimizer, layer_groups
from numcnn.progress import Progress
from numcnn.schedules import Schedule
from numcnn.sdlm import LECUN_1998_SCHEDULE, SDLM

__all__ = [
    "TrainConfig",
    "EpochMetrics",
    "History",
    "Split",
    "prepare_split",
    "make_loss",
    "make_optimizer",
    "make_schedule",
    "make_augmenter",
    "evaluate",
    "train_epoch",
    "fit",
    "configure_compute",
    "load_data",
    "read_metrics",
    "CHECKPOINT_NAME",
    "METRICS_NAME",
]

CHECKPOINT_NAME = "model.npz"
BEST_CHECKPOINT_NAME = "best.npz"  # early stopping: the weights of the best validation epoch
METRICS_NAME = "metrics.jsonl"
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
    def for_model(cls, model: str, **settings) -> "TrainConfig":
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
        if self.optimizer == "sdlm" and self.lr_schedule != "constant":
            raise ConfigurationError("SDLM follows LeCun's own η schedule; leave the learning-rate schedule constant")


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

    model = None
    final: EpochMetrics | None = None


def prepare_split(spec: models.ModelSpec, images: np.ndarray, labels: np.ndarray, dtype="float32") -> Split:
    """Normalise raw uint8 images ``(N, H, W)`` the way ``spec`` expects its inputs."""
    return Split(spec.prepare(images, dtype), labels.astype(np.int64))


def make_loss(spec: models.ModelSpec) -> Loss:
    try:
        return LOSS_TYPES[spec.loss]()
    except KeyError:
        raise ConfigurationError(f"model {spec.name!r} asks for unknown loss {spec.loss!r}") from None


def make_optimizer(config: TrainConfig, model: Sequential) -> Optimizer:
    """The optimiser a configuration asks for, bound to ``model``'s parameters.

    ``"sgd"``: :class:`~numcnn.optim.SGD` with momentum and weight decay. ``"sdlm"``:
    :class:`~numcnn.sdlm.SDLM` with damping ``μ``, its curvature re-estimated before every epoch, and
    the paper's decreasing η schedule (:data:`~numcnn.sdlm.LECUN_1998_SCHEDULE`) starting from ``lr``.
    ``layer_lr`` gives layers their own learning rate (param groups) with either optimiser.
    """
    parameters = layer_groups(model, config.layer_lr) if config.layer_lr else model.parameters()
    if config.optimizer == "sdlm":
        return SDLM(
            parameters, lr=config.lr, damping=config.damping,
            schedule=LECUN_1998_SCHEDULE, curvature_samples=config.curvature_samples,
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


def evaluate(
    model: Sequential, loss: Loss, spec: models.ModelSpec, split: Split, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``split``, in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(split), batch_size):
            images = split.images[start : start + batch_size]
            labels = split.labels[start : start + batch_size]
            outputs = model.forward(images)
            total_loss += loss.forward(outputs, labels) * len(labels)
            correct += int(np.count_nonzero(spec.predict_classes(outputs) == labels))
    finally:
        model.train(was_training)
    return total_loss / len(split), correct / len(split)


def train_epoch(
    model: Sequential,
    loss: Loss,
    optimizer: Optimizer,
    spec: models.ModelSpec,
    split: Split,
    batch_size: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
    augment: Augmenter | None = None,
) -> tuple[float, float]:
    """One pass over ``split`` in a random order; returns the mean training loss and accuracy.

    ``augment`` transforms each batch with ``rng`` (after the shuffle, so it is seeded too)."""
    model.train()
    order = rng.permutation(len(split))
    total_loss, correct, seen = 0.0, 0, 0
    for start in range(0, len(split), batch_size):
        batch = order[start : start + batch_size]
        images, labels = split.images[batch], split.labels[batch]
        if augment is not None:
            images = augment(images, rng)
        model.zero_grad()
        outputs = model.forward(images)
        value = loss.forward(outputs, labels) + model.penalty()  # Ẽ = E + Ω (e.g. seed 000 eq. 11)
        # The input images need no gradient: skipping it saves the first layer's col2im.
        model.backward(loss.backward(), need_input_grad=False)
        optimizer.step()

        if not math.isfinite(value):
            raise ConfigurationError(
                f"the training loss became {value} at example {seen}; lower the learning rate (--lr)"
            )
        total_loss += value * len(batch)
        correct += int(np.count_nonzero(spec.predict_classes(outputs) == labels))
        seen += len(batch)
        if progress is not None:
            progress.update(len(batch), loss=total_loss / seen, accuracy=correct / seen)
    return total_loss / seen, correct / seen


def _select(images: np.ndarray, labels: np.ndarray, offset: int, limit: int | None):
    if offset >= len(labels):
        raise ConfigurationError(f"train offset {offset} is beyond the {len(labels)} training examples")
    stop = len(labels) if limit is None else offset + limit
    if stop > len(labels):
        raise ConfigurationError(
            f"asked for {limit} training examples from index {offset}, but there are only {len(labels)}"
        )
    return images[offset:stop], labels[offset:stop]


def fit(
    config: TrainConfig,
    data,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool | None = None,
) -> History:
    """Train ``config.model`` on ``data`` (an object with ``train_images/labels``, ``test_images/labels``).

    With ``out_dir``, after every epoch a checkpoint ``model.npz`` is written and a line appended
    to ``metrics.jsonl``; ``resume=True`` continues from the checkpoint there up to
    ``config.epochs`` in total. Returns the metrics of the epochs run by this call as a
    :class:`History`, which also carries the trained model. With early stopping the model is
    returned with the weights of its best validation epoch (also saved as ``best.npz``).
    """
    config.validate()
    spec = models.get_spec(config.model)
    rng = np.random.default_rng(config.seed)
    model = models.build(config.model, rng=rng, dtype=np.dtype(config.dtype))
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
    first_epoch = 1
    if resume:
        first_epoch = _restore(out_path, config, model, optimizer, rng, stopper, log)
        log(f"resuming {config.model} from epoch {first_epoch - 1} in {out_path}")
    elif out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        (out_path / METRICS_NAME).write_text("")  # a fresh run starts a fresh log
    log(
        f"training {config.model} ({model.num_parameters():,} parameters) on {len(train_split):,} images, "
        f"testing on {len(test_split):,}; batch {config.batch_size}, lr {config.lr}, "
        + (f"SDLM damping {config.damping}" if config.optimizer == "sdlm" else f"momentum {config.momentum}")
    )

    history = History()
    best_state = None
    initial_lrs = [group["lr"] for group in optimizer.param_groups]  # what a schedule scales
    for epoch in range(first_epoch, config.epochs + 1):
        progress = Progress(len(train_split), f"epoch {epoch}/{config.epochs}", enabled=show_progress)
        started = time.perf_counter()
        optimizer.start_epoch(
            epoch, model=model, loss=loss, images=train_split.images, labels=train_split.labels, rng=rng
        )  # SDLM: η for this epoch and a fresh curvature estimate
        if config.lr_schedule != "constant":
            for group, initial_lr in zip(optimizer.param_groups, initial_lrs):
                group["lr"] = initial_lr * schedule.factor(epoch)
        with progress:
            train_loss, train_accuracy = train_epoch(
                model, loss, optimizer, spec, train_split, config.batch_size, rng, progress, augment
            )
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        test_loss, test_accuracy = evaluate(model, loss, spec, test_split, config.eval_batch_size)
        extra = {}
        if validation_split is not None:
            validation = evaluate(model, loss, spec, validation_split, config.eval_batch_size)
            extra = {"val_loss": validation[0], "val_accuracy": validation[1]}
        metrics = EpochMetrics(
            epoch, train_loss, train_accuracy, test_loss, test_accuracy, seconds,
            eval_seconds=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"], extra=extra,
        )  # fmt: skip
        history.append(metrics)
        log(
            f"epoch {epoch:>3}/{config.epochs}  train loss {train_loss:.4f} acc {train_accuracy:.2%}  "
            f"test loss {test_loss:.4f} acc {test_accuracy:.2%} (error {1 - test_accuracy:.2%})  {seconds:.1f}s"
            + (f"  val loss {extra['val_loss']:.4f}" if extra else "")
        )
        if stopper is not None and stopper.update(extra["val_loss"], epoch, asdict(metrics)):
            best_state = model.state_dict()
            if out_path is not None:
                meta = {"epoch": epoch, "config": asdict(config)}
                save_checkpoint(out_path / BEST_CHECKPOINT_NAME, model, config.model, meta=meta)
        if out_path is not None:
            _save(out_path, config, model, optimizer, rng, epoch, stopper)
            with open(out_path / METRICS_NAME, "a", encoding="utf-8") as handle:
                handle.write(metrics.to_json() + "\n")
        if stopper is not None and stopper.should_stop:
            log(f"early stopping: the validation loss has not improved for {stopper.patience} epochs")
            break

    history.model = model
    history.final = history[-1] if history else None
    if stopper is not None and stopper.best_epoch:
        _restore_best(model, best_state, out_path)
        history.final = EpochMetrics(**stopper.best_record)
        log(f"restored the weights of epoch {stopper.best_epoch} (validation loss {stopper.best_value:.4f})")
    return history


def _restore_best(model, best_state: dict | None, out_path: Path | None) -> None:
    """Put the best epoch's weights back: from memory, or from ``best.npz`` when it predates a resume."""
    if best_state is None:
        if out_path is None:
            raise CheckpointError("the best epoch's weights are neither in memory nor in a run directory")
        best_state = load_checkpoint(out_path / BEST_CHECKPOINT_NAME).model.state_dict()
    model.load_state_dict(best_state)


def _save(out_path: Path, config: TrainConfig, model, optimizer, rng, epoch: int, stopper=None) -> None:
    meta = {"epoch": epoch, "config": asdict(config), "rng_state": rng.bit_generator.state}
    if stopper is not None:
        meta["early_stopping"] = stopper.state()
    save_checkpoint(
        out_path / CHECKPOINT_NAME, model, config.model, optimizer_state=optimizer.state_dict(), meta=meta
    )


def _restore(
    out_path: Path | None, config: TrainConfig, model, optimizer, rng, stopper=None, log: Callable[[str], None] = print
) -> int:
    """Load weights, optimiser, generator and early-stopping state from ``out_path``; return the next epoch.

    With the saved settings an interrupted run continues exactly. A schedule planned over the total
    number of epochs (cosine) is planned anew when ``config.epochs`` differs from the saved run's,
    so extending a finished run raises the rate again; that is logged."""
    if out_path is None:
        raise ConfigurationError("resuming needs the run directory (--out) that holds model.npz")
    checkpoint = load_checkpoint(out_path / CHECKPOINT_NAME)
    saved = checkpoint.meta.get("config", {})
    for key in ("model", "dtype", "batch_size", "train_limit", "train_offset", "validation_size", "optimizer"):
        if key in saved and saved[key] != getattr(config, key):
            raise CheckpointError(
                f"{out_path / CHECKPOINT_NAME}: saved run used {key}={saved[key]!r}, not {getattr(config, key)!r}"
            )
    model.load_state_dict(checkpoint.model.state_dict())
    optimizer.load_state_dict(checkpoint.optimizer_state)
    rng.bit_generator.state = checkpoint.meta["rng_state"]
    next_epoch = int(checkpoint.meta["epoch"]) + 1
    if stopper is not None and "early_stopping" in checkpoint.meta:
        stopper.load_state(checkpoint.meta["early_stopping"])
        if stopper.should_stop:
            raise ConfigurationError(f"{out_path} stopped early at epoch {next_epoch - 1}; there is nothing to resume")
    if next_epoch > config.epochs:
        raise ConfigurationError(
            f"{out_path} already holds {next_epoch - 1} epochs; ask for more with --epochs"
        )
    saved_epochs = saved.get("epochs", config.epochs)
    if config.lr_schedule == "cosine" and saved_epochs != config.epochs:
        log(
            f"note: the run was planned for {saved_epochs} epochs, now {config.epochs}: the cosine schedule is "
            f"re-planned over {config.epochs} epochs (epoch {next_epoch} gets lr {make_schedule(config)(next_epoch):.4g})"
        )
    return next_epoch


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
