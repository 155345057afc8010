"""Figures of one traced sample (:func:`numcnn.trace`): the input and its preprocessing, every layer's
feature maps and sensitivity maps δ, the first layer's kernels and their gradients, the saliency
``∂E/∂pixels`` and the class probabilities -- what ``numcnn show`` writes, usable from a notebook::

    t = numcnn.trace(checkpoint.model, digit, spec=checkpoint.spec)
    numcnn.figures.delta_maps(t.layer("0"))          # a matplotlib Figure

Signed values (δ, gradients, convolution outputs) use a diverging colour map centred at 0 with
symmetric limits, so white is 0, red positive and blue negative; non-negative values (ReLU and
pooling outputs, pixels) a sequential one starting at 0. Every image has a colour bar; the maps of
one figure share one scale, so their magnitudes compare.

matplotlib is imported when a figure is drawn (``pip install 'numcnn[plot]'``), with the Agg
back end: no display is needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.inspect import LayerTrace, Trace

__all__ = [
    "input_figure", "feature_maps", "delta_maps", "kernel_figure", "saliency_figure", "probability_figure",
    "summary_figure", "write_figures", "DIVERGING", "SEQUENTIAL",
]  # fmt: skip

#: Colour map of signed values, centred at 0.
DIVERGING = "RdBu_r"
#: Colour map of non-negative values.
SEQUENTIAL = "magma"
# At most this many maps of one layer are drawn (a ResNet block may have many more channels).
_MAX_MAPS = 64
_COLUMNS = 8


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError("figures need matplotlib: pip install 'numcnn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _limits(values: np.ndarray, signed: bool | None = None) -> tuple[str, float, float]:
    """Colour map and limits: diverging and symmetric about 0 for signed values, else from 0."""
    values = np.asarray(values, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if signed is None:
        signed = low < 0
    if signed:
        bound = max(abs(low), abs(high)) or 1.0
        return DIVERGING, -bound, bound
    return SEQUENTIAL, 0.0, high or 1.0


def _image(axes, figure, values: np.ndarray, title: str, signed: bool | None = None):
    cmap, vmin, vmax = _limits(values, signed)
    shown = axes.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    return shown


def _map_grid(values: np.ndarray, title: str, signed: bool | None, map_label: str):
    """``(C, H, W)`` maps on a grid with one shared scale and colour bar; ``(F,)`` vectors as bars."""
    plt = _pyplot()
    values = np.asarray(values, dtype=np.float64)
    cmap, vmin, vmax = _limits(values, signed)
    if values.ndim != 3:
        vector = values.reshape(-1)
        figure, axes = plt.subplots(figsize=(min(12.0, 4.0 + vector.size / 25), 3.0))
        colours = plt.get_cmap(cmap)((vector - vmin) / (vmax - vmin))
        axes.bar(np.arange(vector.size), vector, width=1.0, color=colours)
        axes.axhline(0.0, color="black", linewidth=0.5)
        axes.set(xlabel="unit", ylabel=map_label, title=title)
        axes.set_xlim(-0.5, vector.size - 0.5)
        figure.tight_layout()
        return figure
    shown_maps = values[:_MAX_MAPS]
    count = len(shown_maps)
    columns = min(count, _COLUMNS)
    rows = math.ceil(count / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(1.4 * columns + 1.2, 1.4 * rows + 0.8), squeeze=False)
    image = None
    for index, axes in enumerate(grid.ravel()):
        axes.set_xticks([])
        axes.set_yticks([])
        if index >= count:
            axes.axis("off")
            continue
        image = axes.imshow(shown_maps[index], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        axes.set_title(f"{map_label} {index}", fontsize=7)
    more = f" (first {count} of {len(values)})" if len(values) > count else ""
    figure.suptitle(title + more, fontsize=10)
    figure.colorbar(image, ax=grid.ravel().tolist(), fraction=0.03, pad=0.02)
    return figure


def _layer_title(layer: LayerTrace, what: str) -> str:
    shape = "×".join(str(size) for size in layer.output_shape)
    return f"{what} of layer {layer.name} ({layer.kind}, {shape})"


def feature_maps(layer: LayerTrace):
    """The layer's output (feature maps): one image per channel, or bars for a vector."""
    return _map_grid(layer.activation, _layer_title(layer, "output"), None, "map")


