"""``numcnn bench``: time training and inference of a registry model, next to PyTorch when installed."""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import asdict
from pathlib import Path

from numcnn.cli.arguments import BACKEND_CHOICES, finite_float, positive_int

__all__ = ["register"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time training and inference (numcnn vs PyTorch)",
        description=(
            "Time training steps (scaled to a 60,000-image epoch) and a full inference pass over 10,000 "
            "images on synthetic MNIST-shaped data, after a warm-up, repeated; when PyTorch is installed "
            "the same model is built in PyTorch and timed in the same run, interleaved, and the ratio "
            "numcnn/PyTorch is printed as median (min-max)."
        ),
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--model", default="lenet5", help="registered model name (see 'numcnn models'; default: lenet5)"
    )
    which.add_argument(
        "--models", type=_model_list, default=None, metavar="A,B,...",
        help="several registered models, comma-separated: each is benchmarked, then one table compares them",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=positive_int, action="append", dest="batch_sizes", default=None,
        help="batch size; repeat the option for several (default: 64 and 256)",
    )  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--steps", type=positive_int, default=None, help="timed training steps per run (default: 6,400 images' worth)"
    )
    group.add_argument(
        "--epochs-equivalent", type=finite_float, default=None,
        help="instead of --steps: each run is a real pass over this many epochs (1 = 60,000 images)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per measurement (>= 3); the median is reported (default: 5)"
    )
    parser.add_argument(
        "--infer-images", type=positive_int, default=10_000,
        help="images per inference run, the time scaled to 10,000 (default: 10,000, the MNIST test set)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="threads for numba/BLAS and PyTorch (default: all CPUs)"
    )
    parser.add_argument(
        "--blas-threads",
        type=positive_int,
        default=None,
        help="OpenBLAS threads (default: 1 with numba, else --threads)",
    )
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES, help="kernels (default: auto)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    parser.add_argument("--profile", action="store_true", help="also print a per-layer forward/backward time breakdown")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    parser.add_argument(
        "--no-onnxruntime", action="store_true", help="do not time inference in ONNX Runtime (timed when installed)"
    )
    parser.add_argument("--no-compile-time", action="store_true", help="skip measuring numba's first-run compile time")
    parser.add_argument("--json", type=Path, default=None, help="also write all timings to this JSON file")
    parser.set_defaults(handler=run_bench)


def _model_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated model names, e.g. base,sk,lenet5")
    return names


def _log(model: str, line: str) -> None:
    print(f"{model}: {line}", flush=True)


def run_bench(args) -> int:
    from numcnn.benchmark import BenchConfig, format_report, format_table, run_benchmark
    from numcnn.errors import ConfigurationError
    from numcnn.models import get_spec

    # Checked before minutes of timing, not after: where the results would be written.
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):
        raise ConfigurationError(f"--json {args.json}: the folder does not exist or the path is a folder")
    names = args.models or [args.model]
    for name in names:  # every name checked before the first (long) measurement
        get_spec(name)
    results = []
    for name in names:
        config = BenchConfig(
            model=name, batch_sizes=tuple(args.batch_sizes or (64, 256)), steps=args.steps,
            epochs_equivalent=args.epochs_equivalent, repeats=args.repeats, infer_images=args.infer_images,
            threads=args.threads,
            blas_threads=args.blas_threads, backend=args.backend, dtype=args.dtype, torch=not args.no_torch,
            onnxruntime=not args.no_onnxruntime, profile=args.profile, compile_time=not args.no_compile_time,
        )  # fmt: skip
        result = run_benchmark(config, log=functools.partial(_log, name))
        print()
        print(format_report(result))
        print()
        results.append(result)
    if len(results) > 1:
        print(format_table(results))
    if args.json is not None:
        payload = asdict(results[0]) if len(results) == 1 else [asdict(result) for result in results]
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        print(f"timings written to {args.json}")
    return 0
