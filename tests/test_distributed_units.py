"""The parts of numcnn.distributed that need no MPI: shards, batch checks, the cost model, and
importing numcnn.distributed without mpi4py."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from numcnn.distributed.cost import allreduce_seconds, step_cost
from numcnn.distributed.trainer import check_batches, shard_bounds
from numcnn.errors import ConfigurationError


@pytest.mark.parametrize("count, parts", [(25, 2), (25, 3), (8, 8), (7, 3), (64, 4), (1, 1)])
def test_shards_cover_the_batch_once_and_differ_by_at_most_one(count, parts):
    bounds = [shard_bounds(count, parts, index) for index in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_batches_too_small_or_uneven_for_the_ranks_are_one_line_errors():
    check_batches(240, 25, 2)  # last batch of 15: 8 + 7
    check_batches(240, 30, 2, even=True)
    with pytest.raises(ConfigurationError, match="a batch has 1 example, but 2 processes need at least 2 examples"):
        check_batches(65, 64, 2)
    with pytest.raises(ConfigurationError, match="a batch has 15 examples, but 2 processes need a multiple of 2"):
        check_batches(240, 25, 2, even=True)
    with pytest.raises(ConfigurationError, match="a batch has 3 examples, but 4 processes"):
        check_batches(3, 64, 4)


def test_cost_model_follows_the_ring_allreduce_formula():
    assert allreduce_seconds(1e6, 1, 25e-6, 0.8e-9) == 0.0
    # N = 4: 6 rounds of latency, 2·3/4 of the bytes.
    assert allreduce_seconds(1e6, 4, 25e-6, 0.8e-9) == pytest.approx(6 * 25e-6 + 1.5 * 1e6 * 0.8e-9)
    lenet = step_cost(4, parameters=61_706, seconds_per_image=35e-6, batch=64)
    assert lenet.compute == pytest.approx(35e-6 * 16)
    assert lenet.communication == pytest.approx(6 * 25e-6 + 1.5 * 246_824 * 0.8e-9)
    assert lenet.speedup == pytest.approx(35e-6 * 64 / lenet.seconds)
    assert lenet.efficiency == pytest.approx(lenet.speedup / 4)
    assert 2.0 < lenet.speedup < 2.5  # docs/distributed.md's table


def test_importing_numcnn_distributed_does_not_import_mpi4py():
    code = "import sys, numcnn.distributed, numcnn.distributed.trainer, numcnn.cli.main; print('mpi4py' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
