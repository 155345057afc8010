"""Running an experiment's runs: in parallel worker processes, resumable, one directory per run.

Layout of the output folder::

    OUT/runs/<run_id>/run.json       what the run is (model, size, subset, seed, training settings)
    OUT/runs/<run_id>/model.npz      the trainer's checkpoint after every epoch (numcnn.train.fit)
    OUT/runs/<run_id>/metrics.jsonl  one line per epoch
    OUT/runs/<run_id>/train.log      the trainer's log lines
    OUT/runs/<run_id>/result.json    written last: the run is finished

A finished run (``result.json`` present) is skipped; an unfinished one with a checkpoint resumes from
its last finished epoch, so a killed sweep continues where it stopped and loses at most one epoch
per run. Each worker is a fresh ``spawn``-ed interpreter whose BLAS (and Numba) thread pools are
capped, so ``--jobs N`` workers with ``T`` threads each never ask for more than ``N·T`` cores.

``executor="mpi"`` hands the runs to MPI processes instead (:mod:`numcnn.distributed.sweep`, e.g.
``mpiexec -n 3 numcnn experiment CONFIG --executor mpi``); the workers run the same
:func:`execute_run`, so the folders and files are the same as with the local pool.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from numcnn.errors import ConfigurationError, NumcnnError, one_line
from numcnn.experiments.config import RESULT_NEUTRAL, ExperimentConfig, RunSpec
from numcnn.train import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    TrainConfig,
    configure_compute,
    evaluate,
    fit,
    load_data,
    make_loss,
    prepare_split,
    read_metrics,
)

__all__ = ["RESULT_NAME", "EXECUTORS", "Outcome", "run_experiment", "execute_run", "load_result", "estimated_cost"]

RESULT_NAME = "result.json"
RUN_NAME = "run.json"

# Per-process state of a worker (set by _init_worker): the data set.
_WORKER: dict[str, Any] = {}


def run_dir(out_dir: Path, run: RunSpec) -> Path:
    return Path(out_dir) / "runs" / run.run_id


def load_result(out_dir: Path, run: RunSpec) -> dict[str, Any] | None:
    """The finished run's result, or None if it has not finished -- or was made with other settings
    (e.g. a model's recommended training settings changed since), which :func:`execute_run` reports."""
    folder = run_dir(out_dir, run)
    path, described = folder / RESULT_NAME, folder / RUN_NAME
    if not path.is_file():
        return None
    if described.is_file() and not _same_run(json.loads(described.read_text(encoding="utf-8")), run.describe()):
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _forward_flops(model: str) -> int:
    from numcnn.summary import summarize

    return summarize(model).flops


def estimated_cost(run: RunSpec) -> float:
    """Relative cost of a run (forward FLOPs × examples × epochs), to start the longest runs first."""
    return _forward_flops(run.model) * run.size * run.train_config().epochs


@dataclass
class Outcome:
    """What :func:`run_experiment` leaves: results of finished runs and messages of failed ones, by run id.

    ``worker`` is true in an MPI worker process (a rank other than 0): it served runs, and the
    results are rank 0's to report."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    worker: bool = False


# -- inside a worker ----------------------------------------------------------------------------


def _init_worker(threads: int, backend: str | None, data_dir: str | None, dataset: Any) -> None:
    """In a spawned worker: choose the kernels, cap their threads, load the data once.

    A numcnn error here (e.g. a data file that went bad) is kept and reported by every run of the
    worker: an exception escaping an initializer would break the pool with a traceback."""
    # numba sizes its thread pool when it is first imported, which happens lazily, after this.
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    try:
        configure_compute(backend, threads)
        _WORKER["data"] = load_data(data_dir, download=False, dataset=dataset)
    except NumcnnError as error:
        _WORKER["error"] = one_line(error)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write atomically: a killed process leaves the old file or the new one, never half of one."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _same_run(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a stored ``run.json`` describes ``current``, ignoring result-neutral settings. A training
    setting the stored file lacks (numcnn gained it later) counts as that setting's default, which is
    what the run used."""
    current = json.loads(json.dumps(current))  # tuples become lists, as in the stored file
    if {k: v for k, v in saved.items() if k != "train"} != {k: v for k, v in current.items() if k != "train"}:
        return False
    defaults = json.loads(json.dumps(asdict(TrainConfig(model=current["model"]))))
    stored = saved.get("train", {})
    return all(
        stored.get(key, defaults.get(key)) == value
        for key, value in current["train"].items()
        if key not in RESULT_NEUTRAL
    )


def execute_run(run: RunSpec, out_dir: str | Path, data: Any = None) -> dict[str, Any]:
    """Train (or finish training) one run and write its ``result.json``; returns the result.

    ``data`` defaults to the worker's data set. Runs in the calling process; the pool calls it in workers.
    """
    data = _WORKER.get("data") if data is None else data
    if data is None:
        raise ConfigurationError("execute_run needs a data set (or a worker initialised with one)")
    if run.test_limit is not None:
        data = SimpleNamespace(
            train_images=data.train_images, train_labels=data.train_labels,
            test_images=data.test_images[: run.test_limit], test_labels=data.test_labels[: run.test_limit],
        )  # fmt: skip
    folder = run_dir(Path(out_dir), run)
    folder.mkdir(parents=True, exist_ok=True)
    description = run.describe()
    described = folder / RUN_NAME
    if described.is_file():
        saved = json.loads(described.read_text(encoding="utf-8"))
        if not _same_run(saved, description):
            raise ConfigurationError(f"{folder} holds a run with different settings; use another --out folder")
    _write_json(described, description)

    config = run.train_config()
    started = time.perf_counter()
    with open(folder / "train.log", "a", encoding="utf-8") as log_file:

        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        final = _final_metrics_if_complete(folder, config, data, log)
        if final is None:
            resume = (folder / CHECKPOINT_NAME).is_file()
            # The folder is this run's own (run.json, train.log): without a checkpoint, start afresh.
            history = fit(config, data, folder, resume=resume, overwrite=not resume, log=log, show_progress=False)
            if history.final is None:
                raise NumcnnError(f"{folder}: the run ended without finishing an epoch")
            final = asdict(history.final)
    records = read_metrics(folder)
    result = {
        "run_id": run.run_id, "model": run.model, "train_size": run.size, "subset": run.subset,
        "train_offset": run.offset, "seed": run.seed, "epochs": final["epoch"],
        "test_error": 1.0 - final["test_accuracy"], "test_loss": final["test_loss"],
        "train_error": 1.0 - final["train_accuracy"], "train_loss": final["train_loss"],
        "test_images": len(data.test_labels),
        "seconds": sum(r.get("seconds", 0.0) + r.get("eval_seconds", 0.0) for r in records),
        "wall_seconds_this_call": time.perf_counter() - started,
    }  # fmt: skip
    _write_json(folder / RESULT_NAME, result)
    return result


def _final_metrics_if_complete(folder: Path, config, data, log: Callable[[str], None]) -> dict[str, Any] | None:
    """If the checkpoint already holds every epoch (the process died just before writing the
    result), the final metrics without training: from ``metrics.jsonl``, or by evaluating."""
    if config.early_stopping or not (folder / CHECKPOINT_NAME).is_file():
        return None  # early stopping's final metrics come from fit, which restores the best weights
    from numcnn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(folder / CHECKPOINT_NAME)
    if int(checkpoint.meta.get("epoch", 0)) < config.epochs:
        return None
    records = read_metrics(folder) if (folder / METRICS_NAME).is_file() else []
    if records and records[-1]["epoch"] == config.epochs:
        return records[-1]
    log("the checkpoint holds every epoch but its metrics line is missing: evaluating it")
    spec, model = checkpoint.spec, checkpoint.model
    test = prepare_split(spec, data.test_images, data.test_labels, config.dtype)
    test_loss, test_accuracy = evaluate(model, make_loss(spec), spec, test, config.eval_batch_size)
    return {"epoch": config.epochs, "test_loss": test_loss, "test_accuracy": test_accuracy,
            "train_loss": float("nan"), "train_accuracy": float("nan")}  # fmt: skip


def _worker_run(run: RunSpec, out_dir: str) -> dict[str, Any]:
    """Pool entry point: numcnn's own errors come back as a result marked failed, not a traceback."""
    if "error" in _WORKER:
        return {"run_id": run.run_id, "failed": _WORKER["error"]}
    try:
        return execute_run(run, out_dir)
    except NumcnnError as error:
        return {"run_id": run.run_id, "failed": one_line(error)}


# -- the parent process ---------------------------------------------------------------------------


EXECUTORS = ("local", "mpi")


def run_experiment(
    experiment: ExperimentConfig,
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    threads_per_job: int | None = None,
    backend: str | None = None,
    data_dir: str | Path | None = None,
    dataset: Any = None,
    executor: str = "local",
    log: Callable[[str], None] = print,
) -> Outcome:
    """Run every unfinished run of ``experiment`` into ``out_dir``; return the results by run id.

    A run that fails with a numcnn error (e.g. a subset beyond the data) is reported and the others
    go on; it appears in :attr:`Outcome.failures`.

    Args:
        jobs: worker processes (default 1; 1 with the local executor: run in this process, no pool).
            With ``executor="mpi"`` under ``mpiexec -n K`` the launcher sets the workers (K - 1).
        threads_per_job: kernel threads per worker (numcnn.kernels.threads; default: the CPU count
            divided by the workers on this machine; in this process: its current setting).
        backend: kernel backend for every run (numcnn.kernels; default: the current one).
        data_dir: where workers find MNIST (default: numcnn's search path, never downloading).
        dataset: an in-memory data set (an object with MNIST's four arrays) instead of MNIST.
        executor: ``"local"`` (this machine's process pool) or ``"mpi"`` (:mod:`numcnn.distributed.sweep`).
    """
    if executor not in EXECUTORS:
        raise ConfigurationError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if jobs is not None and jobs < 1:
        raise ConfigurationError(f"--jobs must be >= 1, got {jobs}")
    if executor == "mpi":
        return _run_on_mpi(experiment, Path(out_dir), jobs, threads_per_job, backend, data_dir, dataset, log)
    jobs = jobs or 1
    threads = threads_per_job or (None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs))
    sweep = _Sweep(experiment, Path(out_dir), log)
    sweep.announce(f"{jobs} worker(s) × {threads or 'default'} thread(s)")
    if jobs == 1:
        configure_compute(backend, threads)  # like 'numcnn train --threads': for this process
        _WORKER["data"] = load_data(data_dir, download=False, dataset=dataset)
        try:
            for run in sweep.pending:
                sweep.record(run, _worker_run(run, str(out_dir)))
        finally:
            _WORKER.clear()
        return sweep.outcome
    initargs = _worker_setup(threads, backend, data_dir, dataset)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
        sweep.run_in(pool)
    return sweep.outcome


