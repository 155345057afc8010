"""The explorer's web application (FastAPI): the page, its static files and the JSON API.

``create_app(checkpoint)`` returns the ASGI app; ``numcnn explore`` serves it with uvicorn and tests
drive it with FastAPI's ``TestClient``. Endpoints:

=====================  ==========================================================================
``GET /``              the page (``static/index.html``; its JS and CSS under ``/static/``)
``GET /api/model``     the served model: name, classes, input geometry, bundled test error
``GET /api/samples``   the shipped MNIST test digits: ``[{"index", "label", "pixels": [784]}]``
``POST /api/trace``    ``{"pixels": [784 in 0..1], "target": null | 0..9}`` → forward + backward pass
``POST /api/step``     the same plus ``"lr"`` → one SGD step on a copy of the model
=====================  ==========================================================================

Every refused request is answered with a 4xx status and ``{"error": "..."}``: bodies are read and
decoded here, not by FastAPI's model binding, so that invalid JSON, NaN, a wrong content type and
a body over :data:`MAX_BODY_BYTES` each get one clear message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from numcnn.explorer.samples import load_samples
from numcnn.explorer.service import Explorer, ParsedRequest, RequestError, parse_request

__all__ = ["create_app", "MAX_BODY_BYTES", "BodySizeLimit"]

MAX_BODY_BYTES = 1_000_000  # a 784-pixel request is ~15 KB; anything near 1 MB is a mistake or abuse


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413 ``{"error": ...}``.

    A declared ``Content-Length`` over the limit is refused before reading anything; a body sent
    without one (chunked) is counted while it streams and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = _error(413, f"request body over {self.limit:,} bytes")
        if declared is not None:
            try:
                if int(declared) > self.limit:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await _error(400, "invalid Content-Length header")(scope, receive, send)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await too_large(scope, receive, send)


def _static_dir() -> Path:
    return Path(str(resources.files("numcnn.explorer").joinpath("static")))


async def _read_json(request: Request) -> object:
    """The request's body as decoded JSON; a wrong content type, bad UTF-8 or bad JSON is a RequestError."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(f"send JSON with 'Content-Type: application/json' (got {content_type or 'none'!r})", 415)
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the body is not valid UTF-8", 400) from None

    def refuse_constant(name: str) -> object:  # json.loads accepts NaN and Infinity by default
        raise RequestError(f"{name} is not a number in JSON", 422)

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise RequestError(f"invalid JSON: {error}", 400) from None
    except RecursionError:
        raise RequestError("invalid JSON: nested too deeply", 400) from None


def create_app(checkpoint: str | Path | None = None) -> FastAPI:
    """The explorer app serving ``checkpoint`` (default: the bundled LeNet-5)."""
    explorer = Explorer(checkpoint)
    samples = [
        {"index": sample.index, "label": sample.label, "pixels": sample.pixels.ravel().tolist()}
        for sample in load_samples()
    ]
    static = _static_dir()
    app = FastAPI(title="numcnn explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = explorer

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(error).__name__}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def no_icon() -> Response:
        return Response(status_code=204)

    @app.get("/api/model")
    async def model_info() -> dict[str, Any]:
        return explorer.info()

    @app.get("/api/samples")
    async def sample_digits() -> list[dict[str, Any]]:
        return samples

    async def parsed(request: Request, allow_lr: bool = False) -> ParsedRequest:
        return parse_request(await _read_json(request), explorer.classes, allow_lr=allow_lr)

    @app.post("/api/trace")
    async def trace(request: Request) -> JSONResponse:
        query = await parsed(request)
        return JSONResponse(await _in_thread(explorer.trace, query))

    @app.post("/api/step")
    async def step(request: Request) -> JSONResponse:
        query = await parsed(request, allow_lr=True)
        return JSONResponse(await _in_thread(explorer.step, query))

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)
    return app


async def _in_thread(function: Callable[[ParsedRequest], dict[str, Any]], query: ParsedRequest) -> dict[str, Any]:
    """Run the NumPy work off the event loop, so that the server keeps answering meanwhile."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, query)
