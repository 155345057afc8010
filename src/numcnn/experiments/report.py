"""An experiment's results as ``results.csv``, a Markdown table per sweep, and plots.

Plots (with matplotlib): a sweep over training-set sizes gives ``<sweep>_error_vs_size.png`` (log
scale), one over seeds ``<sweep>_error_per_seed.png``, over subsets ``<sweep>_error_per_subset.png``,
over models only ``<sweep>_error_per_model.png``; every sweep also gets ``<sweep>_curves.png``, the
test error of each of its runs after every epoch (from the runs' ``metrics.jsonl``).
"""

from __future__ import annotations

import csv
import statistics
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

from numcnn.errors import DataError
from numcnn.experiments.config import ExperimentConfig, RunSpec, Sweep
from numcnn.train import TrainConfig, read_metrics

__all__ = ["CSV_COLUMNS", "write_report", "sweep_rows", "markdown"]

CSV_COLUMNS = [
    "sweep", "model", "train_size", "subset", "train_offset", "seed", "epochs",
    "test_error", "test_error_last5", "test_loss", "train_error", "train_loss", "test_images", "seconds", "run_id",
]  # fmt: skip
# The test error after one epoch is a noisy snapshot (it moves by a few tenths of a percent from one
# epoch to the next late in training); the mean over the last epochs is a steadier figure beside it.
RECENT_EPOCHS = 5
PLOT_KINDS = {
    "sizes": "error_vs_size", "seeds": "error_per_seed", "subsets": "error_per_subset", "models": "error_per_model",
}  # fmt: skip


