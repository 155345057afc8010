"""``numcnn summary MODEL``: the per-layer table of :mod:`numcnn.summary`."""

from __future__ import annotations

import argparse

__all__ = ["register", "parse_shape"]


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` (or ``3x224x224``) → ``(3, 224, 224)``."""
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W with positive integers, got {text!r}") from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W with positive integers, got {text!r}")
    return shape


def register(subparsers) -> None:
    summary = subparsers.add_parser(
        "summary",
        help="per-layer output shapes, parameters, FLOPs and receptive fields of a model",
        description=(
            "Analyse a registered model without building its weights. FLOPs: one forward pass of one "
            "input, a multiply-add counting as 2. RF: the extent in each layer's input needed for one "
            "element of the reference layer's output (seed 004 table 15.2)."
        ),
    )
    summary.add_argument("model", help="registered model name (see 'numcnn models')")
    summary.add_argument(
        "--input", type=parse_shape, default=None, metavar="C,H,W", help="input shape (default: the model's)"
    )
    summary.add_argument(
        "--rf-from", default=None, metavar="LAYER",
        help="receptive fields relative to this layer's output (row number or graph node name; "
        "default: the last pooling layer)",
    )  # fmt: skip
    summary.set_defaults(handler=run_summary)


def run_summary(args) -> int:
    from numcnn.summary import summarize

    print(summarize(args.model, args.input, args.rf_from).table())
    return 0
