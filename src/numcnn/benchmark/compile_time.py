"""First-run cost of the numba backend, measured in fresh processes with an empty kernel cache.

numba compiles each kernel on its first call and (``cache=True``) stores the machine code next to
the source, or in ``NUMBA_CACHE_DIR``. The timed runs of the benchmark never include that cost;
this module reports it separately: a child process with a new, empty ``NUMBA_CACHE_DIR`` times its
first and second training step and inference batch (the difference is the compile time), then a
second child with the now filled cache times the same (the difference is the cache-loading time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

__all__ = ["measure_compile_time"]

_CHILD = """
import json, sys, time
import numpy as np
from numcnn import kernels, models
from numcnn.benchmark.runner import BenchConfig, NumcnnRunner, synthetic_data
kernels.set_backend("numba")
config = BenchConfig(model=sys.argv[1], dtype=sys.argv[2])
spec = models.get_spec(config.model)
runner = NumcnnRunner(config, spec)
images, labels = synthetic_data(spec, 8, np.random.default_rng(0), config.dtype)
batch = [(images, labels)]
times = []
for _ in range(2):
    started = time.perf_counter()
    runner.train_steps(batch)
    runner.infer(batch)
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def _child(model: str, dtype: str, cache_dir: str) -> list[float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_source_root(), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, model, dtype], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _source_root() -> str:
    import numcnn

    return os.path.dirname(os.path.dirname(os.path.abspath(numcnn.__file__)))


def measure_compile_time(model: str, dtype: str = "float32") -> dict[str, float]:
    """``{"compile_s": ..., "cache_load_s": ...}``: first-call overhead without and with numba's cache."""
    with tempfile.TemporaryDirectory(prefix="numcnn-numba-cache-") as cache_dir:
        cold = _child(model, dtype, cache_dir)
        warm = _child(model, dtype, cache_dir)
    return {"compile_s": cold[0] - cold[1], "cache_load_s": warm[0] - warm[1]}
