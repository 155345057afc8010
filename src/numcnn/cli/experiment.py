"""``numcnn experiment CONFIG``: run an experiment suite (:mod:`numcnn.experiments`) and report it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from numcnn.cli.arguments import BACKEND_CHOICES, positive_int
from numcnn.errors import NumcnnError
from numcnn.experiments.runner import EXECUTORS

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
        "--jobs", type=positive_int, default=None,
        help="worker processes (default 1: in this process; under 'mpiexec -n K' the launcher's K-1 workers)",
    )  # fmt: skip
    experiment.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="local: a process pool on this machine; mpi: MPI processes, e.g. "
        "'mpiexec -n 3 numcnn experiment CONFIG --executor mpi' (docs/distributed.md)",
    )  # fmt: skip
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
    if args.executor != "mpi":
        return _run(args)
    from numcnn.distributed import abort_on_error, world

    current = world()
    with abort_on_error(current):  # an error on one rank ends every rank: no process waits for ever
        if args.dry_run and not current.is_root:
            return 0
        return _run(args)


def _run(args) -> int:
    from numcnn.experiments import load_experiment, load_result, run_experiment, write_report

    experiment = load_experiment(args.config, quick=args.quick)
    out = args.out or Path("runs") / "experiments" / (experiment.name + ("-quick" if args.quick else ""))
    if out.exists() and not out.is_dir():
        raise NumcnnError(f"--out {out}: is a file, not a folder for the experiment's runs")
    if args.dry_run:
        for run in experiment.runs():
            state = "finished" if load_result(out, run) is not None else "to run"
            print(f"{run.run_id:<48} offset {run.offset:>6}  {state}")
        return 0
    command = "numcnn " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["experiment"] else ""
    outcome = run_experiment(
        experiment, out, jobs=args.jobs, threads_per_job=args.threads_per_job, backend=args.backend,
        data_dir=args.data_dir, executor=args.executor,
    )  # fmt: skip
    if outcome.worker:  # an MPI worker rank: rank 0 writes the report
        return 0
    for path in write_report(experiment, outcome.results, out, command=command):
        print(f"wrote {path}")
    if outcome.failures:
        raise NumcnnError(f"{len(outcome.failures)} run(s) failed; see the log lines above and the runs' train.log")
    return 0
