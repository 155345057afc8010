"""fold_batch_norm computes the same function as the eval-mode model it folds (float64 to rtol 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn.errors import ConfigurationError
from numcnn.inference import fold_batch_norm
from numcnn.layers.normalization import BatchNorm2d

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def _trained_statistics(model, rng) -> None:
    """Non-trivial γ, β and running statistics, as after training."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm2d):
            count = layer.num_features
            layer.params["weight"][...] = rng.uniform(0.5, 2.0, count)
            layer.params["bias"][...] = rng.standard_normal(count)
            layer.buffers["running_mean"][...] = rng.standard_normal(count)
            layer.buffers["running_var"][...] = rng.uniform(0.2, 3.0, count)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["bn", "sk_0.2"])
@pytest.mark.parametrize(
    "backend",
    [
        "reference",
        "numpy",
        pytest.param("numba", marks=pytest.mark.skipif(not numcnn.kernels.numba_available(), reason="no numba")),
    ],
)
def test_folded_model_equals_the_eval_model(name, dtype, backend, rng):
    model = numcnn.models.build(name, rng=0, dtype=dtype)
    _trained_statistics(model, rng)
    model.eval()
    x = rng.standard_normal((3, 1, 28, 28)).astype(dtype)
    with numcnn.kernels.use_backend(backend):
        expected = model.forward(x)
        folded = fold_batch_norm(model)
        ours = folded.forward(x)
    assert not any(isinstance(layer, BatchNorm2d) for layer in folded.layers)
    assert len(folded.layers) < len(model.layers)
    np.testing.assert_allclose(ours, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 1e-2)


def test_the_original_model_is_untouched(rng):
    model = numcnn.models.build("bn", rng=0, dtype=np.float64)
    before = {name: value.copy() for name, value, _ in model.named_parameters()}
    fold_batch_norm(model)
    for name, value, _ in model.named_parameters():
        np.testing.assert_array_equal(value, before[name])


def test_a_model_without_batch_norm_is_copied_unchanged(rng):
    model = numcnn.models.build("lenet5", rng=0, dtype=np.float64)
    model.eval()
    x = rng.standard_normal((2, 1, 28, 28))
    np.testing.assert_array_equal(fold_batch_norm(model).forward(x), model.forward(x))


def test_graph_model_is_folded_and_equals_the_eval_model(rng):
    """resnet_mnist: every BN follows a convolution read by nothing else, so all seven fold; the
    residual additions still read the folded nodes by their batch norms' names."""
    model = numcnn.models.build("resnet_mnist", rng=0, dtype=np.float64)
    for node in model.nodes:
        if isinstance(node.layer, BatchNorm2d):
            count = node.layer.num_features
            node.layer.params["weight"][...] = rng.uniform(0.5, 2.0, count)
            node.layer.params["bias"][...] = rng.standard_normal(count)
            node.layer.buffers["running_mean"][...] = rng.standard_normal(count)
            node.layer.buffers["running_var"][...] = rng.uniform(0.2, 3.0, count)
    model.eval()
    x = rng.standard_normal((2, 1, 28, 28))
    folded = fold_batch_norm(model)
    assert not any(isinstance(node.layer, BatchNorm2d) for node in folded.nodes)
    assert len(folded.nodes) == len(model.nodes) - sum(isinstance(n.layer, BatchNorm2d) for n in model.nodes)
    np.testing.assert_allclose(folded.forward(x), model.forward(x), rtol=1e-10, atol=1e-12)


def test_a_convolution_read_twice_is_not_folded(rng):
    from numcnn.layers import Add, Conv2d, Graph

    model = Graph(
        [
            ("conv", Conv2d(1, 2, 3, padding=1, rng=0, dtype=np.float64)),
            ("norm", BatchNorm2d(2, dtype=np.float64), "conv"),
            ("sum", Add(), ["norm", "conv"]),
        ]
    )
    model.nodes[1].layer.buffers["running_var"][...] = 4.0
    model.eval()
    folded = fold_batch_norm(model)
    assert [type(node.layer).__name__ for node in folded.nodes] == ["Conv2d", "BatchNorm2d", "Add"]
    x = rng.standard_normal((2, 1, 5, 5))
    np.testing.assert_allclose(folded.forward(x), model.forward(x), rtol=1e-12)


def test_other_models_are_refused():
    with pytest.raises(ConfigurationError, match="Sequential or Graph"):
        fold_batch_norm(BatchNorm2d(3))
