"""``numcnn train``, ``evaluate``, ``predict`` and ``plot``."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from numcnn.errors import ConfigurationError

__all__ = ["register"]

DEFAULTS = {"model": "lenet5", "epochs": 10, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "seed": 0}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def layer_learning_rate(text: str) -> tuple[str, float]:
    """``INDEX=LR`` (e.g. ``0=0.01``) for ``--layer-lr``."""
    layer, separator, rate = text.partition("=")
    try:
        if not separator or not layer.strip().isdigit():
            raise ValueError
        return layer.strip(), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER_INDEX=LR such as 0=0.01, got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder with the MNIST files (or its parent); default: $NUMCNN_DATA, then the user cache",
    )  # fmt: skip
    parser.add_argument(
        "--no-download", action="store_true", help="never download MNIST, fail if it is not found"
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, help="BLAS threads (default: library's)")


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on MNIST", description="Train a registered model on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    train.add_argument("--model", default=DEFAULTS["model"], help="registered model name (see 'numcnn models')")
    train.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"])
    train.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    train.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="learning rate")
    train.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument(
        "--optimizer", choices=["sgd", "sdlm"], default="sgd",
        help="sgd (momentum) or sdlm: LeCun's stochastic diagonal Levenberg-Marquardt, step lr/(damping + h_kk) "
        "per parameter, curvature h re-estimated before each epoch, lr decreased on the paper's schedule",
    )  # fmt: skip
    train.add_argument("--damping", type=float, default=0.02, help="SDLM's mu in lr/(mu + h_kk)")
    train.add_argument(
        "--curvature-samples", type=positive_int, default=500, help="SDLM: samples per curvature estimate"
    )
    train.add_argument(
        "--layer-lr", type=layer_learning_rate, action="append", default=[], metavar="INDEX=LR",
        help="learning rate of one layer (index in the model, see 'numcnn models'); repeatable",
    )  # fmt: skip
    train.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seeds initialisation and shuffling")
    train.add_argument("--train-limit", type=positive_int, default=None, help="use only the first K training images")
    train.add_argument("--train-offset", type=int, default=0, help="skip this many training images first")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory (checkpoint, metrics)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out up to --epochs")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_data_arguments(train)
    add_threads_argument(train)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("evaluate", help="test accuracy of a checkpoint on the MNIST test set")
    evaluate.add_argument("checkpoint", type=Path, help="a model.npz written by 'numcnn train'")
    evaluate.add_argument("--batch-size", type=positive_int, default=1000)
    evaluate.add_argument("--confusion", action="store_true", help="also print the confusion matrix")
    add_data_arguments(evaluate)
    add_threads_argument(evaluate)
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


def thread_limit(threads: int | None):
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def load_data(args):
    from numcnn.data import load_mnist

    return load_mnist(args.data_dir, download=not args.no_download)


def run_train(args) -> int:
    from numcnn.train import TrainConfig, fit

    config = TrainConfig(
        model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
        train_limit=args.train_limit, train_offset=args.train_offset, dtype=args.dtype,
        optimizer=args.optimizer, damping=args.damping, curvature_samples=args.curvature_samples,
        layer_lr=dict(args.layer_lr),
    )  # fmt: skip
    config.validate()  # before the data is loaded: a typo in --model should not wait for MNIST
    data = load_data(args)
    with thread_limit(args.threads):
        history = fit(config, data, args.out, resume=args.resume, show_progress=not args.no_progress)
    if history:
        last = history[-1]
        print(f"final test error {1 - last.test_accuracy:.2%}; checkpoint {args.out / 'model.npz'}")
    _try_plot(args.out)
    return 0


def _try_plot(run_dir: Path) -> None:
    """Learning curves are a bonus: without matplotlib, training still succeeds."""
    try:
        from numcnn.plots import plot_learning_curves

        print(f"learning curves {plot_learning_curves(run_dir)}")
    except ImportError:
        print("(install matplotlib, e.g. pip install 'numcnn[plot]', for learning-curve plots)")


def run_evaluate(args) -> int:
    from numcnn.checkpoint import load_checkpoint
    from numcnn.train import evaluate, make_loss, prepare_split

    checkpoint = load_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    data = load_data(args)
    split = prepare_split(spec, data.test_images, data.test_labels, checkpoint.meta.get("dtype", "float32"))
    with thread_limit(args.threads):
        test_loss, accuracy = evaluate(checkpoint.model, make_loss(spec), spec, split, args.batch_size)
        epoch = checkpoint.meta.get("epoch", "?")
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
        [spec.predict_classes(model.forward(split.images[s : s + batch_size])) for s in range(0, len(split), batch_size)]
    )
    k = spec.num_classes
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (split.labels, predictions), 1)
    lines = ["rows: true digit, columns: predicted digit", "     " + "".join(f"{c:>6}" for c in range(k))]
    lines += [f"{r:>5}" + "".join(f"{v:>6}" for v in matrix[r]) for r in range(k)]
    return "\n".join(lines)


def run_predict(args) -> int:
    from numcnn.checkpoint import load_checkpoint
    from numcnn.data import load_digit_image, prepare_images
    from numcnn.functional import softmax_forward

    checkpoint = load_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    model = checkpoint.model.eval()
    digits = np.stack([load_digit_image(path) for path in args.images])  # (N, 28, 28) in [0, 1]
    images = prepare_images(
        digits, padding=spec.input_padding,
        dtype=np.dtype(checkpoint.meta.get("dtype", "float32")), mean=spec.input_mean, std=spec.input_std,
    )  # fmt: skip
    probabilities = softmax_forward(spec.class_scores(model.forward(images)), axis=1)
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