def _worker_setup(threads: int | None, backend: str | None, data_dir: str | Path | None, dataset: Any) -> tuple:
    """The arguments of :func:`_init_worker`, checked here: a missing data set or backend is one
    error in the parent, not a broken pool."""
    if backend is not None:
        from numcnn import kernels

        kernels.get_backend(backend)
    if dataset is None:
        from numcnn.data import locate_mnist

        data_dir = locate_mnist(data_dir)
    else:  # a plain namespace pickles into spawned workers whatever class it was
        dataset = SimpleNamespace(**{key: getattr(dataset, key) for key in
                                     ("train_images", "train_labels", "test_images", "test_labels")})  # fmt: skip
    return threads, backend, None if data_dir is None else str(data_dir), dataset


def _run_on_mpi(experiment, out_dir: Path, jobs, threads_per_job, backend, data_dir, dataset, log) -> Outcome:
    """The sweep on MPI processes. Rank 0 alone reads and writes the sweep's files; every rank checks
    the settings first, so that a bad setting stops all of them alike."""
    from numcnn.distributed.sweep import mpi_pool, sweep_world

    current = sweep_world(jobs)
    workers = current.size - 1 if current.size > 1 else (jobs or 1)
    # The workers of one machine share its cores (with more hosts, pass --threads-per-job).
    threads = threads_per_job or max(1, (os.cpu_count() or 1) // workers)
    initargs = _worker_setup(threads, backend, data_dir, dataset)
    with mpi_pool(current, jobs, _init_worker, initargs) as pool:
        if pool is None:
            return Outcome(worker=True)
        sweep = _Sweep(experiment, out_dir, log)
        sweep.announce(f"{workers} MPI worker(s) × {threads} thread(s)")
        sweep.run_in(pool)
        return sweep.outcome


class _Sweep:
    """The parent's side of a sweep: what is finished, what to run (longest first), what came back."""

    def __init__(self, experiment: ExperimentConfig, out_dir: Path, log: Callable[[str], None]) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.experiment, self.out_dir, self.log = experiment, out_dir, log
        self.runs = experiment.runs()
        self.outcome = Outcome()
        self.outcome.results.update(
            {run.run_id: result for run in self.runs if (result := load_result(out_dir, run)) is not None}
        )
        unfinished = (run for run in self.runs if run.run_id not in self.outcome.results)
        self.pending = sorted(unfinished, key=estimated_cost, reverse=True)

    def announce(self, workers: str) -> None:
        self.log(
            f"{self.experiment.name}: {len(self.runs)} runs, {len(self.outcome.results)} already finished, "
            f"{len(self.pending)} to run with {workers} into {self.out_dir}"
        )

    def record(self, run: RunSpec, result: dict[str, Any]) -> None:
        results, failures = self.outcome.results, self.outcome.failures
        done = len(results) + len(failures) + 1
        if "failed" in result:
            failures[run.run_id] = result["failed"]
            self.log(f"[{done}/{len(self.runs)}] {run.run_id}: FAILED: {result['failed']}")
            return
        results[run.run_id] = result
        self.log(
            f"[{done}/{len(self.runs)}] {run.run_id}: test error {result['test_error']:.2%} ({result['seconds']:.0f} s)"
        )

    def run_in(self, pool: Executor) -> None:
        """Submit every pending run to ``pool`` and record the results as they come back."""
        futures: dict[Future, RunSpec] = {pool.submit(_worker_run, run, str(self.out_dir)): run for run in self.pending}
        try:
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    self.record(futures.pop(future), future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