def delta_maps(layer: LayerTrace):
    """The layer's sensitivity maps ``δ = ∂E/∂output``, diverging around 0."""
    return _map_grid(layer.delta, _layer_title(layer, "δ = ∂E/∂output"), True, "δ")


def input_figure(trace: Trace, pixels: np.ndarray | None = None, picture: np.ndarray | None = None):
    """The input and its preprocessing: the picture as read (``picture``, optional), the MNIST-like
    28×28 ``pixels`` in [0, 1] (optional) and the prepared model input (normalised, padded)."""
    plt = _pyplot()
    panels: list[tuple[np.ndarray, str, bool | None]] = []
    if picture is not None:
        panels.append((np.asarray(picture, dtype=np.float64), "picture as read (grey)", False))
    if pixels is not None:
        panels.append((np.asarray(pixels, dtype=np.float64), "MNIST-like 28×28, [0, 1]", False))
    model_input = np.asarray(trace.input, dtype=np.float64)
    shape = "×".join(str(size) for size in model_input.shape)
    panels.append((model_input[0] if model_input.ndim == 3 else model_input, f"model input {shape} (normalised)", None))
    figure, grid = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for axes, (values, title, signed) in zip(grid[0], panels):
        if signed is False:
            shown = axes.imshow(values, cmap="gray", vmin=0.0, vmax=max(float(values.max()), 1e-12))
            axes.set_title(title, fontsize=9)
            axes.set_xticks([])
            axes.set_yticks([])
            figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
        else:
            _image(axes, figure, values, title, signed)
    figure.tight_layout()
    return figure


def _first_kernel_layer(trace: Trace) -> LayerTrace:
    for layer in trace.layers:
        weight = layer.param_grads.get("weight")
        if weight is not None and weight.ndim == 4:
            return layer
    raise ConfigurationError("the model has no convolution kernels to draw")


