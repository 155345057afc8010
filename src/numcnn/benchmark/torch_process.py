"""PyTorch's side of ``numcnn bench`` in a process of its own, as a PyTorch user runs it.

Why a second process: PyTorch's wheel and numba's ``omp`` threading layer load the same GNU
libgomp, and libgomp reads its waiting policy once, when it is loaded. numcnn chooses
``OMP_WAIT_POLICY=passive`` for its kernels (:mod:`numcnn.kernels.threads`); in one process
PyTorch inherited that choice, and each of its parallel regions paid for waking its sleeping
workers (a parallel region: 14.5 µs passive against 3 µs spinning, on the Xeon of
docs/performance.md). Timed alone, back to back, 8 processes each (medians), PyTorch's LeNet-5
step took 7.5 ms with numcnn's policy and 5.5 ms with libgomp's default, BN's 26.8 and 24.1 ms.
Interleaved with numcnn's runs, as the benchmark times it, the difference was within the
machine's noise (own process against numcnn's: 1.10 and 0.92 of the time for LeNet-5, 1.07 for
BN, in three runs of 7–20 rounds); the comparison should not depend on numcnn's choice either
way. Here PyTorch runs in a child process whose environment lacks what numcnn set (the user's own
settings pass on), so it waits the way it waits anywhere else.

The parent sends the batches once (pickled through a pipe) and then asks for runs; the child
times each run itself, so the pipe is not timed. Runs still alternate with numcnn's: while one
side runs, the other waits on the pipe. After each run the child waits :data:`SETTLE_SECONDS`
(untimed) before it answers: libgomp's default lets PyTorch's idle workers spin for a while after
their last parallel region (about 5 ms of a core after each LeNet-5 run here, read from the child's
CPU time), and numcnn's run that follows should not share the cores with them. (numcnn's own
workers sleep at once, and ONNX Runtime's session stops its spinning when a run returns.)

Protocol (pickled tuples; every reply is ``("ok", value)`` or ``("error", message)``):
``("start", model, spec name, lr, momentum, threads)`` → ``(torch version, threads)``;
``("load", key, batches)``; ``("train", key)`` / ``("infer", key)`` → seconds;
``("environ", name)`` → that variable in the child; ``("stop",)``.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
import tempfile
import time
from typing import Any, BinaryIO

from numcnn.errors import ConfigurationError

__all__ = ["TorchProcess", "SETTLE_SECONDS"]

#: Seconds the child lets pass after a timed run before it answers (see the module docstring).
SETTLE_SECONDS = 0.02


class TorchProcess:
    """A :class:`~numcnn.benchmark.torch_baseline.TorchRunner` in a child process (see the module docstring)."""

    def __init__(self, spec, numcnn_model, lr: float, momentum: float, threads: int) -> None:
        from numcnn.kernels.threads import environment_without_own_settings

        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 -- the child's stderr, open while it lives
        self._process = subprocess.Popen(
            [sys.executable, "-m", "numcnn.benchmark.torch_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env=environment_without_own_settings(),
        )  # fmt: skip
        try:
            self.version, self.thread_count = self._call("start", numcnn_model, spec.name, lr, momentum, threads)
        except BaseException:
            self.close()
            raise

    def _call(self, *message: Any) -> Any:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            pickle.dump(message, stdin, protocol=pickle.HIGHEST_PROTOCOL)
            stdin.flush()
            status, value = pickle.load(stdout)
        except (BrokenPipeError, EOFError) as error:
            raise ConfigurationError(f"PyTorch's benchmark process ended: {self._last_error()}") from error
        if status != "ok":
            raise ConfigurationError(f"PyTorch's benchmark process failed: {value}")
        return value

    def _last_error(self) -> str:
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self._process.poll()}"

    def load(self, key: str, batches: list) -> None:
        """Send ``batches`` (``(images, labels)`` NumPy pairs) once; runs refer to them by ``key``."""
        self._call("load", key, batches)

    def train_seconds(self, key: str) -> float:
        """Seconds of PyTorch training steps over the batches of ``key``, timed in the child."""
        return float(self._call("train", key))

    def infer_seconds(self, key: str) -> float:
        """Seconds of PyTorch's inference (eval mode, no gradients) over the batches of ``key``."""
        return float(self._call("infer", key))

    def child_environ(self, name: str) -> str | None:
        """Environment variable ``name`` as the child sees it (for tests)."""
        return self._call("environ", name)

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ConfigurationError):  # it may have ended already
                self._call("stop")
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        self._errors.close()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            self._process.kill()


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The child's loop: answer requests until ``stop`` or the end of the pipe."""
    import os

    from numcnn.benchmark.torch_baseline import TorchRunner
    from numcnn.models import get_spec

    runner: TorchRunner | None = None
    batches: dict[str, list] = {}
    while True:
        try:
            message = pickle.load(requests)
        except EOFError:
            return
        command, arguments = message[0], message[1:]
        try:
            if command == "stop":
                _reply(replies, "ok", None)
                return
            if command == "start":
                model, name, lr, momentum, threads = arguments
                runner = TorchRunner(get_spec(name), model, lr, momentum, threads)
                value: Any = (str(runner.torch.__version__), int(runner.threads()))  # plain types: unpickling
                # a TorchVersion would import torch in the parent
            elif command == "load":
                assert runner is not None
                key, pairs = arguments
                batches[key] = [runner.tensors(x, y) for x, y in pairs]
                value = None
            elif command in ("train", "infer"):
                assert runner is not None
                run = runner.train_steps if command == "train" else runner.infer
                started = time.perf_counter()
                run(batches[arguments[0]])
                value = time.perf_counter() - started
                time.sleep(SETTLE_SECONDS)  # PyTorch's workers stop spinning before numcnn's next run
            elif command == "environ":
                value = os.environ.get(arguments[0])
            else:
                raise ValueError(f"unknown request {command!r}")
        except Exception as error:  # reported to the parent, which raises it there
            _reply(replies, "error", f"{type(error).__name__}: {error}")
            continue
        _reply(replies, "ok", value)


def _reply(replies: BinaryIO, status: str, value: Any) -> None:
    pickle.dump((status, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
