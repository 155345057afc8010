"""Plain-text report of a :class:`~numcnn.benchmark.runner.BenchResult` (what ``numcnn bench`` prints)."""

from __future__ import annotations

import statistics

from numcnn.benchmark.runner import EPOCH_IMAGES, BenchResult, Measurement

__all__ = ["format_report", "format_table", "summary"]


def summary(values: list[float], digits: int = 2) -> str:
    """``median (min–max)`` of a list of numbers."""
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _row(m: Measurement) -> str:
    unit = "train s/epoch" if m.task == "train" else "infer s/10k"
    rate = m.images / statistics.median(m.numcnn)
    text = f"{m.batch_size:>6}  {unit:<14} {summary(m.numcnn):>22} {rate:>10,.0f}"
    if m.torch:
        torch_rate = m.images / statistics.median(m.torch)
        text += f"  {summary(m.torch):>22} {torch_rate:>10,.0f}  {summary(m.ratios):>18}"
    if m.onnxruntime:
        text += f"  {summary(m.onnxruntime):>22}  {summary(m.onnxruntime_ratios):>18}"
    return text


def format_report(result: BenchResult) -> str:
    config = result.config
    (start, end) = result.load_average
    thread_text = ", ".join(f"{pool} {count}" for pool, count in result.threads.items())
    steps_text = "/".join(str(s) for s in result.steps.values())
    # With --no-torch PyTorch is neither imported nor timed, and the report does not mention it.
    interleaved = "numcnn and PyTorch interleaved; " if config.torch else ""
    notes = [note for note in (result.torch_note, result.onnxruntime_note) if note]
    lines = [
        f"numcnn bench: model {config.model}, backend {result.backend}, {config.dtype}, threads: {thread_text}",
        *notes,
        f"load average at start {start[0]:.2f}, at end {end[0]:.2f} (1-minute; timings are noisy above ~0.5)",
        f"train: SGD momentum {config.momentum:.2g}, lr {config.lr or 0:.2g}; each run times {steps_text} consecutive "
        f"steps, scaled to one epoch of {EPOCH_IMAGES:,} images",
        "infer: a full forward pass (eval mode) over 10,000 images; "
        f"{config.repeats} runs each, {interleaved}median (min–max)",
        "",
        f"{'batch':>6}  {'task':<14} {'numcnn s':>22} {'images/s':>10}"
        + (f"  {'PyTorch s':>22} {'images/s':>10}  {'numcnn/PyTorch':>18}" if result.measurements[0].torch else "")
        + (f"  {'ONNX Runtime s':>22}  {'numcnn/ORT':>18}" if any(m.onnxruntime for m in result.measurements) else ""),
    ]
    lines += [_row(m) for m in result.measurements]
    lines.append("")
    for batch, peak in result.peak_memory.items():
        lines.append(
            f"peak memory, batch {batch}: training step {peak['train_mib']:.1f} MiB, inference batch "
            f"{peak['infer_mib']:.1f} MiB (NumPy allocations traced by tracemalloc)"
        )
    lines.append(
        f"process peak RSS {result.max_rss_mib:.0f} MiB (getrusage ru_maxrss of numcnn's process: Python, NumPy"
        + (" and ONNX Runtime" if result.measurements[-1].onnxruntime else "")
        + ("; PyTorch runs in a process of its own)" if result.measurements[0].torch else ")")
    )
    if result.compile_seconds is not None:
        lines.append(
            f"numba first run (not in the timings above): compile {result.compile_seconds['compile_s']:.1f} s "
            f"with an empty cache, {result.compile_seconds['cache_load_s']:.2f} s to load the cache"
        )
    for batch, rows in result.profile.items():
        lines += ["", f"per-layer profile, batch {batch} (mean µs per training step):"]
        total = sum(f + b for _, f, b in rows)
        lines.append(f"  {'step':<28} {'forward':>9} {'backward':>9} {'share':>7}")
        for name, forward, backward in rows:
            lines.append(f"  {name:<28} {forward:>9.0f} {backward:>9.0f} {(forward + backward) / total:>7.1%}")
        lines.append(f"  {'total':<28} {total:>19.0f}")
    return "\n".join(lines)


def format_table(results: list[BenchResult]) -> str:
    """One table of several models' results (``numcnn bench --models a,b,...``): a row per model, batch and task.

    Every cell is median (min–max) over the repeated runs; the ratios are taken per pair of
    neighbouring (interleaved) runs. ``-`` where a baseline was not timed.
    """
    header = (
        f"{'model':<14} {'batch':>5}  {'task':<14} {'numcnn s':>20} {'PyTorch s':>20} {'numcnn/PyTorch':>18} "
        f"{'ONNX Runtime s':>20} {'numcnn/ORT':>18}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        for m in result.measurements:
            unit = "train s/epoch" if m.task == "train" else "infer s/10k"
            lines.append(
                f"{result.config.model:<14} {m.batch_size:>5}  {unit:<14} {summary(m.numcnn):>20} "
                f"{summary(m.torch):>20} {summary(m.ratios):>18} {summary(m.onnxruntime):>20} "
                f"{summary(m.onnxruntime_ratios):>18}"
            )
    notes = {line for result in results for line in (result.torch_note, result.onnxruntime_note) if line}
    loads = [load for result in results for load in result.load_average]
    lines += ["", *sorted(notes)]
    lines.append(
        f"load average (1-minute) from {min(load[0] for load in loads):.2f} to {max(load[0] for load in loads):.2f} "
        "during the runs; timings are noisy above ~0.5"
    )
    return "\n".join(lines)
