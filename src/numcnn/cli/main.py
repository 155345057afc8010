"""Entry point of the ``numcnn`` command: builds the parser from the command modules and turns
every error into a one-line message with a non-zero exit code.

Each command module exposes ``register(subparsers)``, which adds its sub-command(s) and sets
``handler`` -- a function of the parsed arguments returning the exit code.

Errors, at this boundary: numcnn's own (:class:`~numcnn.errors.NumcnnError`) are printed as they are;
an ``OSError`` names the file and the system's reason; anything else is an unexpected error, still
one line, with a hint that ``NUMCNN_DEBUG=1`` shows its traceback. A reader that closes the pipe
(``numcnn models | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from numcnn import __version__
from numcnn.cli.output import silence_stdout
from numcnn.errors import NumcnnError, one_line

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
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool stopped by a closed pipe
DEBUG_VARIABLE = "NUMCNN_DEBUG"


class ArgumentParser(argparse.ArgumentParser):
    """No abbreviated options (``--epoch`` must not silently mean ``--epochs``), for every sub-command."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="numcnn",
        description="Train, check and inspect convolutional networks written in plain NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"numcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        import_module(module_name).register(subparsers)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like ``parser.parse_args``, but an unknown option is reported with its sub-command's usage
    (``numcnn train --epoch 3`` shows how to call ``numcnn train``, not the list of commands)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subparser = _subparsers(parser).get(args.command, parser)
        subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public accessor for its sub-command parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def describe_unexpected(error: BaseException) -> str:
    """One line for an error numcnn did not anticipate: the OS's reason with the file it concerns, or
    the exception's type and text plus how to see the traceback."""
    if isinstance(error, OSError) and error.strerror:
        where = next((str(name) for name in (error.filename, error.filename2) if name is not None), "")
        return f"{where}: {error.strerror}" if where else error.strerror
    return f"{type(error).__name__}: {one_line(error)} (set {DEBUG_VARIABLE}=1 to see the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe must not fail later, at interpreter exit
        return code
    except NumcnnError as error:
        print(f"numcnn: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("numcnn: interrupted", file=sys.stderr)  # 'numcnn train' says itself what it saved
        return EXIT_INTERRUPTED
    except Exception as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"numcnn: error: {describe_unexpected(error)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