def sweep_rows(sweep: Sweep, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished runs of ``sweep`` as CSV rows, in the sweep's order."""
    rows = []
    for run in sweep.runs:
        result = results.get(run.run_id)
        if result is not None:
            rows.append({"sweep": sweep.name, **{key: result[key] for key in CSV_COLUMNS if key in result}})
    return rows


def recent_test_error(run_dir: Path, epochs: int = RECENT_EPOCHS) -> float | None:
    """Mean test error over the last ``epochs`` epochs of a run (from ``metrics.jsonl``), or None."""
    try:
        records = read_metrics(run_dir)
    except DataError:
        return None
    recent = [1.0 - record["test_accuracy"] for record in records[-epochs:]]
    return statistics.mean(recent) if recent else None


def with_recent_errors(results: dict[str, dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Copies of the results with ``test_error_last5`` added where the run's metrics are at hand."""
    enriched = {}
    for run_id, result in results.items():
        recent = recent_test_error(out_dir / "runs" / run_id)
        enriched[run_id] = result if recent is None else {**result, "test_error_last5": recent}
    return enriched


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _settings_text(run: RunSpec) -> str:
    """The settings the run trains with: numcnn's defaults, the model's recommendations, the file's."""
    config, defaults, given = run.train_config(), TrainConfig(model=run.model), dict(run.train)
    parts = [f"{config.epochs} epochs", f"batch {config.batch_size}", f"lr {config.lr}"]
    parts += [f"momentum {config.momentum}", f"weight decay {config.weight_decay}"]
    shown = {"epochs", "batch_size", "lr", "momentum", "weight_decay", "eval_batch_size", "dtype"}
    shown |= {"model", "seed", "train_limit", "train_offset"}  # the table's own columns
    extras = {
        f.name: getattr(config, f.name) for f in fields(TrainConfig)
        if f.name not in shown and (f.name in given or getattr(config, f.name) != getattr(defaults, f.name))
    }  # fmt: skip
    parts += [f"{key} {value}" for key, value in sorted(extras.items()) if value not in (0, 0.0, False, "constant", {})]
    return ", ".join(parts)


def _config_label(experiment: ExperimentConfig) -> str:
    """The configuration file, named by its place in the package when it is a packaged one."""
    path = Path(experiment.path) if experiment.path is not None else None
    if path is None:
        return "(in memory)"
    if path.parent.name == "configs" and path.parent.parent.name == "numcnn":
        return f"numcnn/configs/{path.name}"
    return str(path)


def _spread_lines(errors_by_model: dict[str, list[float]]) -> list[str]:
    """Mean, sample standard deviation and range of each model's errors over seeds or subsets."""
    lines = []
    for model, errors in errors_by_model.items():
        if len(errors) < 2:
            continue
        mean, spread = statistics.mean(errors), statistics.stdev(errors)
        prefix = f"{model}: mean" if len(errors_by_model) > 1 else "Mean"
        lines.append(
            f"{prefix} test error {_percent(mean)}, sample standard deviation {_percent(spread)}, "
            f"range {_percent(min(errors))}–{_percent(max(errors))} (n = {len(errors)})."
        )
    return lines


def quick_profile_text(experiment: ExperimentConfig) -> str:
    """What a ``--quick`` run really trained and tested on, read from its runs (not from the notes,
    which describe the full experiment)."""
    runs = experiment.runs()
    sizes = ", ".join(f"{size:,}" for size in sorted({run.size for run in runs}))
    epochs = "/".join(str(epochs) for epochs in sorted({run.train_config().epochs for run in runs}))
    limits = {run.test_limit for run in runs}
    largest = max((limit for limit in limits if limit is not None), default=None)
    tested = "all test images" if None in limits or largest is None else f"the first {largest:,} test images"
    return (
        f"**Quick profile, a smoke test of the pipeline, not the experiment:** training sets of {sizes} examples, "
        f"{epochs} epoch(s), test error on {tested}. The notes below describe the full experiment."
    )


def markdown(experiment: ExperimentConfig, results: dict[str, dict[str, Any]], command: str = "") -> str:
    """The results as Markdown: one table per sweep, plus mean and spread where seeds or subsets vary.

    Columns: the test error after the last epoch (the exercise's figure), the mean test error of the
    last five epochs where the results carry it (:func:`with_recent_errors`), the training error as
    measured during the last epoch (in training mode: with dropout active), the training time."""
    lines = [f"# {experiment.title or experiment.name}", ""]
    if command:
        lines += [f"Produced by `{command}`.", ""]
    lines += [f"Configuration: `{_config_label(experiment)}`" + (" (quick profile)" if experiment.quick else ""), ""]
    if experiment.quick:  # the notes describe the full experiment; say what was really run
        lines += [quick_profile_text(experiment), ""]
    lines += [f"* {note}" for note in experiment.notes] + ([""] if experiment.notes else [])
    for sweep in experiment.sweeps:
        lines += [f"## {sweep.name}: {sweep.title}".rstrip(": "), ""]
        settings = {_settings_text(run) for run in sweep.runs}
        lines += [f"Training: {'; '.join(sorted(settings))}.", ""]
        header = (
            f"| model | train size | subset | seed | test error | last {RECENT_EPOCHS} epochs | train error | time |"
        )
        lines += [header]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
        errors_by_model: dict[str, list[float]] = {}
        for run in sweep.runs:
            result = results.get(run.run_id)
            if result is None:
                lines.append(f"| {run.model} | {run.size:,} | {run.subset} | {run.seed} | (not run) | | | |")
                continue
            errors_by_model.setdefault(run.model, []).append(result["test_error"])
            recent = result.get("test_error_last5")
            lines.append(
                f"| {run.model} | {run.size:,} | {run.subset} | {run.seed} | {_percent(result['test_error'])} "
                f"| {'' if recent is None else _percent(recent)} | {_percent(result['train_error'])} "
                f"| {result['seconds']:.0f} s |"
            )
        if set(sweep.varying) & {"seeds", "subsets"} and "sizes" not in sweep.varying:
            spread = _spread_lines(errors_by_model)
            lines += ["", *spread] if spread else []
        lines.append("")
    return "\n".join(lines)


def write_report(
    experiment: ExperimentConfig, results: dict[str, dict[str, Any]], out_dir: str | Path, command: str = ""
) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and the plots into ``out_dir``; return the files written."""
    out_dir = Path(out_dir)
    results = with_recent_errors(results, out_dir)
    written = [out_dir / "results.csv", out_dir / "results.md"]
    with open(written[0], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for sweep in experiment.sweeps:
            writer.writerows(sweep_rows(sweep, results))
    written[1].write_text(markdown(experiment, results, command), encoding="utf-8")
    try:
        import matplotlib
    except ImportError:
        return written
    matplotlib.use("Agg")
    for sweep in experiment.sweeps:
        for path in (_plot_sweep(sweep, results, out_dir), _plot_curves(sweep, results, out_dir)):
            if path is not None:
                written.append(path)
    return written


def _run_label(run: RunSpec, sweep: Sweep) -> str:
    parts = {
        "models": run.model, "sizes": f"n={run.size:,}", "subsets": f"subset {run.subset}", "seeds": f"seed {run.seed}",
    }  # fmt: skip
    return ", ".join(parts[axis] for axis in sweep.varying) or run.model


def _plain_log_ticks(axis) -> None:
    """Label a logarithmic axis 1, 2, 5 rather than 10⁰, 2×10⁰."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _plot_curves(sweep: Sweep, results: dict[str, dict[str, Any]], out_dir: Path) -> Path | None:
    """Test error after every epoch, one line per finished run of the sweep."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4))
    drawn = 0
    for run in sweep.runs:
        if run.run_id not in results:
            continue
        try:
            records = read_metrics(out_dir / "runs" / run.run_id)
        except DataError:
            continue  # a result without its metrics file (copied results): nothing to draw
        axes.plot([r["epoch"] for r in records], [100 * (1 - r["test_accuracy"]) for r in records],
                  marker=".", label=_run_label(run, sweep))  # fmt: skip
        drawn += 1
    if not drawn:
        plt.close(figure)
        return None
    axes.set(xlabel="epoch", ylabel="test error (%)", yscale="log", title=f"{sweep.name}: test error per epoch")
    _plain_log_ticks(axes.yaxis)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    path = out_dir / f"{sweep.name}_curves.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_sweep(sweep: Sweep, results: dict[str, dict[str, Any]], out_dir: Path) -> Path | None:
    """Test error against the sweep's axis: sizes as lines (log scale), seeds or subsets as bars with
    their mean, models as bars -- or, when models and seeds/subsets both vary, one dot per run."""
    import matplotlib.pyplot as plt

    axis = next((key for key in ("sizes", "seeds", "subsets", "models") if key in sweep.varying), None)
    finished = [(run, results[run.run_id]) for run in sweep.runs if run.run_id in results]
    if axis is None or not finished:
        return None
    if axis in ("seeds", "subsets") and "models" in sweep.varying:
        axis = "models"
    figure, axes = plt.subplots(figsize=(6.5, 4))
    if axis == "sizes":
        for model in dict.fromkeys(run.model for run, _ in finished):
            points = sorted((run.size, 100 * r["test_error"]) for run, r in finished if run.model == model)
            axes.plot(*zip(*points), "o-", label=model)
        # Log-log: a power law error ∝ n^(−a) is a straight line.
        axes.set(xscale="log", yscale="log", xlabel="training examples", ylabel="test error (%)")
        _plain_log_ticks(axes.yaxis)
        axes.legend()
    elif axis == "models":
        models = list(dict.fromkeys(run.model for run, _ in finished))
        for position, model in enumerate(models):
            errors = [100 * r["test_error"] for run, r in finished if run.model == model]
            axes.bar(position, sum(errors) / len(errors), color="tab:blue", alpha=0.5 if len(errors) > 1 else 1.0)
            if len(errors) > 1:  # every run as a dot over the bar of their mean
                axes.plot([position] * len(errors), errors, "o", color="black", markersize=4)
        axes.set_xticks(range(len(models)), models, rotation=30)
        axes.set(xlabel="model", ylabel="test error (%)")
    else:
        attribute = {"seeds": "seed", "subsets": "subset"}[axis]
        labels = [str(getattr(run, attribute)) for run, _ in finished]
        errors = [100 * r["test_error"] for _, r in finished]
        axes.bar(range(len(errors)), errors, color="tab:blue")
        axes.set_xticks(range(len(errors)), labels)
        mean = sum(errors) / len(errors)
        axes.axhline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.2f}%")
        axes.legend()
        axes.set(xlabel=attribute, ylabel="test error (%)")
    axes.grid(alpha=0.3)
    axes.set_title(textwrap.fill(f"{sweep.name}: {sweep.title}", 70), fontsize="medium")
    figure.tight_layout()
    path = out_dir / f"{sweep.name}_{PLOT_KINDS[axis]}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
