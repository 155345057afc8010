"""The classic layers of seeds 000/002 and LeNet-5: trainable sub-sampling, connection tables, learned
map combinations (with the sparsity penalty), Euclidean RBF units, the notes' activations."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import (
    LENET5_C3_CONNECTIONS,
    AvgPool2d,
    Conv2d,
    EuclideanRBF,
    LearnedCombination2d,
    ScaledTanh,
    Sequential,
    Sigmoid,
    Subsample2d,
    Tanh,
)
from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional import conv2d_forward
from numcnn.functional.subsampling import down, up
from numcnn.layers import format_connections, parse_connections
from numcnn.optim import SGD

TOLERANCE = 1e-6


# -- Subsample2d: x_j = f(β_j·down(x_j) + b_j) --------------------------------------------------------


def test_down_sums_blocks_and_up_is_the_kronecker_product(rng):
    x = rng.standard_normal((2, 3, 4, 6))
    d = down(x, 2)
    assert d.shape == (2, 3, 2, 3)
    assert d[1, 2, 1, 0] == pytest.approx(x[1, 2, 2:4, 0:2].sum())
    np.testing.assert_allclose(down(x, 2, "mean"), d / 4)
    # sum sub-sampling is n² times average pooling
    pooled, _ = numcnn.functional.avg_pool2d_forward(x, 2)
    np.testing.assert_allclose(d, 4 * pooled, rtol=1e-12)
    delta = rng.standard_normal((2, 3, 2, 3))
    upsampled = up(delta, 2)
    for n in range(2):
        for c in range(3):
            np.testing.assert_array_equal(upsampled[n, c], np.kron(delta[n, c], np.ones((2, 2))))  # 000 §3.1.1


def test_subsample_forward_values_follow_seed_000():
    layer = Subsample2d(2, factor=2, dtype=np.float64)
    layer.params["beta"][...] = [0.5, -2.0]
    layer.params["bias"][...] = [1.0, 0.25]
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    y = layer.forward(x)
    assert y.shape == (1, 2, 2, 2)
    assert y[0, 0, 0, 0] == 0.5 * (0 + 1 + 4 + 5) + 1.0
    assert y[0, 1, 1, 1] == -2.0 * (26 + 27 + 30 + 31) + 0.25
    with_tanh = Subsample2d(2, 2, activation="ScaledTanh", dtype=np.float64)
    with_tanh.params["beta"][...] = layer.beta
    with_tanh.params["bias"][...] = layer.bias
    np.testing.assert_allclose(with_tanh.forward(x), ScaledTanh().forward(y))


def test_subsample_beta_gradient_is_delta_times_d_not_delta_alone(rng):
    # Seed 000 prints ∂E/∂β = Σ_uv δ; seed 002 and the chain rule say Σ_uv δ ∘ d with d = down(x).
    layer = Subsample2d(3, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3, 6, 6))
    layer.forward(x)
    delta = rng.standard_normal((2, 3, 3, 3))
    grad_x = layer.backward(delta)
    d = down(x, 2)
    np.testing.assert_allclose(layer.grads["beta"], (delta * d).sum(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], delta.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert not np.allclose(layer.grads["beta"], delta.sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(grad_x, layer.beta.reshape(1, 3, 1, 1) * up(delta, 2), rtol=1e-12)  # β·up(δ)


SUBSAMPLE_CASES = [
    # (H, W, factor, mode, activation)
    (4, 4, 2, "sum", None),
    (6, 6, 3, "mean", None),
    (7, 5, 2, "sum", None),  # odd sizes: the last row/column is never visited
    (6, 9, (2, 3), "mean", None),
    (4, 6, 2, "sum", "ScaledTanh"),
    (4, 4, 2, "mean", "Sigmoid"),
    (5, 5, 1, "sum", Tanh()),
]


@pytest.mark.parametrize("h, w, factor, mode, activation", SUBSAMPLE_CASES)
def test_subsample_gradcheck(h, w, factor, mode, activation, rng):
    layer = Subsample2d(3, factor, mode, activation, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 3, h, w)), rng=rng)
    assert report.passed, str(report)
    assert report.max_relative_error < TOLERANCE
    assert {e.name for e in report.entries} == {"input", "beta", "bias"}


def test_subsample_unvisited_pixels_get_no_gradient(rng):
    layer = Subsample2d(1, 2, dtype=np.float64)
    layer.forward(rng.standard_normal((1, 1, 5, 5)))
    grad = layer.backward(np.ones((1, 1, 2, 2)))
    assert not grad[0, 0, 4, :].any() and not grad[0, 0, :, 4].any()


def test_subsample_shapes_parameters_and_errors():
    layer = Subsample2d(6, 2)
    assert layer.output_shape((6, 28, 28)) == (6, 14, 14)
    assert layer.num_parameters() == 12 and Subsample2d(16, 2).num_parameters() == 32  # LeNet-5's S2, S4
    assert layer.forward(np.zeros((1, 6, 28, 28))).dtype == np.float32
    with pytest.raises(ConfigurationError, match="mode"):
        Subsample2d(2, 2, mode="max")
    with pytest.raises(ConfigurationError, match="factor"):
        Subsample2d(2, 0)
    with pytest.raises(ConfigurationError, match="unknown activation"):
        Subsample2d(2, 2, activation="Swish")
    with pytest.raises(ShapeError, match="needs an input of shape"):
        layer.forward(np.zeros((1, 3, 4, 4)))
    # A map smaller than one block: output_shape agrees with forward (an error, not a 0×0 map).
    small = Subsample2d(1, 4)
    with pytest.raises(ShapeError, match="at least that size"):
        small.forward(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ShapeError, match="at least that size"):
        small.output_shape((1, 3, 3))
    assert small.output_shape((1, 4, 7)) == (1, 1, 1)

    # The activation is the layer's child: train()/eval() reach it, and parameter names stay beta, bias.
    inside = Subsample2d(2, 2, activation="ScaledTanh")
    assert [name for name, _ in inside.named_children()] == ["activation"] and not list(layer.named_children())
    assert not inside.eval().activation.training and inside.train().activation.training
    assert [name for name, _, _ in inside.named_parameters()] == ["beta", "bias"]
    assert [name for name, _, _ in Sequential(inside).named_parameters()] == ["0.beta", "0.bias"]


# -- connection tables ----------------------------------------------------------------------------


def test_lenet5_c3_table_is_table_1_of_the_paper():
    table = LENET5_C3_CONNECTIONS
    assert table.shape == (6, 16) and table.sum() == 60
    inputs = [set(np.flatnonzero(table[:, j])) for j in range(16)]
    for j in range(6):  # every three contiguous S2 maps
        assert inputs[j] == {j % 6, (j + 1) % 6, (j + 2) % 6}
    for j in range(6):  # every four contiguous S2 maps
        assert inputs[6 + j] == {(j + k) % 6 for k in range(4)}
    assert inputs[12:15] == [{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}]  # discontinuous fours
    assert inputs[15] == set(range(6))
    np.testing.assert_array_equal(parse_connections(format_connections(table)), table)


def test_c3_has_1516_parameters_and_sums_only_over_its_inputs(rng):
    layer = Conv2d(6, 16, 5, connections=LENET5_C3_CONNECTIONS, rng=rng, dtype=np.float64)
    assert layer.num_parameters() == 60 * 25 + 16 == 1516
    assert not layer.weight[~LENET5_C3_CONNECTIONS.T].any()
    x = rng.standard_normal((2, 6, 14, 14))
    y = layer.forward(x)
    assert y.shape == (2, 16, 10, 10)
    for j in (0, 7, 12, 15):  # u_j = Σ_{i∈M_j} x_i ⋆ k_ij + b_j, computed map by map
        expected = layer.bias[j]
        for i in np.flatnonzero(LENET5_C3_CONNECTIONS[:, j]):
            single, _ = conv2d_forward(x[:, i : i + 1], layer.weight[j : j + 1, i : i + 1])
            expected = expected + single[:, 0]
        np.testing.assert_allclose(y[:, j], expected, rtol=1e-12, atol=1e-12)


def test_absent_connections_stay_exactly_zero_through_training(rng):
    layer = Conv2d(6, 16, 3, connections=LENET5_C3_CONNECTIONS, rng=rng, dtype=np.float64)
    absent = ~LENET5_C3_CONNECTIONS.T  # (16, 6): weight[j, i] for i ∉ M_j
    optimizer = SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        layer.zero_grad()
        y = layer.forward(rng.standard_normal((2, 6, 5, 5)))
        layer.backward(rng.standard_normal(y.shape))
        assert not layer.grads["weight"][absent].any()
        assert layer.grads["weight"][~absent].any()
        optimizer.step()
    assert not layer.weight[absent].any() and layer.weight[~absent].all()


def test_forward_ignores_values_loaded_into_absent_connections(rng):
    layer = Conv2d(2, 2, 3, connections=[[True, False], [True, True]], rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, 2, 4, 4))
    before = layer.forward(x)
    layer.params["weight"][1, 0] = 5.0  # output map 1 does not read input map 0
    np.testing.assert_array_equal(layer.forward(x), before)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv_with_connection_table_gradcheck(stride, padding, rng):
    table = rng.random((3, 4)) < 0.5
    table[0] = True  # every output map has an input
    layer = Conv2d(3, 4, 3, stride, padding, connections=table, rng=rng, dtype=np.float64)
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 3, 6, 5)), rng=rng)
    assert report.passed, str(report)
    assert not layer.grads["weight"][~table.T].any()


def test_connection_table_errors():
    with pytest.raises(ConfigurationError, match=r"shape \(in_channels, out_channels\) = \(6, 16\)"):
        Conv2d(6, 16, 5, connections=LENET5_C3_CONNECTIONS.T)
    with pytest.raises(ConfigurationError, match=r"output map\(s\) \[1\] have no input"):
        Conv2d(2, 2, 3, connections=[[True, False], [True, False]])
    with pytest.raises(ConfigurationError, match="booleans"):
        Conv2d(1, 1, 3, connections=[[0.5]])
    with pytest.raises(ConfigurationError, match="rows of equal length"):
        parse_connections("X .\nX")


# -- learned combinations of feature maps (000 §3.3) ------------------------------------------------


def test_learned_combination_forward_is_the_notes_formula(rng):
    layer = LearnedCombination2d(3, 2, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 4, 4))
    alpha = layer.combination_weights()
    np.testing.assert_allclose(alpha.sum(axis=0), 1.0)
    assert (alpha > 0).all()
    expected = np.zeros((2, 2, 3, 3))
    for j in range(2):
        for i in range(3):  # Σ_i α_ij (x_i * k_i) + b_j
            single, _ = conv2d_forward(x[:, i : i + 1], layer.kernel[i][None, None])
            expected[:, j] += alpha[i, j] * single[:, 0]
        expected[:, j] += layer.bias[j]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


def test_logit_gradient_is_equation_10(rng):
    layer = LearnedCombination2d(3, 2, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 4, 4))
    layer.forward(x)
    delta = rng.standard_normal((2, 2, 3, 3))
    layer.backward(delta)
    alpha = layer.combination_weights()
    responses = layer.cache.responses  # x_i * k_i
    for j in range(2):
        grad_alpha = np.array([(delta[:, j] * responses[:, i]).sum() for i in range(3)])  # ∂E/∂α_i
        eq10 = alpha[:, j] * (grad_alpha - (grad_alpha * alpha[:, j]).sum())
        np.testing.assert_allclose(layer.grads["logits"][:, j], eq10, rtol=1e-12)


@pytest.mark.parametrize("sparsity, power", [(0.0, 1.0), (0.3, 1.0), (0.3, 0.5), (2.0, 0.25)])
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_learned_combination_gradcheck_with_penalty(sparsity, power, stride, padding, rng):
    layer = LearnedCombination2d(3, 4, 3, stride, padding, sparsity, power, rng=rng, dtype=np.float64)
    layer.params["logits"] *= 4  # spread α out, so the penalty's gradient is far from zero
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 3, 6, 7)), rng=rng)
    assert report.passed, str(report)
    assert {e.name for e in report.entries} == {"input", "kernel", "logits", "bias"}


def test_penalty_enters_the_objective_that_gradcheck_differentiates(rng):
    layer = LearnedCombination2d(2, 3, 1, sparsity=1.5, sparsity_power=0.5, rng=rng, dtype=np.float64)
    alpha = layer.combination_weights()
    assert layer.penalty() == pytest.approx(1.5 * np.sum(np.sqrt(alpha)))
    second = LearnedCombination2d(3, 2, 1, sparsity=0.7, sparsity_power=0.5, rng=rng, dtype=np.float64)
    model = Sequential(layer, Tanh(), second)
    assert model.penalty() == pytest.approx(layer.penalty() + model[2].penalty())
    report = numcnn.gradcheck(model, rng.standard_normal((2, 2, 3, 3)), rng=rng)
    assert report.passed, str(report)

    class ForgetsThePenalty(LearnedCombination2d):
        def backward(self, grad_output, need_input_grad=True):
            sparsity, self.sparsity = self.sparsity, 0.0
            try:
                return super().backward(grad_output, need_input_grad)
            finally:
                self.sparsity = sparsity

    broken = ForgetsThePenalty(2, 3, 1, sparsity=1.5, sparsity_power=0.5, rng=0, dtype=np.float64)
    report = numcnn.gradcheck(broken, rng.standard_normal((2, 2, 3, 3)), rng=rng)
    assert not report["logits"].passed and report["kernel"].passed


def test_the_notes_l1_penalty_is_a_constant_with_zero_gradient(rng):
    # Under the softmax Σ_i |α_ij| = 1, so λ Σ_ij |α_ij| = λ·C_out and eq. 13 vanishes identically.
    layer = LearnedCombination2d(4, 3, 1, sparsity=0.8, rng=rng, dtype=np.float64)
    for scale in (1, 10):
        layer.params["logits"][...] = scale * rng.standard_normal((4, 3))
        assert layer.penalty() == pytest.approx(0.8 * 3)
        layer.zero_grad()
        layer.forward(rng.standard_normal((1, 4, 2, 2)))
        layer.backward(np.zeros((1, 3, 2, 2)))  # E contributes nothing: only ∂Ω/∂c is left
        np.testing.assert_allclose(layer.grads["logits"], 0.0, atol=1e-15)


def test_a_power_below_one_drives_the_combinations_towards_few_inputs(rng):
    layer = LearnedCombination2d(4, 3, 1, sparsity=1.0, sparsity_power=0.5, rng=rng, dtype=np.float64)
    optimizer = SGD([(layer.logits, layer.grads["logits"])], lr=1.0)
    assert layer.penalty() > 5.5  # Σ_i √α_ij is 2 per map for uniform α over 4 inputs, 1 for one input
    for _ in range(300):  # descend on the penalty alone
        layer.zero_grad()
        layer.forward(np.zeros((1, 4, 1, 1)))
        layer.backward(np.zeros((1, 3, 1, 1)))
        optimizer.step()
    alpha = layer.combination_weights()
    assert layer.penalty() < 3.1
    assert (alpha.max(axis=0) > 0.9).all()  # each output map now reads mostly one input map
    table = layer.combination_table(threshold=0.5)
    assert table.splitlines()[0].startswith("α_ij in %")
    assert sum(line.count("X") for line in table.splitlines()[2:]) == 3


def test_learned_combination_errors_and_shapes():
    layer = LearnedCombination2d(6, 16, 5)
    assert layer.output_shape((6, 14, 14)) == (16, 10, 10)
    assert layer.num_parameters() == 6 * 25 + 6 * 16 + 16
    with pytest.raises(ConfigurationError, match="sparsity"):
        LearnedCombination2d(2, 2, 3, sparsity=-1)
    with pytest.raises(ConfigurationError, match="sparsity_power"):
        LearnedCombination2d(2, 2, 3, sparsity=1, sparsity_power=2)
    with pytest.raises(ShapeError, match="combination of 6 maps"):
        layer.forward(np.zeros((1, 3, 14, 14)))


# -- Euclidean RBF output units -------------------------------------------------------------------


def test_rbf_outputs_are_squared_distances_to_fixed_codes(rng):
    codes = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]])
    layer = EuclideanRBF(3, 2, prototypes=codes, dtype=np.float64)
    x = np.array([[1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, 0.5]])
    np.testing.assert_allclose(layer.forward(x), [[0, 8], [3, 3], [4.25, 2.25]])
    assert layer.num_parameters() == 0 and layer.parameters() == []
    np.testing.assert_array_equal(layer.buffers["prototypes"], codes)
    report = numcnn.gradcheck(layer, rng.standard_normal((4, 3)), rng=rng)
    assert report.passed, str(report)


def test_rbf_default_codes_and_errors():
    layer = EuclideanRBF(5, 3, rng=0)
    assert set(np.unique(layer.prototypes)) == {-1.0, 1.0}
    with pytest.raises(ConfigurationError, match=r"prototypes must have shape \(3, 5\)"):
        EuclideanRBF(5, 3, prototypes=np.ones((5, 3)))
    with pytest.raises(ShapeError, match="RBF units with 5 inputs"):
        layer.forward(np.zeros((2, 4)))


# -- the notes' activations (000 §2.1) ------------------------------------------------------------


def test_lecun_scaled_tanh_values():
    layer = ScaledTanh()
    assert (layer.amplitude, layer.scale) == (1.7159, 2 / 3)
    y = layer.forward(np.array([-1.0, 0.0, 1.0, 50.0]))
    np.testing.assert_allclose(y, [-1.0, 0.0, 1.0, 1.7159], atol=3e-6)  # f(±1) = ±1, range ±1.7159
    slope_at_zero = layer.backward(np.ones(4))[1]
    assert slope_at_zero == pytest.approx(1.7159 * 2 / 3)


def test_logistic_with_slope_beta_values():
    layer = Sigmoid(slope=3.0)
    y = layer.forward(np.array([0.0, 1.0]))
    np.testing.assert_allclose(y, [0.5, 1 / (1 + np.exp(-3.0))])
    assert layer.backward(np.ones(2))[0] == pytest.approx(3.0 / 4)  # f′(0) = β/4


@pytest.mark.parametrize("layer", [ScaledTanh(), Sigmoid(slope=0.5)], ids=repr)
def test_activation_gradcheck(layer, rng):
    report = numcnn.gradcheck(layer, rng.standard_normal((2, 3, 4)) * 2, rng=rng)
    assert report.passed, str(report)


def test_new_layers_are_registered_for_model_specs():
    for name in ("Subsample2d", "LearnedCombination2d", "ScaledTanh", "EuclideanRBF"):
        assert name in numcnn.layers.LAYER_TYPES


def test_avg_pool_and_mean_subsampling_agree_when_beta_is_one(rng):
    layer = Subsample2d(3, 2, mode="mean", dtype=np.float64)
    layer.params["beta"][...] = 1.0
    layer.params["bias"][...] = 0.0
    x = rng.standard_normal((2, 3, 6, 6))
    np.testing.assert_allclose(layer.forward(x), AvgPool2d(2).forward(x), rtol=1e-12)


def test_window_and_vector_layers_share_shapes_checks_and_reprs():
    conv = Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1)
    combination = LearnedCombination2d(3, 4, (3, 2), stride=(2, 1), padding=1)
    assert conv.output_shape((3, 9, 8)) == combination.output_shape((3, 9, 8)) == (4, 5, 9)
    assert repr(conv) == "Conv2d(3, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))"
    assert repr(combination) == "LearnedCombination2d(3, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))"
    with pytest.raises(ConfigurationError, match="LearnedCombination2d needs at least one input and output map"):
        LearnedCombination2d(0, 4, 3)
    with pytest.raises(ConfigurationError, match="LearnedCombination2d: kernel_size"):
        LearnedCombination2d(3, 4, 3, stride=0)
    rbf, linear = numcnn.EuclideanRBF(5, 3), numcnn.Linear(5, 3)
    assert rbf.output_shape((5,)) == linear.output_shape((5,)) == (3,)
    assert repr(rbf) == "EuclideanRBF(in_features=5, out_features=3)"
    with pytest.raises(ConfigurationError, match="EuclideanRBF needs positive sizes, got 0 and 3"):
        numcnn.EuclideanRBF(0, 3)
