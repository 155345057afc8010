"""``numcnn export CHECKPOINT --format onnx|torch|safetensors [-o FILE]``: use a model elsewhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from numcnn.errors import ConfigurationError

__all__ = ["register", "FORMATS"]

# format -> (file suffix, the package it needs)
FORMATS = {"onnx": (".onnx", "onnx"), "torch": (".pt", "torch"), "safetensors": (".safetensors", "safetensors")}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a saved model as ONNX, a PyTorch state_dict or safetensors",
        description=(
            "Read a model saved by numcnn (RUN/model.npz, or a .safetensors file) and write it for other "
            "tools: an ONNX graph (inference, dynamic batch size), a PyTorch state_dict (torch.load(..., "
            "weights_only=True); the module is numcnn.export.to_torch(numcnn.load(...))), or safetensors "
            "with the model description in its metadata."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a model saved by numcnn (e.g. runs/lenet5/model.npz)")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="the file format to write")
    parser.add_argument(
        "-o", "--output", type=Path, default=None,
        help="output file (default: the checkpoint's name with the format's suffix)",
    )  # fmt: skip
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17; 13 or newer)")
    parser.set_defaults(handler=run_export)


def run_export(args) -> int:
    import numcnn

    suffix, package = FORMATS[args.format]
    if importlib.util.find_spec(package) is None:
        extra = "torch" if package == "torch" else "interop"
        raise ConfigurationError(f"--format {args.format} needs the {package} package: pip install 'numcnn[{extra}]'")
    output = args.output if args.output is not None else args.checkpoint.with_suffix(suffix)
    if args.format == "safetensors" and output.suffix != ".safetensors":
        raise ConfigurationError(f"{output}: a safetensors file name ends in .safetensors")
    if output.resolve() == args.checkpoint.resolve():
        raise ConfigurationError(f"{output}: the output would overwrite the checkpoint; choose another -o")
    model = numcnn.load(args.checkpoint).eval()
    if args.format == "onnx":
        numcnn.export.to_onnx(model, output, opset=args.opset)
    elif args.format == "safetensors":
        numcnn.save(model, output)
    else:
        _save_torch_state(model, output)
    print(f"wrote {output} ({args.format}, model {model.spec.name})")
    return 0


def _save_torch_state(model, output: Path) -> None:
    """The twin's state_dict (tensors only, so ``torch.load(..., weights_only=True)`` reads it), atomically."""
    import torch

    from numcnn.export import to_torch
    from numcnn.serialization import write_atomically

    state = to_torch(model).state_dict()
    write_atomically(output, lambda temporary: torch.save(state, temporary))
