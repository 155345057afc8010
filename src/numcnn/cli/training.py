"""``numcnn train``, ``evaluate``, ``predict`` and ``plot``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from numcnn.cli.arguments import BACKEND_CHOICES, finite_float, positive_int, seed_int
from numcnn.cli.output import tolerant_print
from numcnn.errors import ConfigurationError
from numcnn.train import TrainConfig

__all__ = ["register"]

DEFAULT_RUNS = Path("runs")  # where runs without --out go
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention

def layer_learning_rate(text: str) -> tuple[str, float]:
    """``INDEX=LR`` (e.g. ``0=0.01``) for ``--layer-lr``."""
    layer, separator, rate = text.partition("=")
    try:
        if not separator or not layer.strip().isdigit():
            raise ValueError
        return layer.strip(), finite_float(rate)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LAYER_INDEX=LR such as 0=0.01, got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder with the MNIST files (or its parent); default: $NUMCNN_DATA, then the user cache",
    )  # fmt: skip
    parser.add_argument(
        "--no-download", action="store_true", help="never download MNIST, fail if it is not found"
    )


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=None,
        help="kernels: the readable reference, fast NumPy, or Numba (default: $NUMCNN_BACKEND, else auto)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=None,
        help="threads for the kernels (Numba and/or BLAS); default: the libraries' own choice",
    )  # fmt: skip


def add_convenience_arguments(parser: argparse.ArgumentParser) -> None:
    """Learning-rate schedule, early stopping and augmentation (TrainConfig's fields of the same names).

    Every default is None -- "not given" -- so that a model's recommended settings can fill them in."""
    from numcnn.schedules import SCHEDULES

    group = parser.add_argument_group("schedules, early stopping, augmentation")
    group.add_argument("--lr-schedule", choices=SCHEDULES, help="learning rate per epoch (default: constant)")
    group.add_argument("--lr-step", type=positive_int, help="step schedule: epochs between decays (default: 10)")
    group.add_argument("--lr-gamma", type=finite_float, help="step/exponential schedule: decay factor (default: 0.1)")
    group.add_argument("--lr-min", type=finite_float, help="cosine schedule: final learning rate (default: 0)")
    group.add_argument(
        "--early-stopping", type=int, metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower validation loss and keep the best weights (default: 0, off)",
    )  # fmt: skip
    group.add_argument(
        "--validation-size", type=int, metavar="K",
        help="hold out the last K selected training images as the validation set (default: 0)",
    )  # fmt: skip
    group.add_argument("--augment-shift", type=int, metavar="PIXELS", help="random shifts up to PIXELS (default: 0)")
    group.add_argument("--augment-rotate", type=finite_float, metavar="DEGREES", help="random rotations (default: 0)")
    group.add_argument(
        "--augment-flip", action="store_const", const=True, help="random left-right flips (off: wrong for digits)"
    )


CONVENIENCE_FIELDS = (
    "lr_schedule", "lr_step", "lr_gamma", "lr_min", "early_stopping", "validation_size",
    "augment_shift", "augment_rotate", "augment_flip",
)  # fmt: skip


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on MNIST",
        description="Train a registered model on MNIST. Settings not given on the command line come from the "
        "model's recommended training settings (see 'numcnn models'), else from the defaults shown.",
    )  # fmt: skip
    defaults = TrainConfig()
    train.add_argument("--model", default=defaults.model, help=f"registered model name (default: {defaults.model})")
    train.add_argument("--epochs", type=positive_int, help=f"default: {defaults.epochs}")
    train.add_argument("--batch-size", type=positive_int, help=f"default: {defaults.batch_size}")
    train.add_argument("--lr", type=finite_float, help=f"learning rate (default: {defaults.lr})")
    train.add_argument("--momentum", type=finite_float, help=f"default: {defaults.momentum}")
    train.add_argument("--weight-decay", type=finite_float, help=f"L2 penalty (default: {defaults.weight_decay})")
    train.add_argument(
        "--optimizer", choices=["sgd", "sdlm"],
        help="sgd (momentum) or sdlm: LeCun's stochastic diagonal Levenberg-Marquardt, step lr/(damping + h_kk) "
        "per parameter, curvature h re-estimated before each epoch; works with every registered model (every "
        "layer type but LearnedCombination2d has a curvature pass); η follows LeCun's 1998 steps with a constant "
        "--lr-schedule, any other schedule replaces them; lr/damping is the largest step, so use a smaller "
        f"--lr than with sgd (e.g. 0.0002 for base) (default: {defaults.optimizer})",
    )  # fmt: skip
    train.add_argument(
        "--damping", type=finite_float, help=f"SDLM's mu in lr/(mu + h_kk) (default: {defaults.damping})"
    )
    train.add_argument(
        "--curvature-samples", type=positive_int,
        help=f"SDLM: samples per curvature estimate (default: {defaults.curvature_samples})",
    )  # fmt: skip
    train.add_argument(
        "--layer-lr", type=layer_learning_rate, action="append", default=[], metavar="INDEX=LR",
        help="learning rate of one layer (index in the model, see 'numcnn summary'); repeatable",
    )  # fmt: skip
    train.add_argument("--seed", type=seed_int, help=f"seeds initialisation and shuffling (default: {defaults.seed})")
    train.add_argument("--train-limit", type=positive_int, default=None, help="use only the first K training images")
    train.add_argument("--train-offset", type=int, help="skip this many training images first (default: 0)")
    train.add_argument("--dtype", choices=["float32", "float64"], help=f"default: {defaults.dtype}")
    add_convenience_arguments(train)
    train.add_argument(
        "--out", type=Path, default=None,
        help="run directory for checkpoints and metrics; it must be new or empty unless --resume or --overwrite "
        "(default: a new runs/MODEL-YYYYMMDD-HHMMSS, and runs/latest points to it)",
    )  # fmt: skip
    train.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out (default: runs/latest) up to --epochs, from the exact step it stopped at",
    )  # fmt: skip
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (its checkpoints and metrics)"
    )
    train.add_argument(
        "--checkpoint-every", type=positive_int, default=None, metavar="STEPS",
        help="also write a checkpoint every STEPS training steps inside an epoch (default: at the end of each "
        "epoch and when interrupted)",
    )  # fmt: skip
    train.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    train.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training on MPI processes: mpiexec -n N numcnn train --distributed ... "
        "(--batch-size is the global batch; needs numcnn[mpi]; docs/distributed.md)",
    )  # fmt: skip
    train.add_argument(
        "--sync-bn", action="store_true",
        help="with --distributed: batch-norm statistics over the whole global batch, as one process computes them",
    )  # fmt: skip
    add_data_arguments(train)
    add_compute_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("evaluate", help="test accuracy of a checkpoint on the MNIST test set")
    evaluate.add_argument("checkpoint", type=Path, help="a model.npz written by 'numcnn train'")
    evaluate.add_argument("--batch-size", type=positive_int, default=1000)
    evaluate.add_argument("--confusion", action="store_true", help="also print the confusion matrix")
    add_data_arguments(evaluate)
    add_compute_arguments(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    predict = subparsers.add_parser("predict", help="classify digit images with a checkpoint")
    predict.add_argument("checkpoint", type=Path)
    predict.add_argument("images", type=Path, nargs="+", help="image files (any size; PNG, JPEG, ...)")
    predict.add_argument("--top", type=positive_int, default=1, help="show the K most likely digits")
    predict.set_defaults(handler=run_predict)

    plot = subparsers.add_parser("plot", help="plot the learning curves of a run directory")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--output", type=Path, default=None, help="image file (default: RUN_DIR/curves.png)")
    plot.set_defaults(handler=run_plot)


def configure_compute(args) -> None:
    """Select the kernel backend and thread counts before any data is loaded or model runs."""
    from numcnn import kernels
    from numcnn.train import configure_compute as configure

    # --backend, else $NUMCNN_BACKEND, resolved now: a bad name fails before any data is loaded.
    configure(args.backend or os.environ.get(kernels.ENVIRONMENT_VARIABLE) or None, args.threads)


def load_data(args):
    from numcnn.train import load_data as load

    return load(args.data_dir, download=not args.no_download)


def run_train(args) -> int:
    from numcnn.interrupt import TrainingInterrupted
    from numcnn.rundir import check_run_directory, describe_run
    from numcnn.train import fit

    config = TrainConfig.for_model(
        args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, seed=args.seed, train_limit=args.train_limit,
        train_offset=args.train_offset, dtype=args.dtype, optimizer=args.optimizer, damping=args.damping,
        curvature_samples=args.curvature_samples, layer_lr=dict(args.layer_lr) or None,
        **{name: getattr(args, name) for name in CONVENIENCE_FIELDS},
    )  # fmt: skip
    config.validate()  # before the data is loaded: a typo in --model should not wait for MNIST
    if args.distributed or args.sync_bn:
        from numcnn.cli.distributed import run_distributed_train

        return run_distributed_train(args, config)
    if args.resume and args.overwrite:
        raise ConfigurationError("--resume continues the run in --out, --overwrite replaces it: choose one")
    out = run_directory(args, config.model)
    configure_compute(args)  # so is a bad backend or thread count
    check_run_directory(out, resume=args.resume, overwrite=args.overwrite)  # and a run directory in use
    try:
        data = load_data(args)
        # Every line goes through tolerant_print: 'numcnn train | head' must not kill the run it reports on.
        history = fit(
            config, data, out, resume=args.resume, overwrite=args.overwrite,
            checkpoint_every=args.checkpoint_every or 0, handle_signals=True, show_progress=not args.no_progress,
            log=tolerant_print,
        )  # fmt: skip
    except TrainingInterrupted as interruption:
        print(f"numcnn: {interruption}; continue with --resume --out {out}", file=sys.stderr)
        return interruption.exit_code
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        print(f"numcnn: interrupted: {describe_run(out)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if args.out is None and out.is_dir():
            _point_latest(out)
    report_final(history, config, out)
    return 0


def report_final(history, config, out: Path) -> None:
    """The last lines of ``numcnn train``: the final error and checkpoint, then the learning curves."""
    final = history.final
    if final is not None:  # None when no epoch was run
        kept = "best.npz (best validation epoch)" if config.early_stopping else "model.npz"
        tolerant_print(f"final test error {1 - final.test_accuracy:.2%} (epoch {final.epoch}); checkpoint {out / kept}")
    _try_plot(out)


def run_directory(args, model: str) -> Path:
    """``--out``, or by default a new directory per run, ``runs/MODEL-YYYYMMDD-HHMMSS`` (UTC), with the
    symbolic link ``runs/latest`` pointing to it; ``--resume`` without ``--out`` continues ``runs/latest``."""
    if args.out is not None:
        return args.out
    latest = DEFAULT_RUNS / "latest"
    if args.resume:
        if not latest.exists():
            raise ConfigurationError(f"--resume needs --out RUN_DIR (there is no {latest} to continue)")
        return latest.resolve() if latest.is_symlink() else latest
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = DEFAULT_RUNS / f"{model}-{stamp}"
    suffix = 1
    while out.exists():
        suffix += 1
        out = DEFAULT_RUNS / f"{model}-{stamp}-{suffix}"
    tolerant_print(f"run directory {out}")
    return out  # created by the trainer once the run starts: a run that cannot start leaves nothing behind


def _point_latest(out: Path) -> None:
    """Let ``runs/latest`` point to ``out`` (replaced atomically); an old real ``runs/latest`` directory stays."""
    latest = out.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return
    staging = out.parent / f".latest-{os.getpid()}"
    try:
        staging.unlink(missing_ok=True)
        staging.symlink_to(out.name, target_is_directory=True)
        os.replace(staging, latest)
    except OSError:
        staging.unlink(missing_ok=True)  # no symbolic links here: the run directory was printed anyway


def _try_plot(run_dir: Path) -> None:
    """Learning curves are a bonus: without matplotlib, training still succeeds."""
    try:
        from numcnn.plots import plot_learning_curves

        tolerant_print(f"learning curves {plot_learning_curves(run_dir)}")
    except ImportError:
        tolerant_print("(install matplotlib, e.g. pip install 'numcnn[plot]', for learning-curve plots)")


def run_evaluate(args) -> int:
    from numcnn.checkpoint import load_checkpoint
    from numcnn.data import load_mnist_test
    from numcnn.train import evaluate, make_loss, prepare_split

    checkpoint = load_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    configure_compute(args)
    # Only the test files: evaluating needs neither the training set nor its download.
    test_images, test_labels = load_mnist_test(args.data_dir, download=not args.no_download)
    split = prepare_split(spec, test_images, test_labels, checkpoint.meta.get("dtype", "float32"))
    test_loss, accuracy = evaluate(checkpoint.model, make_loss(spec), spec, split, args.batch_size)
    position = checkpoint.meta.get("position")  # a checkpoint written inside an epoch
    epoch = f"{position['epoch']}, step {position['step']}" if position else checkpoint.meta.get("epoch", "?")
    print(
        f"{spec.name} (epoch {epoch}) on {len(split):,} test images: loss {test_loss:.4f}  "
        f"accuracy {accuracy:.2%}  error {1 - accuracy:.2%}"
    )
    if args.confusion:
        print(_confusion_table(checkpoint.model, spec, split, args.batch_size))
    return 0


def _confusion_table(model, spec, split, batch_size: int) -> str:
    model.eval()
    predictions = np.concatenate(
        [
            spec.predict_classes(model.forward(split.images[s : s + batch_size]))
            for s in range(0, len(split), batch_size)
        ]
    )
    k = spec.num_classes
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (split.labels, predictions), 1)
    lines = ["rows: true digit, columns: predicted digit", "     " + "".join(f"{c:>6}" for c in range(k))]
    lines += [f"{r:>5}" + "".join(f"{v:>6}" for v in matrix[r]) for r in range(k)]
    return "\n".join(lines)


def run_predict(args) -> int:
    from numcnn.checkpoint import load_checkpoint
    from numcnn.data import load_digit_image
    from numcnn.inspect import predict

    checkpoint = load_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    digits = np.stack([load_digit_image(path) for path in args.images])  # (N, 28, 28) in [0, 1]
    probabilities = predict(checkpoint.model, digits, spec=spec)
    top = min(args.top, spec.num_classes)
    for path, row in zip(args.images, probabilities):
        ranked = np.argsort(-row)[:top]
        guesses = ", ".join(f"{c} ({row[c]:.1%})" for c in ranked)
        print(f"{path}: {guesses}")
    return 0


def run_plot(args) -> int:
    try:
        from numcnn.plots import plot_learning_curves
    except ImportError:
        raise ConfigurationError("plotting needs matplotlib: pip install 'numcnn[plot]'") from None
    print(plot_learning_curves(args.run_dir, args.output))
    return 0
