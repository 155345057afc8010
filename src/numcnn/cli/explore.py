"""``numcnn explore [CHECKPOINT]``: serve the explorer page (:mod:`numcnn.explorer`) over HTTP."""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from numcnn.errors import ConfigurationError

__all__ = ["register", "port_number"]

INSTALL_HINT = 'pip install "numcnn[explore]"'


def port_number(text: str) -> int:
    """A TCP port 0..65535 (0: any free port, printed when listening)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def register(subparsers) -> None:
    explore = subparsers.add_parser(
        "explore",
        help="serve a page to draw a digit and watch the forward and backward pass",
        description=(
            "Start a local web server with the explorer page: draw a digit, see every layer's feature "
            "maps, the sensitivity maps δ for a target class, the kernel gradients, the saliency "
            "∂E/∂pixels and one SGD step. Needs the 'explore' extra (" + INSTALL_HINT + ")."
        ),
    )
    explore.add_argument(
        "checkpoint", nargs="?", default=None,
        help="RUN/model.npz to serve (default: the bundled LeNet-5 checkpoint)",
    )  # fmt: skip
    explore.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    explore.add_argument("--port", type=port_number, default=8000, help="default: 8000; 0 picks a free port")
    explore.set_defaults(handler=run_explore)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so that a busy port is a one-line error, not a server log."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = "the port is in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason} (choose another with --port)") from None
    return sock


def run_explore(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigurationError(f"the explorer needs FastAPI and uvicorn: {INSTALL_HINT}") from None
    from numcnn.explorer.app import create_app

    app = create_app(args.checkpoint)  # a bad checkpoint fails here, before anything listens
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    served = app.state.explorer
    source = "the bundled checkpoint" if served.bundled else str(served.path)
    print(f"numcnn explore: {served.spec.name} from {source} at http://{shown}:{port}/ (Ctrl+C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return 0
