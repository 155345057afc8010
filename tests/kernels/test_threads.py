"""How numcnn picks numba's waiting policy and thread count (numcnn.kernels.threads).

Under load, libgomp's spinning workers made 2 numba threads several times slower than 1
(docs/performance.md); these tests pin the decisions, not the timings (no timed tests).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from numcnn.kernels.threads import THREADING_ENVIRONMENT, default_numba_threads, numba_threading_environment


def test_workers_sleep_between_kernels_by_default():
    assert numba_threading_environment({}, gomp_loaded=False) == {"OMP_WAIT_POLICY": "passive"}


@pytest.mark.parametrize("variable", THREADING_ENVIRONMENT)
def test_a_users_threading_choice_is_left_alone(variable):
    assert numba_threading_environment({variable: "x"}, gomp_loaded=False) == {}
    # An empty value is no choice.
    assert numba_threading_environment({variable: ""}, gomp_loaded=False) == {"OMP_WAIT_POLICY": "passive"}


def test_nothing_is_set_once_libgomp_has_read_its_environment():
    assert numba_threading_environment({}, gomp_loaded=True) == {}


@pytest.mark.parametrize(
    "numba_threads, usable, environ, expected",
    [
        (16, 2, {}, 2),  # a container or taskset allows 2 of the machine's 16 CPUs
        (2, 2, {}, 2),
        (2, 8, {}, 2),  # never more than numba started with
        (4, None, {}, 4),  # affinity unknown (not Linux)
        (16, 2, {"NUMBA_NUM_THREADS": "16"}, 16),  # the user's choice
        (16, 0, {}, 1),
    ],
)
def test_default_thread_count_is_capped_at_the_usable_cpus(numba_threads, usable, environ, expected):
    assert default_numba_threads(numba_threads, usable, environ) == expected


@pytest.mark.parametrize("preset, expected", [(None, "passive"), ("active", "active")])
def test_the_numba_backend_sets_the_policy_before_its_threads_start(preset, expected):
    """In a fresh process: the policy is in the environment before libgomp is loaded, and a user's stays."""
    pytest.importorskip("numba")
    env = {key: value for key, value in os.environ.items() if key not in THREADING_ENVIRONMENT}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, numcnn\n"
        "from numcnn.kernels import threads\n"
        "assert not threads._gomp_loaded()\n"
        "numcnn.set_backend('numba')\n"
        "threads.set_threads(1)\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), threads.thread_report()['omp_wait_policy'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected, expected]
