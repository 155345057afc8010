"""``numcnn models`` (the registry) and ``numcnn gradcheck`` (verify a model's backward pass)."""

from __future__ import annotations

import numpy as np

from numcnn import models
from numcnn.cli.arguments import positive_int, seed_int

__all__ = ["register"]


def register(subparsers) -> None:
    listing = subparsers.add_parser("models", help="list the registered models")
    listing.set_defaults(handler=run_models)

    check = subparsers.add_parser(
        "gradcheck", help="check a model's gradients against finite differences (float64)"
    )
    check.add_argument("model", help="registered model name")
    check.add_argument("--batch-size", type=positive_int, default=2)
    check.add_argument("--max-checks", type=positive_int, default=20, help="entries sampled per tensor")
    check.add_argument("--seed", type=seed_int, default=0)
    check.set_defaults(handler=run_gradcheck)


def run_models(args) -> int:
    from numcnn.summary import summarize

    for name in models.available_models():
        spec = models.get_spec(name)
        count = summarize(spec).parameters  # from the specification: vgg16's 138M weights are never drawn
        shape = "×".join(str(s) for s in spec.input_shape)
        print(f"{name:<16} {count:>12,} parameters  input {shape:<10} {spec.description}")
        if spec.training:
            settings = ", ".join(f"{key}={value}" for key, value in spec.training.items())
            print(f"{'':<16} trained by default with {settings}")
    return 0


def _freeze_dropout(model, inputs: np.ndarray) -> None:
    """Draw every dropout mask once and keep it: finite differences need the same function each call."""
    from numcnn.layers import Dropout
    from numcnn.layers.flat import walk_layers

    dropouts = [layer for layer in walk_layers(model) if isinstance(layer, Dropout)]
    if dropouts:
        model.forward(inputs)
        for layer in dropouts:
            layer.freeze_mask()


def run_gradcheck(args) -> int:
    from numcnn.gradcheck import gradcheck
    from numcnn.train import make_loss

    spec = models.get_spec(args.model)
    rng = np.random.default_rng(args.seed)
    model = models.build(args.model, rng=rng, dtype=np.float64)
    inputs = rng.standard_normal((args.batch_size, *spec.input_shape))
    _freeze_dropout(model, inputs)
    targets = rng.integers(0, spec.num_classes, size=args.batch_size)
    if spec.loss not in ("cross_entropy", "rbf_mse", "rbf_map"):
        targets = None  # losses that need target vectors, not labels: check with a random projection
    report = gradcheck(
        model, inputs, loss=make_loss(spec) if targets is not None else None, targets=targets,
        max_checks=args.max_checks, rng=rng,
    )  # fmt: skip
    print(report)
    return 0 if report.passed else 1
