"""Entry point of the ``numcnn`` command: builds the parser from the command modules and turns
numcnn's own errors into one-line messages with a non-zero exit code.

Each command module exposes ``register(subparsers)``, which adds its sub-command(s) and sets
``handler`` -- a function of the parsed arguments returning the exit code.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from numcnn import __version__
from numcnn.errors import NumcnnError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

COMMAND_MODULES = [
    "numcnn.cli.training",
    "numcnn.cli.inspection",
    "numcnn.cli.show",
    "numcnn.cli.summary",
    "numcnn.cli.experiment",
    "numcnn.cli.bench",
    "numcnn.cli.export",
    "numcnn.cli.explore",
]

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numcnn",
        description="Train, check and inspect convolutional networks written in plain NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"numcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except NumcnnError as error:
        print(f"numcnn: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("numcnn: interrupted", file=sys.stderr)  # 'numcnn train' says itself what it saved
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
