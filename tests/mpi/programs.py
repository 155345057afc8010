"""Programs that the MPI tests launch with ``mpiexec -n K python programs.py WHAT ARGS...`` -- every
rank runs the same program, as under a real launcher. Not a test module (pytest does not collect it).

The data is a small synthetic MNIST-shaped set, the same on every rank, so that no test needs the
MNIST files; ``synthetic(seed)`` is shared with the tests, which compute the one-process reference.
"""

from __future__ import annotations

import sys

from numcnn.data import SyntheticDigits, synthetic_digits


def synthetic(train: int = 240, test: int = 90, seed: int = 0) -> SyntheticDigits:
    """The data of every MPI test (numcnn.data.synthetic_digits)."""
    return synthetic_digits(train, test, seed)


def sweep(config: str, out: str) -> None:
    """``numcnn experiment CONFIG --executor mpi`` on the synthetic data."""
    from numcnn.experiments import load_experiment, run_experiment

    outcome = run_experiment(load_experiment(config), out, executor="mpi", dataset=synthetic(), threads_per_job=1)
    if not outcome.worker:
        print(f"finished {len(outcome.results)} failed {len(outcome.failures)}", flush=True)


def train(out: str, model: str, epochs: str, *flags: str) -> None:
    """Data-parallel training of ``model`` in float64 on the synthetic data (batch 25: uneven shards).

    Flags: ``sync-bn``; ``resume``; ``batch=K``; ``kill-rank-1-at-step=K`` / ``fail-rank-1-at-step=K``: rank 1
    dies by SIGKILL / raises an error before its K-th gradient allreduce (counted over the whole run)."""
    import os
    import signal

    from numcnn.distributed import abort_on_error, world
    from numcnn.distributed.trainer import DataParallel, fit_distributed
    from numcnn.train import TrainConfig

    options = dict(flag.partition("=")[::2] for flag in flags)
    current = world()
    fault = next((name for name in options if name.endswith("-rank-1-at-step")), None)
    if fault is not None and current.rank == 1:
        reduce_gradients, steps = DataParallel.reduce_gradients, [0]

        def faulty(self, model):
            steps[0] += 1
            if steps[0] == int(options[fault]):
                if fault.startswith("kill"):
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("injected failure")
            reduce_gradients(self, model)

        DataParallel.reduce_gradients = faulty
    config = TrainConfig(
        model=model, epochs=int(epochs), batch_size=int(options.get("batch", 25)), lr=0.05, momentum=0.9,
        dtype="float64", seed=3,
    )  # fmt: skip
    with abort_on_error(current):
        fit_distributed(
            config, synthetic(), out, current, resume="resume" in options, sync_bn="sync-bn" in options,
            show_progress=False,
        )  # fmt: skip


if __name__ == "__main__":
    {"sweep": sweep, "train": train}[sys.argv[1]](*sys.argv[2:])
