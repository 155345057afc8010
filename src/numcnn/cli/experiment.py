"""``numcnn experiment CONFIG``: run an experiment suite (:mod:`numcnn.experiments`) and report it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from numcnn.cli.arguments import BACKEND_CHOICES, positive_int
from numcnn.errors import NumcnnError

__all__ = ["register"]


def register(subparsers) -> None:
    experiment = subparsers.add_parser(
        "experiment",
        help="run a sweep of training runs from a TOML file (e.g. exercise_15_6) and tabulate it",
        description=(
            "Run every run of an experiment file (a path, or a packaged name such as exercise_15_6) in "
            "parallel worker processes; finished runs are skipped and unfinished ones resume, so a "
            "killed sweep continues. Writes results.csv, results.md and plots into --out."
        ),
    )
    experiment.add_argument("config", help="experiment TOML file, or the name of a packaged one")
    experiment.add_argument(
        "--jobs", type=positive_int, default=1, help="worker processes (default 1: in this process)"
    )
    experiment.add_argument(
        "--threads-per-job", type=positive_int, default=None, help="kernel threads per worker (default: cores / jobs)"
    )
    experiment.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=None,
        help="kernels for every run (default: $NUMCNN_BACKEND, else auto)",
    )  # fmt: skip
    experiment.add_argument("--out", type=Path, default=None, help="output folder (default: runs/experiments/NAME)")
    experiment.add_argument("--quick", action="store_true", help="the config's quick profile: tiny sizes, 1 epoch")
    experiment.add_argument("--dry-run", action="store_true", help="list the runs and their state, train nothing")
    experiment.add_argument(
        "--data-dir", type=Path, default=None, help="folder with MNIST (default: $NUMCNN_DATA, then the cache)"
    )
    experiment.set_defaults(handler=run_experiment_command)


def run_experiment_command(args) -> int:
    from numcnn.experiments import load_experiment, load_result, run_experiment, write_report

    experiment = load_experiment(args.config, quick=args.quick)
    out = args.out or Path("runs") / "experiments" / (experiment.name + ("-quick" if args.quick else ""))
    if args.dry_run:
        for run in experiment.runs():
            state = "finished" if load_result(out, run) is not None else "to run"
            print(f"{run.run_id:<48} offset {run.offset:>6}  {state}")
        return 0
    command = "numcnn " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["experiment"] else ""
    outcome = run_experiment(
        experiment, out, jobs=args.jobs, threads_per_job=args.threads_per_job, backend=args.backend,
        data_dir=args.data_dir,
    )  # fmt: skip
    for path in write_report(experiment, outcome.results, out, command=command):
        print(f"wrote {path}")
    if outcome.failures:
        raise NumcnnError(f"{len(outcome.failures)} run(s) failed; see the log lines above and the runs' train.log")
    return 0
