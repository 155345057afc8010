"""``numcnn show``: figures of one forward and backward pass of a checkpoint on a picture of a digit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numcnn.errors import ConfigurationError, DataError

__all__ = ["register"]


def register(subparsers) -> None:
    show = subparsers.add_parser(
        "show", help="draw feature maps, δ maps, kernel gradients and saliency for one digit image",
        description="Trace one picture of a digit through a checkpoint -- forward and backward, as training "
        "computes it -- and write PNG figures: the input and its preprocessing, every layer's feature maps and "
        "sensitivity maps δ = ∂E/∂output, the first layer's kernels and their gradients, the saliency ∂E/∂pixels "
        "and the class probabilities.",
    )  # fmt: skip
    show.add_argument("checkpoint", type=Path, help="a model.npz written by 'numcnn train'")
    show.add_argument("image", type=Path, help="a picture of one digit (any size; PNG, JPEG, ...)")
    show.add_argument(
        "--target", type=int, default=None, metavar="K",
        help="class whose error E is back-propagated (default: the predicted class)",
    )  # fmt: skip
    show.add_argument(
        "--out", type=Path, default=None,
        help="folder for the PNG files (default: show-<image name> next to the checkpoint)",
    )  # fmt: skip
    show.set_defaults(handler=run_show)


def _picture(path: Path) -> np.ndarray | None:
    """The picture's grey levels as read, for display only (the classifier input comes from
    :func:`numcnn.data.load_digit_image`)."""
    try:
        from PIL import Image

        with Image.open(path) as opened:
            opened.thumbnail((512, 512))
            return np.asarray(opened.convert("L"), dtype=np.float64) / 255.0
    except Exception:  # the figure simply leaves the panel out; the real reading already succeeded
        return None


def run_show(args) -> int:
    from numcnn import figures
    from numcnn.checkpoint import load_checkpoint
    from numcnn.data import load_digit_image
    from numcnn.inspect import trace

    checkpoint = load_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    if args.target is not None and not 0 <= args.target < spec.num_classes:
        raise ConfigurationError(f"--target {args.target} is not a class of {spec.name} (0-{spec.num_classes - 1})")
    out = args.out if args.out is not None else args.checkpoint.parent / f"show-{args.image.stem}"
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    pixels = load_digit_image(args.image)
    result = trace(checkpoint.model, pixels, args.target, spec=spec)
    try:
        written = figures.write_figures(result, out, pixels=pixels, picture=_picture(args.image))
    except OSError as error:
        raise DataError(f"{out}: cannot write the figures ({error.strerror or error})") from None
    top = np.argsort(-result.probabilities)[:3]
    guesses = ", ".join(f"{k} ({result.probabilities[k]:.1%})" for k in top)
    print(f"{args.image}: {guesses}; E = {result.loss:.4g} for target {result.target}")
    print(f"wrote {len(written)} figures to {out}/ (summary.png first)")
    return 0
