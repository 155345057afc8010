"""What the explorer's HTTP endpoints compute, with NumPy alone (no web framework here).

:class:`Explorer` owns the served model. :meth:`Explorer.trace` runs one forward and one backward
pass through :func:`numcnn.inspect.trace` -- the library's own layers, the same code training runs --
and turns the result into the JSON of ``POST /api/trace``. :meth:`Explorer.step` applies one SGD step
to a *copy* of the model (the served model never changes) and reports the loss before and after and
how the first layer's kernels moved. Requests are validated by :func:`parse_request`; every problem is
a :class:`RequestError` carrying the HTTP status the app answers with.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from numcnn import models
from numcnn.layers import Layer

__all__ = [
    "Explorer",
    "RequestError",
    "ParsedRequest",
    "parse_request",
    "bundled_checkpoint_path",
    "PIXELS",
    "DEFAULT_STEP_LR",
]

SIDE = 28
PIXELS = SIDE * SIDE  # the contract: 784 numbers, row-major 28×28, white digit on black, in 0..1
# LeNet-5 trains at 0.01 on batches of 64, i.e. about 0.00016 per sample: a step of that size on one
# digit moves its loss visibly without flipping every class at once (0.01 on one digit does).
DEFAULT_STEP_LR = 0.0001
MAX_STEP_LR = 10.0
# Parameter gradients larger than this are summarised by their norm only: a conv layer's kernels
# (LeNet-5: 150 and 2,400 numbers) are drawn, a fully connected layer's 48,000 weights are not.
MAX_SENT_PARAMETER_SIZE = 5000
DISPLAY_DIGITS = 4  # significant digits of the arrays that are only drawn (keeps a trace ~200 KB)
BUNDLED_CHECKPOINT = "lenet5.npz"


class RequestError(ValueError):
    """A request the explorer refuses; ``status`` is the HTTP status to answer with (4xx)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: 28×28 pixels in 0..1, the target class (None: the prediction), the SGD rate."""

    pixels: np.ndarray
    target: int | None
    lr: float


def bundled_checkpoint_path() -> Path:
    """The LeNet-5 checkpoint shipped with the package (used when ``numcnn explore`` gets none)."""
    return Path(str(resources.files("numcnn.explorer").joinpath("assets").joinpath(BUNDLED_CHECKPOINT)))


def _is_number(value: object) -> bool:
    # bool is an int in Python, but `true` is not a pixel value in JSON.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_request(payload: object, classes: int, *, allow_lr: bool = False) -> ParsedRequest:
    """Check a decoded JSON body ``{"pixels": [784 numbers in 0..1], "target": null | 0..classes-1}``.

    ``allow_lr`` also accepts ``"lr"`` (the SGD step's learning rate, 0 < lr <= 10). Unknown keys
    are refused so that a misspelt ``"traget"`` does not silently fall back to the prediction.
    """
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object, got {type(payload).__name__}")
    allowed = {"pixels", "target"} | ({"lr"} if allow_lr else set())
    unknown = sorted(str(key) for key in payload if key not in allowed)
    if unknown:
        raise RequestError(f"unknown keys {unknown}; expected {sorted(allowed)}")
    if "pixels" not in payload:
        raise RequestError(f'missing "pixels": a list of {PIXELS} numbers in 0..1 (28x28, row-major)')
    pixels = payload["pixels"]
    if not isinstance(pixels, list):
        raise RequestError(f'"pixels" must be a list of {PIXELS} numbers, got {type(pixels).__name__}')
    if len(pixels) != PIXELS:
        raise RequestError(f'"pixels" must hold {PIXELS} numbers (28x28), got {len(pixels)}')
    if not all(_is_number(value) for value in pixels):
        bad = next(value for value in pixels if not _is_number(value))
        raise RequestError(f'"pixels" must hold numbers only, found {type(bad).__name__} {str(bad)[:40]!r}')
    image = np.array(pixels, dtype=np.float64).reshape(SIDE, SIDE)
    if not np.all(np.isfinite(image)):
        raise RequestError('"pixels" must be finite numbers (no NaN or infinity)')
    if image.min() < 0.0 or image.max() > 1.0:
        raise RequestError(f'"pixels" must lie in 0..1, got values from {image.min():g} to {image.max():g}')

    target = payload.get("target")
    if target is not None:
        if not isinstance(target, int) or isinstance(target, bool):
            raise RequestError(f'"target" must be null or an integer class, got {type(target).__name__}')
        if not 0 <= target < classes:
            raise RequestError(f'"target" must be null or a class 0..{classes - 1}, got {target}')

    lr = payload.get("lr", DEFAULT_STEP_LR)
    if not _is_number(lr) or not math.isfinite(lr) or not 0 < lr <= MAX_STEP_LR:
        raise RequestError(f'"lr" must be a number with 0 < lr <= {MAX_STEP_LR:g}, got {str(lr)[:40]!r}')
    return ParsedRequest(image, target, float(lr))


def _nested(array: np.ndarray) -> Any:
    """Full-precision nested lists (values a client computes with: loss gradients, probabilities)."""
    return np.asarray(array, dtype=np.float64).tolist()


def _display(array: np.ndarray, digits: int = DISPLAY_DIGITS) -> Any:
    """Nested lists rounded to ``digits`` significant digits of the array's largest magnitude.

    These arrays are only drawn, with one colour scale per map; rounding relative to the largest
    value keeps the picture and shrinks the JSON about fourfold.
    """
    values = np.asarray(array, dtype=np.float64)
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if largest == 0.0 or not math.isfinite(largest):
        return values.tolist()
    decimals = digits - 1 - math.floor(math.log10(largest))
    return np.round(values, decimals).tolist()


def _window(layer: Layer | None) -> dict[str, Any] | None:
    """How one output unit of ``layer`` maps to the layer's input, for the page's hover view.

    ``kernel``/``stride``/``padding`` give the window ``rows y·s − p … y·s − p + k − 1``; ``channels``
    says whether the window spans every input map (a convolution) or only the unit's own (pooling,
    element-wise layers). None: the spatial layout ends here (Flatten, Linear).
    """
    if layer is None:
        return None
    if all(hasattr(layer, name) for name in ("kernel_size", "stride", "padding")):
        spans_all = hasattr(layer, "in_channels")  # a convolution reads every input map
        return {
            "kernel": list(layer.kernel_size),
            "stride": list(layer.stride),
            "padding": list(layer.padding),
            "channels": "all" if spans_all else "same",
        }
    return None


class Explorer:
    """The served model and what the endpoints compute with it.

    The model is kept in float64 (whatever the checkpoint's dtype), so that a trace's
    ``∂E/∂pixels`` can be checked against finite differences of the loss it reports. A lock
    serialises the passes: the layers keep their caches between forward and backward, and the
    kernel backend is chosen process-wide.
    """

    def __init__(self, checkpoint_path: str | Path | None = None) -> None:
        from numcnn.checkpoint import load_checkpoint

        self.bundled = checkpoint_path is None
        self.path = Path(checkpoint_path) if checkpoint_path is not None else bundled_checkpoint_path()
        checkpoint = load_checkpoint(self.path)
        self.meta = checkpoint.meta
        self.spec: models.ModelSpec = checkpoint.spec
        self.state = {name: value.astype(np.float64) for name, value in checkpoint.model.state_dict().items()}
        self.model = self._build()
        from numcnn.inspect import leaf_layers

        self.layers = dict(leaf_layers(self.model))  # by the names the traces use
        self._lock = threading.Lock()

    @property
    def classes(self) -> int:
        return self.spec.num_classes

    def _build(self) -> Layer:
        """A fresh float64 instance of the served model (the SGD step works on one of these)."""
        model = models.build(self.spec.name, rng=0, dtype=np.float64)
        model.load_state_dict(self.state)
        return model.eval()

    def info(self) -> dict[str, Any]:
        """``GET /api/model``: what the page shows in its header and needs for its geometry."""
        return {
            "name": self.spec.name,
            "description": self.spec.description,
            "checkpoint": self.path.name,
            "bundled": self.bundled,
            "classes": self.classes,
            "input_shape": list(self.spec.input_shape),
            "input_padding": self.spec.input_padding,
            "test_error": self.meta.get("test_error"),
            "epochs": self.meta.get("epoch"),
            "default_lr": DEFAULT_STEP_LR,
        }

    def _trace(self, model: Layer, pixels: np.ndarray, target: int | None) -> Any:
        """:func:`numcnn.trace` on the readable reference kernels: one image needs no speed, and a
        compiled backend would first compile its float64 variants (seconds, on the first request).
        The caller holds the lock: the backend choice is process-wide."""
        from numcnn.inspect import trace
        from numcnn.kernels import use_backend

        with use_backend("reference"):
            return trace(model, pixels, target, spec=self.spec)

    def trace(self, request: ParsedRequest) -> dict[str, Any]:
        """``POST /api/trace``: the forward and backward pass of one drawn digit, as JSON."""
        with self._lock:
            result = self._trace(self.model, request.pixels, request.target)
        layers = []
        for layer_trace in result.layers:
            grads = {name: np.asarray(grad) for name, grad in layer_trace.param_grads.items()}
            layers.append(
                {
                    "name": layer_trace.name,
                    "kind": layer_trace.kind,
                    "output_shape": list(layer_trace.output_shape),
                    "activation": _display(layer_trace.activation),
                    "delta": _display(layer_trace.delta),
                    "window": _window(self.layers.get(layer_trace.name)),
                    "param_grads": {
                        name: _display(grad) for name, grad in grads.items() if grad.size <= MAX_SENT_PARAMETER_SIZE
                    },
                    "param_grad_norms": {name: float(np.linalg.norm(grad)) for name, grad in grads.items()},
                }
            )
        return {
            "prediction": int(result.prediction),
            "target": int(result.target),
            "probabilities": _nested(result.probabilities),
            "loss": float(result.loss),
            "input": _display(result.input),
            "input_gradient": _nested(result.pixel_gradient),
            "layers": layers,
        }

    def step(self, request: ParsedRequest) -> dict[str, Any]:
        """``POST /api/step``: one SGD step on a copy of the model for this digit and target.

        The step is the trainer's own code: ``zero_grad``, the loss's forward, ``backward`` through the
        model, :class:`numcnn.optim.SGD` (no momentum: one step has no history). The served model
        is left as it was.
        """
        from numcnn.kernels import use_backend
        from numcnn.optim import SGD
        from numcnn.train import make_loss

        with self._lock:
            copy = self._build()
            before = self._trace(copy, request.pixels, request.target)
            target = int(before.target)
            first = self._first_kernel_layer(copy)
            kernels_before = first[1].params["weight"].copy() if first else None
            loss = make_loss(self.spec)
            with use_backend("reference"):
                copy.zero_grad()
                loss.forward(copy.forward(self.spec.prepare(request.pixels[None], np.float64)), np.array([target]))
                copy.backward(loss.backward())
            SGD(copy.parameters(), lr=request.lr).step()
            after = self._trace(copy, request.pixels, target)

        answer: dict[str, Any] = {
            "target": target,
            "lr": request.lr,
            "loss_before": float(before.loss),
            "loss_after": float(after.loss),
            "prediction_before": int(before.prediction),
            "prediction_after": int(after.prediction),
            "probabilities_before": _nested(before.probabilities),
            "probabilities_after": _nested(after.probabilities),
            "kernels": None,
        }
        if first is not None and kernels_before is not None:
            kernels_after = first[1].params["weight"]
            answer["kernels"] = {
                "layer": first[0],
                "before": _display(kernels_before),
                "after": _display(kernels_after),
                "change": _display(kernels_after - kernels_before),
                "largest_change": float(np.max(np.abs(kernels_after - kernels_before))),
            }
        return answer

    @staticmethod
    def _first_kernel_layer(model: Layer) -> tuple[str, Layer] | None:
        """The first layer with a 4-D ``weight`` (F, C, KH, KW): the kernels the step panel draws."""
        for name, layer in model.named_children():
            weight = layer.params.get("weight")
            if weight is not None and weight.ndim == 4:
                return name, layer
        return None
