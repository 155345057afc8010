"""Reproducible experiment suites: sweeps over models × training-set size × subset × seed, declared
in TOML (:mod:`~numcnn.experiments.config`), run in parallel and resumably
(:mod:`~numcnn.experiments.runner`), reported as CSV, Markdown and plots
(:mod:`~numcnn.experiments.report`). ``numcnn experiment exercise_15_6`` runs seed 004's exercise 15.6.
"""

from numcnn.experiments.config import (
    ExperimentConfig,
    RunSpec,
    Sweep,
    load_experiment,
    packaged_configs,
    resolve_config_path,
)
from numcnn.experiments.report import markdown, write_report
from numcnn.experiments.runner import Outcome, execute_run, load_result, run_experiment

__all__ = [
    "ExperimentConfig",
    "Outcome",
    "RunSpec",
    "Sweep",
    "execute_run",
    "load_experiment",
    "load_result",
    "markdown",
    "packaged_configs",
    "resolve_config_path",
    "run_experiment",
    "write_report",
]
