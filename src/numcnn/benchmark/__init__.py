"""``numcnn bench``: training and inference speed of a registry model, side by side with PyTorch.

>>> from numcnn.benchmark import BenchConfig, run_benchmark, format_report
>>> print(format_report(run_benchmark(BenchConfig(batch_sizes=(64,), repeats=3))))  # doctest: +SKIP

See :mod:`numcnn.benchmark.runner` for what is timed and how.
"""

from numcnn.benchmark.report import format_report, format_table, summary
from numcnn.benchmark.runner import EPOCH_IMAGES, TEST_IMAGES, BenchConfig, BenchResult, Measurement, run_benchmark

__all__ = [
    "EPOCH_IMAGES",
    "TEST_IMAGES",
    "BenchConfig",
    "BenchResult",
    "Measurement",
    "format_report",
    "format_table",
    "run_benchmark",
    "summary",
]
