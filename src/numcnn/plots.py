"""Learning-curve plots of a run directory (needs matplotlib; rendered off-screen with Agg)."""

from __future__ import annotations

from pathlib import Path

from numcnn.train import read_metrics

__all__ = ["plot_learning_curves"]


def plot_learning_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw loss and error per epoch, train and test, from ``run_dir/metrics.jsonl``; return the file."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and never pops up a window
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    output = Path(output) if output is not None else Path(run_dir) / "curves.png"
    epochs = [r["epoch"] for r in records]
    figure, (loss_axes, error_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    loss_axes.plot(epochs, [r["test_loss"] for r in records], "s-", label="test")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    error_axes.plot(epochs, [100 * (1 - r["train_accuracy"]) for r in records], "o-", label="train")
    error_axes.plot(epochs, [100 * (1 - r["test_accuracy"]) for r in records], "s-", label="test")
    error_axes.set(xlabel="epoch", ylabel="error (%)", title="classification error")
    for axes in (loss_axes, error_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(Path(run_dir).name)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
