"""Time a short LeNet-5 training epoch with 1 and 2 numba threads, with and without a CPU hog beside it.

Each configuration runs ``numcnn train --epochs 1 --train-limit 6400 --threads T`` in a fresh
process (numba's threading layer and libgomp's waiting policy are fixed per process), interleaved
round by round so that a change in the machine's load hits every configuration alike. With
``--stress N``, ``stress-ng --cpu N`` runs beside every timed epoch. Prints the training seconds
printed by ``numcnn train`` as median (min–max), the load average before and after, and the ratio
of each configuration to ``--threads 1``.

    export NUMCNN_DATA=/path/to/folder/holding/mnist
    python benchmarks/threads_under_load.py --rounds 3             # beside whatever else runs
    python benchmarks/threads_under_load.py --rounds 3 --stress 1  # plus one busy CPU hog

Configurations (environment variables are numcnn's documented escape hatches):

* ``t1``: ``--threads 1``;
* ``t2``: ``--threads 2`` with numcnn's defaults (libgomp's workers sleep between kernels);
* ``t2-spin``: ``--threads 2`` with ``GOMP_SPINCOUNT=300000`` -- libgomp's own default spin, i.e.
  numcnn's behaviour before it chose a passive waiting policy;
* ``t2-spin10k``: ``--threads 2`` with ``GOMP_SPINCOUNT=10000`` (a short spin, then sleep);
* ``t2-workqueue``: ``--threads 2`` on numba's ``workqueue`` threading layer (never spins).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGURATIONS = {
    "t1": (1, {}),
    "t2": (2, {}),
    "t2-spin": (2, {"GOMP_SPINCOUNT": "300000"}),
    "t2-spin10k": (2, {"GOMP_SPINCOUNT": "10000"}),
    "t2-workqueue": (2, {"NUMBA_THREADING_LAYER": "workqueue"}),
}
EPOCH_SECONDS = re.compile(r"^epoch\s+1/1\s+train loss.*\s([0-9.]+)s\s*$", re.MULTILINE)


def numcnn_command() -> list[str]:
    script = Path(sys.executable).with_name("numcnn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "numcnn"]


def time_epoch(threads: int, environment: dict[str, str], train_limit: int, out: Path) -> float:
    env = {**os.environ, **environment}
    command = [
        *numcnn_command(), "train", "--epochs", "1", "--train-limit", str(train_limit), "--threads", str(threads),
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    match = EPOCH_SECONDS.search(result.stdout + result.stderr)
    if match is None:
        raise RuntimeError(f"no epoch time in the output of {' '.join(command)}:\n{result.stdout}{result.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=6400)
    parser.add_argument("--stress", type=int, default=0, help="CPU hogs (stress-ng --cpu N) beside each run")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="comma-separated names")
    args = parser.parse_args()
    names = [name.strip() for name in args.configurations.split(",")]
    if args.stress and shutil.which("stress-ng") is None:
        parser.error("--stress needs stress-ng on PATH")
    times: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()
    hog = None
    if args.stress:
        hog = subprocess.Popen(["stress-ng", "--cpu", str(args.stress), "--quiet"], stdout=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_number in range(args.rounds):
                for index, name in enumerate(names):
                    threads, environment = CONFIGURATIONS[name]
                    out = Path(folder) / f"{round_number}-{index}"
                    times[name].append(time_epoch(threads, environment, args.train_limit, out))
    finally:
        if hog is not None:
            hog.terminate()
            hog.wait()
    load_after = os.getloadavg()
    print(f"cpus {os.cpu_count()}, stress-ng --cpu {args.stress}, rounds {args.rounds}, "
          f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")  # fmt: skip
    baseline = statistics.median(times[names[0]])
    for name in names:
        values = times[name]
        ratios = [value / baseline for value in values]
        print(
            f"{name:14s} {statistics.median(values):5.1f} s ({min(values):.1f}–{max(values):.1f})   "
            f"× {names[0]}: {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