def kernel_figure(trace: Trace, layer_name: str | None = None):
    """The kernels of the first convolution (or of ``layer_name``) and their gradients ``∂E/∂W``.

    Shows input channel 0 of each kernel (the only one for a grey-level first layer)."""
    from numcnn.errors import NumcnnError

    plt = _pyplot()
    layer = trace.layer(layer_name) if layer_name is not None else _first_kernel_layer(trace)
    gradient = layer.param_grads.get("weight")
    if gradient is None or gradient.ndim != 4:
        raise NumcnnError(f"layer {layer.name} ({layer.kind}) has no convolution kernels")
    weight = layer.params.get("weight")
    rows = [("kernel", weight), ("∂E/∂kernel", gradient)] if weight is not None else [("∂E/∂kernel", gradient)]
    count = min(len(gradient), 16)
    figure, grid = plt.subplots(len(rows), count, figsize=(1.3 * count + 1.2, 1.5 * len(rows) + 0.8), squeeze=False)
    for row, (label, values) in enumerate(rows):
        cmap, vmin, vmax = _limits(values[:count, 0], signed=True)
        image = None
        for index in range(count):
            axes = grid[row, index]
            image = axes.imshow(values[index, 0], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(f"{label} {index}", fontsize=7)
        figure.colorbar(image, ax=grid[row].tolist(), fraction=0.03, pad=0.02)
    title = f"layer {layer.name} ({layer.kind}): kernels and gradients, target class {trace.target}"
    figure.suptitle(title, fontsize=10)
    return figure


def saliency_figure(trace: Trace):
    """``∂E/∂pixels`` (or ``∂E/∂input`` without pixels): which pixels raise or lower the error ``E``
    of the target class; next to the input for orientation."""
    plt = _pyplot()
    if trace.pixel_gradient is not None:
        gradient, title = trace.pixel_gradient, "saliency ∂E/∂pixels"
    else:
        gradient, title = trace.input_gradient[0], "saliency ∂E/∂input"
    model_input = trace.input[0] if trace.input.ndim == 3 else trace.input
    figure, grid = plt.subplots(1, 2, figsize=(7.4, 3.4))
    _image(grid[0], figure, model_input, "model input", None)
    _image(grid[1], figure, gradient, f"{title}, target {trace.target}", True)
    figure.tight_layout()
    return figure


def probability_figure(trace: Trace):
    """The class probabilities as bars; the prediction and the target class marked."""
    plt = _pyplot()
    probabilities = np.asarray(trace.probabilities)
    classes = np.arange(len(probabilities))
    colours = ["tab:orange" if k == trace.prediction else "tab:blue" for k in classes]
    figure, axes = plt.subplots(figsize=(5.0, 3.0))
    axes.bar(classes, probabilities, color=colours)
    axes.bar([trace.target], [probabilities[trace.target]], fill=False, edgecolor="black", linewidth=1.5)
    axes.set(xticks=classes, ylim=(0, 1), xlabel="class", ylabel="probability")
    axes.set_title(f"prediction {trace.prediction}, target {trace.target} (outlined), E = {trace.loss:.4g}", fontsize=9)
    figure.tight_layout()
    return figure


def summary_figure(trace: Trace, pixels: np.ndarray | None = None):
    """One page: the input, the saliency, the probabilities, and for the first layer its feature maps
    and δ maps (up to 8 of each)."""
    plt = _pyplot()
    first = trace.layers[0]
    maps = min(len(first.activation), 8) if first.activation.ndim == 3 else 0
    columns = 2 * max(3, maps)  # the top row's three panels take a third each
    figure = plt.figure(figsize=(0.8 * columns + 1.4, 7.2), layout="constrained")
    spec = figure.add_gridspec(3, columns, height_ratios=(1.6, 1.0, 1.0))
    shown_input = pixels if pixels is not None else (trace.input[0] if trace.input.ndim == 3 else trace.input)
    third = columns // 3
    axes = figure.add_subplot(spec[0, :third])
    _image(axes, figure, np.asarray(shown_input, dtype=np.float64), "input", None)
    axes = figure.add_subplot(spec[0, third : 2 * third])
    gradient = trace.pixel_gradient if trace.pixel_gradient is not None else trace.input_gradient[0]
    _image(axes, figure, gradient, f"saliency ∂E/∂pixels, target {trace.target}", True)
    axes = figure.add_subplot(spec[0, 2 * third :])
    classes = np.arange(len(trace.probabilities))
    colours = ["tab:orange" if k == trace.prediction else "tab:blue" for k in classes]
    axes.bar(classes, trace.probabilities, color=colours)
    axes.set_xticks(classes)
    axes.set_ylim(0, 1)
    axes.set_title(f"probabilities: prediction {trace.prediction}", fontsize=9)
    for row, (values, label) in enumerate(((first.activation, "output"), (first.delta, "δ")), start=1):
        if not maps:
            break
        cmap, vmin, vmax = _limits(values[:maps], signed=True if label == "δ" else None)
        image = None
        cells = []
        for index in range(maps):
            cell = figure.add_subplot(spec[row, 2 * index : 2 * index + 2])
            image = cell.imshow(values[index], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            cell.set_xticks([])
            cell.set_yticks([])
            cell.set_title(f"{label} {index}", fontsize=8)
            cells.append(cell)
        figure.colorbar(image, ax=cells, fraction=0.03, pad=0.02)
    figure.suptitle(
        f"E for class {trace.target} = {trace.loss:.4g}; rows 2-3: layer {first.name} ({first.kind}), "
        "its feature maps and its δ = ∂E/∂output", fontsize=10,
    )  # fmt: skip
    return figure


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_figures(
    trace: Trace, out_dir: str | Path, *, pixels: np.ndarray | None = None, picture: np.ndarray | None = None
) -> list[Path]:
    """Write every figure of ``trace`` as PNG files into ``out_dir`` (created); return their paths:
    ``summary.png``, ``input.png``, ``probabilities.png``, ``saliency.png``, ``kernels.png`` (if the
    model has a convolution), and per layer ``NN-<name>-<kind>-output.png`` / ``-delta.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _save(summary_figure(trace, pixels), out / "summary.png"),
        _save(input_figure(trace, pixels, picture), out / "input.png"),
        _save(probability_figure(trace), out / "probabilities.png"),
        _save(saliency_figure(trace), out / "saliency.png"),
    ]
    if any(getattr(layer.param_grads.get("weight"), "ndim", 0) == 4 for layer in trace.layers):
        written.append(_save(kernel_figure(trace), out / "kernels.png"))
    for index, layer in enumerate(trace.layers):
        stem = f"{index:02d}-{layer.name}-{layer.kind}"
        written.append(_save(feature_maps(layer), out / f"{stem}-output.png"))
        written.append(_save(delta_maps(layer), out / f"{stem}-delta.png"))
    return written
