"""``numcnn models`` (the registry) and ``numcnn gradcheck`` (verify a model's backward pass)."""

from __future__ import annotations

from numcnn import models
from numcnn.cli.arguments import positive_float, positive_int, seed_int
from numcnn.gradcheck import DEFAULT_RTOL

__all__ = ["register"]

# A model whose forward pass of one image costs more than this many FLOPs is checked on one image
# and one entry per tensor by default: vgg16 (31 GFLOPs) needs ~20 s per float64 forward pass here.
LARGE_MODEL_FLOPS = 1e9


def register(subparsers) -> None:
    listing = subparsers.add_parser("models", help="list the registered models")
    listing.set_defaults(handler=run_models)

    check = subparsers.add_parser("gradcheck", help="check a model's gradients against finite differences (float64)")
    check.add_argument("model", help="registered model name")
    check.add_argument(
        "--batch-size", type=positive_int, default=None, help="random input images (default 2; 1 for a large model)"
    )
    check.add_argument(
        "--max-checks", type=positive_int, default=None,
        help="entries sampled per tensor (default 20; 1 for a large model such as vgg16)",
    )  # fmt: skip
    check.add_argument("--seed", type=seed_int, default=0)
    check.add_argument("--eps", type=positive_float, default=1e-6, help="finite-difference step (default 1e-6)")
    check.add_argument(
        "--rtol", type=positive_float, default=DEFAULT_RTOL,
        help=f"relative tolerance per entry, besides an absolute one for round-off (default {DEFAULT_RTOL:g})",
    )  # fmt: skip
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


def run_gradcheck(args) -> int:
    from numcnn.gradcheck import check_model
    from numcnn.summary import summarize

    spec = models.get_spec(args.model)
    large = summarize(spec).flops > LARGE_MODEL_FLOPS
    batch_size = args.batch_size or (1 if large else 2)
    max_checks = args.max_checks or (1 if large else 20)
    if large and (args.batch_size is None or args.max_checks is None):
        entries = "entry" if max_checks == 1 else "entries"
        images = "image" if batch_size == 1 else "images"
        print(
            f"{args.model} is large: checking {max_checks} {entries} per tensor on {batch_size} {images} "
            "(--max-checks, --batch-size change this)"
        )
    report = check_model(
        args.model, batch_size=batch_size, max_checks=max_checks, seed=args.seed, eps=args.eps, rtol=args.rtol
    )
    print(report)
    return 0 if report.passed else 1
