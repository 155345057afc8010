"""Reliability of ``numcnn train`` checkpoints under ``kill -9`` and a full disk.

Kill test: one uninterrupted reference run, then ``--kills`` runs of the same command, each killed
with SIGKILL at a random moment and resumed with ``--resume`` (or restarted with ``--overwrite``
when it died before its first checkpoint). For every kill it asserts that

* ``model.npz`` (and ``model.prev.npz``) is readable whenever it exists,
* the work lost -- steps finished before the kill minus the steps in the checkpoint -- is at most
  one checkpoint interval (``--checkpoint-every``),
* the resumed run's final weights equal the reference run's (``np.array_equal``) and its
  ``metrics.jsonl`` lists the same epochs with the same losses and accuracies.

Full-disk test: after a good first epoch, the run continues on a disk that cannot take another
checkpoint -- a small tmpfs when this process may mount one (root), else a file-size limit
(``RLIMIT_FSIZE``, the same failed ``write``) -- and must stop with a one-line error, leaving the
previous checkpoint byte for byte.

Run it from the repository root::

    python benchmarks/kill_resume.py --kills 10                    # real MNIST ($NUMCNN_DATA)
    python benchmarks/kill_resume.py --kills 10 --synthetic        # no MNIST needed

The workers use the NumPy backend with one thread, so that every run computes the same numbers.
``tests/test_kill_resume.py`` runs a small version (2 kills, synthetic data).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS_FILE = "steps.log"  # the worker's record of finished steps (one line per step)


# -- the worker: 'numcnn train' with synthetic data and a step counter ------------------------------
def worker(argv: list[str], synthetic: bool, steps_file: Path | None, file_limit: int | None) -> int:
    """Run ``numcnn train ARGV``; append a line to ``steps_file`` after every finished step."""
    from numcnn import train
    from numcnn.cli import main

    if synthetic:
        import numcnn.cli.training as training
        from numcnn.data import synthetic_digits

        data = synthetic_digits(train=2000, test=500)
        training.load_data = lambda args: data
    if steps_file is not None:
        check = train.nonfinite
        descriptor = os.open(steps_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        def counted(value, params):  # called once per step, after the update, before any checkpoint
            problem = check(value, params)
            os.write(descriptor, b".\n")
            return problem

        train.nonfinite = counted
    if file_limit is not None:  # a disk that takes no file larger than this: writes fail with EFBIG
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    return main(argv)


# -- the parent ---------------------------------------------------------------------------------------
def train_command(args, out: Path, *extra: str, steps_file: Path | None = None, file_limit: int | None = None):
    command = [sys.executable, os.path.abspath(__file__), "--worker"]
    if args.synthetic:
        command.append("--synthetic")
    if steps_file is not None:
        command += ["--steps-file", str(steps_file)]
    if file_limit is not None:
        command += ["--file-limit", str(file_limit)]
    command += [
        "--", "train", "--model", args.model, "--epochs", str(args.epochs), "--train-limit", str(args.train_limit),
        "--batch-size", str(args.batch_size), "--dtype", "float64", "--seed", str(args.seed),
        "--checkpoint-every", str(args.checkpoint_every), "--backend", "numpy", "--threads", "1",
        "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip
    if args.data_dir:
        command += ["--data-dir", args.data_dir, "--no-download"]
    return command


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def final_state(out: Path) -> dict[str, np.ndarray]:
    from numcnn.checkpoint import load_checkpoint

    return load_checkpoint(out / "model.npz").model.state_dict()


def metrics_without_time(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in record.items() if "seconds" not in k} for record in records]


def checkpoint_steps(out: Path, steps_per_epoch: int) -> int | None:
    """Training steps contained in ``out/model.npz`` (None: no checkpoint); raises if it is unreadable."""
    from numcnn.checkpoint import load_checkpoint, previous_path

    path = out / "model.npz"
    if previous_path(path).exists():
        load_checkpoint(previous_path(path))  # must be readable too
    if not path.exists():
        return None
    meta = load_checkpoint(path).meta
    position = meta.get("position")
    if position:
        return (position["epoch"] - 1) * steps_per_epoch + position["step"]
    return int(meta["epoch"]) * steps_per_epoch


def kill_test(args, work: Path, log=print) -> dict:
    steps_per_epoch = -(-args.train_limit // args.batch_size)
    reference = work / "reference"
    started = time.perf_counter()
    done = run(train_command(args, reference))
    duration = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{done.stderr}")
    expected, expected_metrics = final_state(reference), metrics_without_time(reference)
    log(f"reference run: {duration:.1f} s, {args.epochs * steps_per_epoch} steps")

    chooser = random.Random(args.seed)
    counts = {
        "kills": 0, "before_first_checkpoint": 0, "readable": 0, "equal_weights": 0, "max_steps_lost": 0,
        "finished_before_the_kill": 0,
    }  # fmt: skip
    attempt = 0
    while counts["kills"] < args.kills:
        kill, attempt = counts["kills"], attempt + 1
        if attempt > 3 * args.kills:
            raise SystemExit("too many runs finished before their kill (the machine got faster?); use more steps")
        out, steps_file = work / f"kill{kill}", work / f"kill{kill}.steps"
        shutil.rmtree(out, ignore_errors=True)
        steps_file.unlink(missing_ok=True)
        process = subprocess.Popen(
            train_command(args, out, steps_file=steps_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        delay = chooser.uniform(0.2, 0.95 * duration)  # the machine's load varies: stay inside the run
        launched = time.perf_counter()
        try:
            process.wait(timeout=delay)
            counts["finished_before_the_kill"] += 1  # not a kill: draw another moment, in a shorter run
            duration = min(duration, time.perf_counter() - launched)
            continue
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        counts["kills"] += 1
        finished = len(steps_file.read_text().splitlines()) if steps_file.exists() else 0
        saved = checkpoint_steps(out, steps_per_epoch)  # raises if a checkpoint is unreadable
        counts["readable"] += 1
        lost = finished - (saved or 0)
        counts["max_steps_lost"] = max(counts["max_steps_lost"], lost)
        if lost > args.checkpoint_every:
            raise SystemExit(f"kill {kill}: {lost} steps lost, more than the interval {args.checkpoint_every}")
        total = args.epochs * steps_per_epoch
        if saved is None:
            counts["before_first_checkpoint"] += 1
            resumed = run(train_command(args, out, "--overwrite"))
        else:
            resumed = run(train_command(args, out, "--resume"))
        if saved == total:  # killed after the last checkpoint (evaluation, plotting): nothing to resume
            counts["after_the_last_checkpoint"] = counts.get("after_the_last_checkpoint", 0) + 1
            if "already holds" not in resumed.stderr:
                raise SystemExit(f"kill {kill}: resuming a finished run: {resumed.stderr.strip()}")
        elif resumed.returncode != 0:
            raise SystemExit(f"kill {kill}: the resumed run failed: {resumed.stderr.strip()}")
        state = final_state(out)
        if not all(np.array_equal(state[name], expected[name]) for name in expected):
            raise SystemExit(f"kill {kill}: the resumed run's final weights differ from the reference run's")
        if metrics_without_time(out) != expected_metrics:
            raise SystemExit(f"kill {kill}: the resumed run's metrics differ from the reference run's")
        counts["equal_weights"] += 1
        where = "before the first checkpoint" if saved is None else f"checkpoint at step {saved}"
        log(
            f"kill {kill + 1}/{args.kills} at {delay:.1f} s: {finished} steps done, {where}, {lost} lost; "
            "resumed: equal"
        )
        shutil.rmtree(out)
    return counts


def full_disk_test(args, work: Path, log=print) -> dict:
    """A good first epoch, then a disk too small for the next checkpoint: the first one must survive."""
    from numcnn.checkpoint import load_checkpoint

    out = work / "disk" / "run"
    mounted = False
    (work / "disk").mkdir()
    first = train_command(args, out)
    first[first.index("--epochs") + 1] = "1"
    if run(first).returncode != 0:
        raise SystemExit("full-disk test: the first epoch failed")
    size = (out / "model.npz").stat().st_size
    good = (out / "model.npz").read_bytes()
    if os.geteuid() == 0 and shutil.which("mount"):
        # Copy the run onto a tmpfs with room for the files and half a checkpoint more.
        shutil.move(str(out), str(work / "saved"))
        used = sum(path.stat().st_size for path in (work / "saved").iterdir())
        mounted = (
            run(["mount", "-t", "tmpfs", "-o", f"size={used + size // 2}", "tmpfs", str(work / "disk")]).returncode == 0
        )
        shutil.copytree(work / "saved", out)
    try:
        if mounted:
            result = run(train_command(args, out, "--resume"))
            how = f"tmpfs of {used + size // 2:,} bytes (ENOSPC)"
        else:
            result = run(train_command(args, out, "--resume", file_limit=size // 2))
            how = f"RLIMIT_FSIZE of {size // 2:,} bytes (EFBIG)"
        lines = result.stderr.strip().splitlines()
        if result.returncode == 0 or len(lines) != 1 or not lines[0].startswith("numcnn: error: "):
            raise SystemExit(f"full-disk test: expected a one-line error, got {result.returncode}: {result.stderr}")
        if (out / "model.npz").read_bytes() != good:
            raise SystemExit("full-disk test: the previous checkpoint changed")
        load_checkpoint(out / "model.npz")
        leftovers = [path.name for path in out.iterdir() if path.name.endswith(".tmp")]
        if leftovers:
            raise SystemExit(f"full-disk test: temporary files left behind: {leftovers}")
        log(f"full disk ({how}): '{lines[0]}'; the previous checkpoint is intact")
        return {"full_disk": how, "message": lines[0]}
    finally:
        if mounted:
            run(["umount", str(work / "disk")])


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=1280)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the training seed and the kill moments' seed")
    parser.add_argument("--synthetic", action="store_true", help="synthetic digits instead of MNIST")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $NUMCNN_DATA)")
    parser.add_argument("--no-full-disk", action="store_true", help="skip the full-disk test")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--file-limit", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, log=print) -> dict:
    """Both tests; the counts (a failed check raises SystemExit with its reason)."""
    work = args.work or Path(tempfile.mkdtemp(prefix="numcnn-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        counts = kill_test(args, work, log)
        if not args.no_full_disk:
            counts.update(full_disk_test(args, work, log))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.worker:
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        return worker(rest, args.synthetic, args.steps_file, args.file_limit)
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
