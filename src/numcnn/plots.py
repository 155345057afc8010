"""Learning-curve plots of a run directory (needs matplotlib; rendered off-screen with Agg)."""

from __future__ import annotations

from pathlib import Path

from numcnn.errors import ConfigurationError, DataError
from numcnn.train import read_metrics

__all__ = ["plot_learning_curves"]


CURVE_FIELDS = ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy")


def check_image_path(output: Path) -> None:
    """Refuse, before anything is drawn, an image file that cannot be written: a folder that does not
    exist, a folder in place of the file, or a format matplotlib does not write."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if output.is_dir():
        raise ConfigurationError(f"{output}: is a directory; give an image file such as {output / 'curves.png'}")
    if not output.parent.is_dir():
        raise ConfigurationError(f"{output.parent}: no such directory (for the image {output.name})")
    if output.suffix.lower().lstrip(".") not in formats:
        known = ", ".join(f".{name}" for name in sorted(formats))
        what = output.suffix or "a file without an extension"
        raise ConfigurationError(f"{output}: cannot write {what}; use {known}")


def plot_learning_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw loss and error per epoch, train and test, from ``run_dir/metrics.jsonl``; return the file.

    The error panel has a logarithmic axis: errors fall by orders of magnitude (10% → 1%), and a
    linear axis flattens everything after the first epochs."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and never pops up a window
    import matplotlib.pyplot as plt

    output = Path(output) if output is not None else Path(run_dir) / "curves.png"
    check_image_path(output)
    records = read_metrics(run_dir)
    if not records:
        raise DataError(f"{Path(run_dir) / 'metrics.jsonl'}: no epochs recorded yet, nothing to plot")
    incomplete = next((r for r in records if not isinstance(r, dict) or not set(CURVE_FIELDS) <= set(r)), None)
    if incomplete is not None:
        raise DataError(f"{Path(run_dir) / 'metrics.jsonl'}: a record lacks the fields {list(CURVE_FIELDS)}")
    epochs = [r["epoch"] for r in records]
    figure, (loss_axes, error_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    loss_axes.plot(epochs, [r["test_loss"] for r in records], "s-", label="test")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    error_axes.plot(epochs, [100 * (1 - r["train_accuracy"]) for r in records], "o-", label="train")
    error_axes.plot(epochs, [100 * (1 - r["test_accuracy"]) for r in records], "s-", label="test")
    error_axes.set(xlabel="epoch", ylabel="error (%)", title="classification error")
    error_axes.set_yscale("log", nonpositive="mask")  # a 0% epoch is left out rather than drawn at -inf
    for axes in (loss_axes, error_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(Path(run_dir).name)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
