"""The one training step, the flat gradient buffer it exposes, the random streams and ``fit(model=...)``."""

from __future__ import annotations

import numpy as np
import pytest

from numcnn import kernels, models
from numcnn.errors import ConfigurationError
from numcnn.layers import Linear, ReLU, Sequential
from numcnn.layers.flat import flat_buffers, flat_gradient
from numcnn.losses import LOSS_TYPES
from numcnn.optim import SGD
from numcnn.streams import PURPOSES, streams
from numcnn.train import TrainConfig, fit, train_step

QUIET = {"log": lambda line: None, "show_progress": False}


def _batch(model_name: str, count: int = 8, seed: int = 0):
    spec = models.get_spec(model_name)
    generator = np.random.default_rng(seed)
    images = generator.normal(size=(count, *spec.input_shape))
    return images, generator.integers(0, spec.num_classes, size=count)


def _setup(lr: float, model_name: str = "lenet5"):
    model = models.build(model_name, rng=1, dtype=np.float64)
    loss = LOSS_TYPES[model.spec.loss]()
    return model, loss, SGD(model.parameters(), lr=lr)


def test_the_hook_sees_the_finished_gradients_before_the_update():
    batch = _batch("lenet5")
    seen = {}

    def hook(model):
        buffers = flat_buffers(model)
        seen["params"] = buffers.params.copy()
        seen["grads"] = buffers.grads.copy()
        flat_gradient(model)[...] *= 2  # what an allreduce of two equal ranks (unscaled) would do

    doubled, loss, optimizer = _setup(lr=0.01)
    before = flat_buffers(doubled).params.copy()
    with kernels.use_backend("numpy"):
        result = train_step(doubled, loss, optimizer, batch, hook=hook, predict=doubled.spec.predict_classes)
        reference, loss2, optimizer2 = _setup(lr=0.02)
        train_step(reference, loss2, optimizer2, batch)
    assert np.array_equal(seen["params"], before)  # not yet updated when the hook runs
    assert np.count_nonzero(seen["grads"]) > 0.5 * seen["grads"].size  # but the gradients are complete
    # w − η·(2g) = w − (2η)·g exactly (a doubling is exact): the hook's change reached the update
    assert np.array_equal(flat_buffers(doubled).params, flat_buffers(reference).params)
    assert result.count == 8 and 0 <= result.correct <= 8 and np.isfinite(result.loss)


def test_flat_gradient_is_every_layers_gradient_in_one_buffer():
    model = models.build("lenet5", rng=0)
    grads = flat_gradient(model)
    assert grads.ndim == 1 and grads.size == model.num_parameters()
    grads[...] = 3.0
    assert all(np.all(grad == 3.0) for _, grad in model.parameters())
    assert flat_buffers(model).params.size == grads.size


def test_flat_gradient_of_a_model_without_one_buffer_is_a_clear_error():
    model = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=0))  # assembled by hand: not flattened
    assert flat_buffers(model) is None
    with pytest.raises(ConfigurationError, match="flat buffer"):
        flat_gradient(model)


def test_streams_are_derived_from_the_seed_per_purpose_and_rank():
    first, again, other_rank = streams(7), streams(7), streams(7, rank=1)
    for name in ("init", *PURPOSES):
        assert getattr(first, name).random() == getattr(again, name).random()  # reproducible
    draws = {name: getattr(streams(7), name).random(4).tolist() for name in ("init", *PURPOSES)}
    assert len({tuple(v) for v in draws.values()}) == len(draws)  # independent purposes
    fresh, rank1 = streams(7), streams(7, rank=1)
    for name in ("init", "shuffle", "curvature"):  # shared by every rank
        assert getattr(fresh, name).random() == getattr(rank1, name).random()
    for name in ("dropout", "augment"):  # each rank its own
        assert getattr(streams(7), name).random() != getattr(other_rank, name).random()
    # The documented derivation, so that it stays stable:
    assert streams(7).init.random() == np.random.default_rng(7).random()
    assert streams(7).shuffle.random() == np.random.default_rng(np.random.SeedSequence(7).spawn(2)[1]).random()
    assert (
        streams(7, rank=1).dropout.random()
        == np.random.default_rng(np.random.SeedSequence(7).spawn(3)[2].spawn(2)[1]).random()
    )
    with pytest.raises(ConfigurationError, match="seed"):
        streams(-1)


def test_fit_trains_a_model_it_is_given(synthetic_digits):
    config = TrainConfig(model="lenet5", epochs=1, batch_size=50, lr=0.01, seed=5, train_limit=200, dtype="float64")
    given = models.build("lenet5", rng=streams(5).init, dtype=np.float64)  # what fit would build itself
    with kernels.use_backend("numpy"):
        trained = fit(config, synthetic_digits, model=given, **QUIET)
        built = fit(config, synthetic_digits, **QUIET)
    assert trained.model is given
    assert np.array_equal(flat_buffers(given).params, flat_buffers(built.model).params)
    with pytest.raises(ConfigurationError, match="'base'"):
        fit(config, synthetic_digits, model=models.build("base", rng=0, dtype=np.float64), **QUIET)
    with pytest.raises(ConfigurationError, match="float32"):
        fit(config, synthetic_digits, model=models.build("lenet5", rng=0), **QUIET)


def test_the_benchmark_times_the_same_step():
    from numcnn.benchmark.runner import BenchConfig, NumcnnRunner

    config = BenchConfig(model="lenet5", dtype="float64", lr=0.01, momentum=0.9, seed=3)
    runner = NumcnnRunner(config, models.get_spec("lenet5"))
    model = models.build("lenet5", rng=3, dtype=np.float64)
    loss = LOSS_TYPES[model.spec.loss]()
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = [_batch("lenet5", seed=s) for s in range(3)]
    with kernels.use_backend("numpy"):
        runner.train_steps(batches)
        model.train()
        for batch in batches:
            train_step(model, loss, optimizer, batch)
    assert np.array_equal(flat_buffers(runner.model).params, flat_buffers(model).params)
