"""Watch back-propagation happen for one input: :func:`trace` records every layer's output and
sensitivity map ``δ = ∂E/∂output`` through layer hooks, and :func:`predict` turns images into class
probabilities. NumPy only; the figures of ``numcnn show`` are drawn from a :class:`Trace` by
:mod:`numcnn.figures`.

What a trace computes is what training computes: one forward and one backward pass of the same
layers on the active backend, with each layer run on its own (hooked layers are never fused, see
:mod:`numcnn.layers.fusion`; fused and unfused steps give the same numbers, which the kernel tests
check). The model runs in **evaluation mode** -- batch normalisation uses its running statistics,
dropout is the identity -- as for a prediction; afterwards every layer's mode, cache and gradient
is restored, so tracing never disturbs training (and leaves no gradient behind).

The error ``E`` is the model's own training loss (:attr:`numcnn.models.ModelSpec.loss`, cross-entropy
when the model has no specification) for one sample and the class ``target``. With one sample the
loss's batch mean is the sample's loss, so at the logits of a cross-entropy model
``δ = softmax(u) − onehot(target)`` (seed 000 eq. 4's starting point).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional.activation import softmax_forward
from numcnn.layers.base import HookHandle, Layer
from numcnn.layers.flat import walk_layers
from numcnn.losses import MSELoss

__all__ = ["LayerTrace", "Trace", "trace", "predict", "leaf_layers"]


@dataclass
class LayerTrace:
    """What one layer computed for the traced sample (arrays without the batch axis).

    Attributes:
        name: the layer's name as in ``state_dict`` prefixes: ``"0"``, ``"1"``, … in a Sequential,
            the node name in a Graph, dotted for nested containers (``"3.conv1"``).
        kind: the layer's class name, e.g. ``"Conv2d"``.
        output_shape: ``(C, H, W)`` or ``(F,)`` of the output.
        activation: the layer's output.
        delta: ``δ = ∂E/∂output``, same shape (zeros for a layer whose output does not reach ``E``).
        input_grad: ``∂E/∂input`` of the layer, shaped like its input (for a layer with several
            inputs, such as ``Add``: the first input's; they are all equal for ``Add``).
        param_grads: ``∂E/∂parameter`` of each of the layer's own parameters, keyed like ``params``.
        params: copies of the layer's own parameters (the kernels these gradients belong to).
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    activation: np.ndarray
    delta: np.ndarray
    input_grad: np.ndarray
    param_grads: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Trace:
    """One forward and backward pass of one sample (see the module docstring).

    Attributes:
        layers: the :class:`LayerTrace` of every layer that ran, in forward order.
        input: the prepared model input ``(C, H, W)``.
        probabilities: ``(num_classes,)``: softmax of the outputs; for models whose outputs are
            penalties (``prediction = "argmin"``, LeNet-5's RBF units) softmax of the *negated* outputs.
        prediction: the most probable class.
        target: the class ``E`` is computed for (default: the prediction).
        loss: ``E`` for ``target`` (the model's training loss of this one sample).
        input_gradient: ``∂E/∂input`` ``(C, H, W)``.
        pixel_gradient: ``∂E/∂pixels`` ``(H, W)`` in pixel units of [0, 1], chained through the
            specification's normalisation and padding -- when ``trace`` was given pixels and a ``spec``;
            else ``None``.
    """

    layers: list[LayerTrace]
    input: np.ndarray
    probabilities: np.ndarray
    prediction: int
    target: int
    loss: float
    input_gradient: np.ndarray
    pixel_gradient: np.ndarray | None = None

    def layer(self, name: str) -> LayerTrace:
        """The :class:`LayerTrace` called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def leaf_layers(model: Layer) -> list[tuple[str, Layer]]:
    """``(name, layer)`` of every layer of ``model`` that has no children, named like ``state_dict``
    prefixes; a model that is itself a single layer is named after its class."""
    if not any(True for _ in model.children()):
        return [(type(model).__name__.lower(), model)]
    leaves: list[tuple[str, Layer]] = []

    def visit(layer: Layer, prefix: str) -> None:
        for child_name, child in layer.named_children():
            name = f"{prefix}{child_name}"
            if any(True for _ in child.children()):
                visit(child, name + ".")
            else:
                leaves.append((name, child))

    visit(model, "")
    return leaves


@contextmanager
def preserved(model: Layer) -> Iterator[None]:
    """Run a block on ``model`` and afterwards restore every layer's train/eval mode, forward cache and
    gradients (in place, so optimisers stay bound). Buffers are not restored: run in evaluation mode,
    which changes none."""
    layers = list({id(layer): layer for layer in walk_layers(model)}.values())
    modes = [(layer, layer.training, layer.cache) for layer in layers]
    grads = [(grad, grad.copy()) for layer in layers for grad in layer.grads.values()]
    try:
        yield
    finally:
        for layer, training, cache in modes:
            layer.training, layer.cache = training, cache
        for grad, saved in grads:
            np.copyto(grad, saved)


class _Recorder:
    """Hooks on every leaf layer collecting outputs (in the order they run), δ and ``∂E/∂input``."""

    def __init__(self, model: Layer) -> None:
        self.leaves = leaf_layers(model)
        self.outputs: dict[str, np.ndarray] = {}
        self.deltas: dict[str, np.ndarray] = {}
        self.input_grads: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}
        self._handles: list[HookHandle] = []

    def __enter__(self) -> _Recorder:
        for name, layer in self.leaves:
            self._handles.append(layer.register_forward_hook(self._forward_hook(name)))
            self._handles.append(layer.register_backward_hook(self._backward_hook(name)))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward_hook(self, name: str):
        def hook(layer: Layer, inputs: tuple, output: np.ndarray) -> None:
            self.inputs[name] = np.array(inputs[0][0], copy=True)
            self.outputs[name] = np.array(output[0], copy=True)

        return hook

    def _backward_hook(self, name: str):
        def hook(layer: Layer, grad_inputs: tuple, grad_output: np.ndarray) -> None:
            self.deltas[name] = np.array(grad_output[0], copy=True)
            if grad_inputs and grad_inputs[0] is not None:
                self.input_grads[name] = np.array(grad_inputs[0][0], copy=True)

        return hook


def _model_dtype(model: Layer) -> np.dtype:
    parameters = model.parameters()
    return parameters[0][0].dtype if parameters else np.dtype(np.float64)


def _model_spec(model: Layer, spec):
    return spec if spec is not None else getattr(model, "spec", None)


def _make_loss(spec):
    from numcnn.losses import CrossEntropyLoss
    from numcnn.train import make_loss

    return make_loss(spec) if spec is not None else CrossEntropyLoss()


def _probabilities(outputs: np.ndarray, spec) -> np.ndarray:
    scores = spec.class_scores(outputs) if spec is not None else outputs
    return softmax_forward(np.asarray(scores, dtype=np.float64), axis=1)


def _as_pixels(image: Any, what: str) -> np.ndarray:
    """Pixels as floats in [0, 1]; integer arrays are 0-255 grey levels."""
    array = np.asarray(image)
    if array.dtype.kind in "ui":
        return array / 255.0
    if array.dtype.kind not in "fb":
        raise ShapeError(f"{what}: expected numbers, got an array of {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ShapeError(f"{what}: pixel values include NaN or infinity")
    return array


def _check_target(target: Any, num_classes: int) -> int:
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise ConfigurationError(f"target must be a class index 0-{num_classes - 1}, got {target!r}")
    if not 0 <= int(target) < num_classes:
        raise ConfigurationError(f"target {int(target)} is not a class of this model (0-{num_classes - 1})")
    return int(target)


def trace(model: Layer, image: Any, target: int | None = None, *, spec=None) -> Trace:
    """One forward and one backward pass of one sample, recording every layer (see the module docstring).

    Args:
        model: a ``Sequential``, ``Graph`` or any layer (e.g. a registered model or a checkpoint's).
        image: without ``spec``, one prepared model input ``(C, H, W)``; with ``spec``, the raw picture
            ``(H, W)`` -- pixels in [0, 1] (0-255 for integer arrays), white digit on black as in MNIST --
            which is prepared exactly as for training (:meth:`~numcnn.models.ModelSpec.prepare`).
        target: the class whose error ``E`` is back-propagated; default: the predicted class.
        spec: the model's :class:`~numcnn.models.ModelSpec` (a checkpoint's ``.spec``). It also selects
            the loss and how outputs become probabilities; without it those come from ``model.spec``
            when the model was built from the registry, else cross-entropy on the outputs as logits.

    Returns:
        a :class:`Trace`. Example::

            checkpoint = numcnn.checkpoint.load_checkpoint("runs/l5/model.npz")
            t = numcnn.trace(checkpoint.model, digit_28x28, target=3, spec=checkpoint.spec)
            t.layer("0").delta.shape          # (6, 28, 28): δ of the first convolution
    """
    model_spec = _model_spec(model, spec)
    dtype = _model_dtype(model)
    pixel_input = spec is not None
    if pixel_input:
        pixels = _as_pixels(image, "trace image")
        if pixels.ndim != 2:
            raise ShapeError(f"trace: with a spec, image must be (H, W) pixels, got shape {pixels.shape}")
        x = spec.prepare(pixels[None], dtype)
    else:
        x = np.asarray(image, dtype=dtype)[None]
        if x.ndim < 2:
            raise ShapeError(f"trace: image must be one prepared input such as (C, H, W), got shape {x.shape[1:]}")
    loss = _make_loss(model_spec)

    with preserved(model), _Recorder(model) as recorder:
        model.eval()
        model.zero_grad()
        outputs = model.forward_with_hooks(x)
        if outputs.ndim != 2:
            raise ShapeError(f"trace: the model's output must be (N, classes), got shape {outputs.shape}")
        probabilities = _probabilities(outputs, model_spec)[0]
        prediction = int(np.argmax(probabilities))
        chosen = prediction if target is None else _check_target(target, outputs.shape[1])
        targets = np.eye(outputs.shape[1], dtype=outputs.dtype)[[chosen]] if isinstance(loss, MSELoss) else None
        value = loss.forward(outputs, targets if targets is not None else np.array([chosen]))
        input_gradient = model.backward_with_hooks(loss.backward(), need_input_grad=True)
        layers = _layer_traces(recorder)

    pixel_gradient = None
    if pixel_input:
        pixel_gradient = spec.pixel_gradient(input_gradient)[0]
    return Trace(
        layers=layers, input=x[0], probabilities=probabilities, prediction=prediction, target=chosen,
        loss=float(value), input_gradient=np.array(input_gradient[0], copy=True), pixel_gradient=pixel_gradient,
    )  # fmt: skip


def _layer_traces(recorder: _Recorder) -> list[LayerTrace]:
    """The recorded values in forward order; the parameter gradients are read while they are this pass's."""
    layers = dict(recorder.leaves)
    traces = []
    for name, activation in recorder.outputs.items():  # insertion order = the order the layers ran
        layer = layers[name]
        delta = recorder.deltas.get(name, np.zeros_like(activation))
        input_grad = recorder.input_grads.get(name, np.zeros_like(recorder.inputs[name]))
        traces.append(
            LayerTrace(
                name=name,
                kind=type(layer).__name__,
                output_shape=tuple(activation.shape),
                activation=activation,
                delta=delta,
                input_grad=input_grad,
                param_grads={key: grad.copy() for key, grad in layer.grads.items()},
                params={key: param.copy() for key, param in layer.params.items()},
            )
        )
    return traces


def predict(model: Layer, images: Any, *, spec=None, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, num_classes)`` of a batch, in evaluation mode (the model's mode and
    caches are restored afterwards).

    ``images``: prepared inputs ``(N, C, H, W)`` without ``spec``; with ``spec`` raw pictures
    ``(N, H, W)`` (pixels in [0, 1], or 0-255 integers), prepared as for training. Probabilities are
    the softmax of the outputs, of the negated outputs for penalty (``argmin``) models such as LeNet-5's
    RBF units -- as in :func:`trace`.
    """
    model_spec = _model_spec(model, spec)
    dtype = _model_dtype(model)
    if spec is not None:
        pixels = np.asarray(images)
        if pixels.ndim != 3:
            raise ShapeError(f"predict: with a spec, images must be (N, H, W) pixels, got shape {pixels.shape}")
        inputs = spec.prepare(_as_pixels(pixels, "predict images"), dtype)
    else:
        inputs = np.asarray(images, dtype=dtype)
    if len(inputs) == 0:
        raise ShapeError("predict: no images given")
    with preserved(model):
        model.eval()
        outputs = np.concatenate(
            [model.forward(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        )
    return _probabilities(outputs, model_spec)
