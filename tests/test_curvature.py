"""The Gauss–Newton curvature pass (LeCun 1998, Appendix C) against brute force with explicit Jacobians.

Per layer: for a diagonal ``D = ∂²E/∂(output)²``, ``backward_curvature`` must give exactly
``diag(Jᵀ D J)`` for ``J`` the layer's Jacobian with respect to each parameter and to its input.
Whole network: on a network in which no parameter's influence fans out before the curvature is
diagonal, the estimate must equal the diagonal of the Gauss–Newton matrix ``Jᵀ H J``.
"""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import (
    Conv2d,
    CrossEntropyLoss,
    EuclideanRBF,
    Flatten,
    Linear,
    MSELoss,
    RBFLoss,
    RBFMAPLoss,
    ReLU,
    ScaledTanh,
    Sequential,
    Sigmoid,
    Subsample2d,
    Tanh,
    models,
)
from numcnn.sdlm import gauss_newton_diagonal

EPS = 1e-6


@pytest.fixture(autouse=True)
def single_threaded_kernels():
    """Finite-difference Jacobians run thousands of tiny forward passes, where numba's thread pool
    costs more than it computes on a loaded machine."""
    with numcnn.kernels.use_backend("numpy"):
        yield


def jacobian(function, array: np.ndarray) -> np.ndarray:
    """``∂ function() / ∂ array`` by central differences, shape ``(outputs, array.size)``."""
    flat = array.reshape(-1)
    columns = []
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + EPS
        plus = np.array(function(), dtype=np.float64).ravel()
        flat[k] = saved - EPS
        minus = np.array(function(), dtype=np.float64).ravel()
        flat[k] = saved
        columns.append((plus - minus) / (2 * EPS))
    return np.stack(columns, axis=1)


def gauss_newton_diagonal_by_jacobian(function, array: np.ndarray, curvature_output: np.ndarray) -> np.ndarray:
    """``diag(Jᵀ D J) = Σ_o D_o J_ok²`` for a diagonal ``D``, reshaped like ``array``."""
    j = jacobian(function, array)
    return (curvature_output.reshape(-1, 1) * j * j).sum(axis=0).reshape(array.shape)


def check_layer(layer, x: np.ndarray, rng, grad_output=None):
    y = layer.forward(x)
    curvature_output = rng.uniform(0.1, 2.0, size=y.shape)
    curvature_input, curvatures = layer.backward_curvature(x, curvature_output, grad_output)
    assert set(curvatures) == set(layer.params)
    for name, param in layer.params.items():
        expected = gauss_newton_diagonal_by_jacobian(lambda: layer.forward(x), param, curvature_output)
        np.testing.assert_allclose(curvatures[name], expected, rtol=1e-7, atol=1e-9, err_msg=name)
    expected_input = gauss_newton_diagonal_by_jacobian(lambda: layer.forward(x), x, curvature_output)
    return curvature_input, expected_input, curvature_output


LAYERS = [
    lambda rng: (Conv2d(2, 3, 3, rng=rng, dtype=np.float64), (2, 2, 5, 5)),
    lambda rng: (Conv2d(2, 3, (3, 2), stride=2, padding=1, rng=rng, dtype=np.float64), (2, 2, 5, 6)),
    lambda rng: (Conv2d(3, 2, 2, connections=[[1, 0], [1, 1], [0, 1]], rng=rng, dtype=np.float64), (2, 3, 4, 4)),
    lambda rng: (Subsample2d(2, 2, rng=rng, dtype=np.float64), (2, 2, 5, 4)),
    lambda rng: (Subsample2d(2, (1, 3), mode="mean", rng=rng, dtype=np.float64), (2, 2, 3, 6)),
    lambda rng: (Subsample2d(2, 2, activation="ScaledTanh", rng=rng, dtype=np.float64), (2, 2, 4, 4)),
    lambda rng: (Linear(5, 3, rng=rng, dtype=np.float64), (4, 5)),
    lambda rng: (ScaledTanh(), (3, 4)),
    lambda rng: (Tanh(), (3, 4)),
    lambda rng: (Sigmoid(slope=2.0), (3, 4)),
    lambda rng: (ReLU(), (3, 4)),
    lambda rng: (Flatten(), (2, 2, 2, 3)),
    # issue 8: every layer type of the registered models has a pass
    lambda rng: (numcnn.MaxPool2d(2), (2, 2, 4, 6)),
    lambda rng: (numcnn.MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 5)),  # overlapping windows
    lambda rng: (numcnn.AvgPool2d(2), (2, 2, 4, 4)),
    lambda rng: (numcnn.AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 5)),
    lambda rng: (numcnn.GlobalAvgPool2d(), (2, 3, 3, 4)),
    lambda rng: (frozen_dropout(0.5, (3, 8), rng), (3, 8)),
    lambda rng: (numcnn.Dropout(0.5, rng=rng).eval(), (3, 4)),
    lambda rng: (numcnn.BatchNorm2d(3, dtype=np.float64).eval(), (2, 3, 4, 4)),  # fixed statistics: exact
    lambda rng: (numcnn.BatchNorm1d(3, dtype=np.float64).eval(), (4, 3)),
    lambda rng: (numcnn.Softmax(), (3, 5)),
]


def frozen_dropout(p: float, shape: tuple[int, ...], rng) -> numcnn.Dropout:
    layer = numcnn.Dropout(p, rng=rng)
    layer.forward(np.ones(shape))
    layer.freeze_mask()
    return layer


@pytest.mark.parametrize("make", LAYERS, ids=lambda make: repr(make(np.random.default_rng(0))[0]))
def test_layer_curvature_is_diag_of_jacobian_t_d_jacobian(make, rng):
    layer, shape = make(rng)
    x = rng.standard_normal(shape)
    if isinstance(layer, ReLU):
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    if isinstance(layer, numcnn.MaxPool2d):  # distinct values: no window maximum within a step of another
        x = rng.permutation(x.size).reshape(shape) * 0.01
    if isinstance(layer, numcnn.BatchNorm1d | numcnn.BatchNorm2d):  # non-trivial fixed statistics
        layer.params["weight"][...] = rng.uniform(0.5, 2.0, size=layer.num_features)
        layer.buffers["running_mean"][...] = rng.standard_normal(layer.num_features)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, size=layer.num_features)
    curvature_input, expected_input, _ = check_layer(layer, x, rng)
    np.testing.assert_allclose(curvature_input, expected_input, rtol=1e-7, atol=1e-9)
    assert (curvature_input >= 0).all()


def test_rbf_curvature_keeps_its_own_exact_second_derivative(rng):
    layer = EuclideanRBF(4, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 4))
    grad_output = rng.uniform(-0.2, 1.0, size=(2, 3))  # ∂E/∂y_i
    curvature_input, expected_input, curvature_output = check_layer(layer, x, rng, grad_output)
    # + Σ_i g_i ∂²y_i/∂x_j², the RBF's exact second derivative (second differences; y is quadratic)
    h = 1e-3
    second = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = [x.copy() for _ in range(3)]
        shifted[0][index] += h
        shifted[2][index] -= h
        values = [np.sum(grad_output * layer.forward(s)) for s in shifted]
        second[index] = (values[0] - 2 * values[1] + values[2]) / h**2
    np.testing.assert_allclose(curvature_input, expected_input + second, rtol=1e-6)
    with pytest.raises(numcnn.NumcnnError, match="needs ∂E/∂y"):
        layer.backward_curvature(x, curvature_output)


def second_differences(loss, outputs: np.ndarray, targets) -> np.ndarray:
    h = 1e-4
    diagonal = np.zeros_like(outputs)
    for index in np.ndindex(outputs.shape):
        values = []
        for step in (h, 0.0, -h):
            shifted = outputs.copy()
            shifted[index] += step
            values.append(loss.forward(shifted, targets))
        diagonal[index] = (values[0] - 2 * values[1] + values[2]) / h**2
    return diagonal


@pytest.mark.parametrize(
    "loss, targets",
    [
        (MSELoss(), "real"),
        (MSELoss("sum"), "real"),
        (CrossEntropyLoss(), "labels"),
        (RBFLoss(), "labels"),
        (RBFMAPLoss(), "labels"),
        (RBFMAPLoss("sum", rubbish_penalty=0.5), "labels"),
    ],
    ids=repr,
)
def test_loss_curvature_is_the_diagonal_of_its_hessian(loss, targets, rng):
    outputs = rng.uniform(0.0, 3.0, size=(3, 4))
    targets = rng.standard_normal((3, 4)) if targets == "real" else np.array([0, 3, 1])
    loss.forward(outputs, targets)
    curvature = loss.curvature()
    np.testing.assert_allclose(curvature, second_differences(loss, outputs, targets), rtol=1e-5, atol=1e-7)
    assert (curvature >= 0).all()


def test_network_curvature_equals_the_gauss_newton_diagonal_where_no_cross_terms_arise(rng):
    # Every parameter reaches F6 through a single unit at each layer boundary (1×1 maps, factor 1
    # sub-sampling), and the criterion E = (1/N) Σ_n ‖x_n − w_D‖² has the diagonal Hessian 2I/N at F6's
    # output x. Then LeCun's diagonal pass is the exact diagonal of Jᵀ H J.
    model = Sequential(
        Conv2d(2, 3, 3, connections=[[1, 0, 1], [1, 1, 0]], rng=rng, dtype=np.float64),  # 3@1×1
        ScaledTanh(),
        Subsample2d(3, 1, rng=rng, dtype=np.float64),
        ScaledTanh(),
        Flatten(),
        Linear(3, 4, rng=rng, dtype=np.float64),
        ScaledTanh(),
        EuclideanRBF(4, 5, rng=rng, dtype=np.float64),
    )
    x = rng.standard_normal((3, 2, 3, 3))
    labels = np.array([0, 4, 2])
    estimate = gauss_newton_diagonal(model, RBFLoss(), x, labels)

    features = Sequential(*model.layers[:-1])  # the network up to F6's output
    hessian = 2.0 / len(labels)  # ∂²E/∂x² of the criterion, per entry of F6's output
    for name, param, _ in model.named_parameters():
        j = jacobian(lambda: features.forward(x), param)  # (N·4, size)
        exact = (hessian * j * j).sum(axis=0).reshape(param.shape)  # diag(Jᵀ H J)
        np.testing.assert_allclose(estimate[name], exact, rtol=1e-6, atol=1e-10, err_msg=name)
    assert not estimate["0.weight"][1, 0].any()  # input map 0 does not feed output map 1


def test_lenet5_1998_curvature_is_complete_and_non_negative(rng):
    model = models.build("lenet5_1998", rng=0, dtype=np.float64)
    for loss in (RBFLoss(), RBFMAPLoss()):
        estimate = gauss_newton_diagonal(model, loss, rng.standard_normal((4, 1, 32, 32)), np.array([1, 2, 3, 4]), 3)
        assert set(estimate) == {name for name, _, _ in model.named_parameters()}
        for name, param, _ in model.named_parameters():
            assert estimate[name].shape == param.shape and (estimate[name] >= 0).all(), name
        c3_absent = ~numcnn.LENET5_C3_CONNECTIONS.T
        assert not estimate["4.weight"][c3_absent].any() and estimate["4.weight"][~c3_absent].all()


WITHOUT_CURVATURE = [numcnn.LearnedCombination2d(1, 1, 1)]


@pytest.mark.parametrize("layer", WITHOUT_CURVATURE, ids=repr)
def test_layers_without_a_curvature_pass_say_so(layer):
    with pytest.raises(numcnn.NumcnnError, match="has no curvature pass"):
        layer.backward_curvature(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)))


def test_lenet5_1998_estimate_is_exact_for_c5_and_f6_and_approximate_below(rng):
    # The exact Gauss–Newton diagonal Σ_n Σ_j (2/N) (∂x_nj/∂θ)² of LeNet-5, x = F6's output, by one
    # back-propagation per sample and F6 unit. C5's and F6's parameters each reach F6 through one unit,
    # so LeCun's estimate is exact there; below, the dropped cross terms of the shared kernels matter.
    model = models.build("lenet5_1998", rng=0, dtype=np.float64)
    images, labels = rng.standard_normal((2, 1, 32, 32)), np.array([1, 7])
    estimate = gauss_newton_diagonal(model, RBFLoss(), images, labels)
    features = Sequential(*model.layers[:-1])
    exact = {name: np.zeros_like(param) for name, param, _ in features.named_parameters()}
    for n in range(len(labels)):
        for unit in range(84):
            features.zero_grad()
            features.forward(images[n : n + 1])
            features.backward(np.eye(84)[None, unit], need_input_grad=False)
            for name, _, grad in features.named_parameters():
                exact[name] += 2.0 / len(labels) * grad**2
    for name in ("8.weight", "8.bias", "11.weight", "11.bias"):
        np.testing.assert_allclose(estimate[name], exact[name], rtol=1e-9, atol=1e-14, err_msg=name)
    assert not np.allclose(estimate["0.weight"], exact["0.weight"], rtol=0.1)  # C1: an approximation


def test_losses_share_one_reduction_scale_and_rbf_map_reuses_the_cross_entropy_curvature(rng):
    from numcnn.functional.curvature import cross_entropy_curvature, mse_curvature, rbf_map_curvature
    from numcnn.functional.loss import reduction_scale

    assert reduction_scale(4, "mean") == 0.25 and reduction_scale(4, "sum") == 1.0
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduction_scale(4, "max")
    probabilities = rng.uniform(0, 0.2, (4, 5))  # rows summing to < 1, as with the rubbish class
    for reduction in ("mean", "sum"):
        np.testing.assert_array_equal(
            rbf_map_curvature(probabilities, reduction), cross_entropy_curvature(probabilities, reduction)
        )
        np.testing.assert_allclose(
            rbf_map_curvature(probabilities, reduction),
            probabilities * (1 - probabilities) * reduction_scale(4, reduction),
        )
    np.testing.assert_array_equal(mse_curvature(np.zeros((4, 3))), np.full((4, 3), 0.25))


# -- issue 8: the approximations of the modern layers ------------------------------------------------------


def test_batch_norm_in_training_mode_is_the_fixed_statistics_approximation(rng):
    """With batch statistics the exact diag(Jᵀ D J) has O(1/m) terms from μ and σ depending on x; the pass
    drops them. At m = 2·16·16 = 512 values per channel they are a few percent; γ and β are exact."""
    layer = numcnn.BatchNorm2d(2, dtype=np.float64)
    layer.params["weight"][...] = [0.7, 1.6]
    x = rng.standard_normal((2, 2, 16, 16)) * 3.0 + 1.0
    y = layer.forward(x)
    curvature_output = rng.uniform(0.1, 2.0, size=y.shape)
    curvature_input, curvatures = layer.backward_curvature(x, curvature_output)
    for name in ("weight", "bias"):
        expected = gauss_newton_diagonal_by_jacobian(lambda: layer.forward(x), layer.params[name], curvature_output)
        np.testing.assert_allclose(curvatures[name], expected, rtol=1e-6, err_msg=name)
    sample = (0, slice(None), slice(0, 3), slice(0, 3))  # 18 input entries: the full Jacobian would be slow
    x_sample = x[sample].copy()

    def output_of_sample():
        perturbed = x.copy()
        perturbed[sample] = x_sample
        return layer.forward(perturbed)

    expected_input = gauss_newton_diagonal_by_jacobian(output_of_sample, x_sample, curvature_output)
    np.testing.assert_allclose(curvature_input[sample], expected_input, rtol=0.05)
    assert not np.allclose(curvature_input[sample], expected_input, rtol=1e-6)  # an approximation indeed


def test_graph_curvature_sums_its_branches(rng):
    """x → conv_a, x → conv_b, Add: each parameter lies in one branch (exact); the input's curvature is
    diag(J_aᵀ D J_a) + diag(J_bᵀ D J_b), the Gauss–Newton diagonal without the cross term 2 J_aᵀ D J_b."""
    conv_a = Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64)
    conv_b = Conv2d(2, 3, 1, rng=rng, dtype=np.float64)
    graph = numcnn.Graph(
        [("a", conv_a, "input"), ("b", conv_b, "input"), ("sum", numcnn.Add(), ("a", "b")), ("out", ReLU(), "sum")]
    )
    x = rng.standard_normal((2, 2, 4, 4))
    y = graph.forward(x)
    curvature_output = rng.uniform(0.1, 2.0, size=y.shape)
    mask = (graph.forward(x) > 0).astype(np.float64)  # the ReLU's f′² = f′
    inner = curvature_output * mask
    curvature_input, curvatures = graph.backward_curvature(x, curvature_output)
    assert set(curvatures) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    for layer, node in ((conv_a, "a"), (conv_b, "b")):
        for name, param in layer.params.items():
            expected = gauss_newton_diagonal_by_jacobian(lambda: graph.forward(x), param, curvature_output)
            np.testing.assert_allclose(curvatures[f"{node}.{name}"], expected, rtol=1e-6, atol=1e-9)
    branches = sum(gauss_newton_diagonal_by_jacobian(lambda c=c: c.forward(x), x, inner) for c in (conv_a, conv_b))
    np.testing.assert_allclose(curvature_input, branches, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", [name for name in models.available_models() if name != "vgg16"])
def test_every_registered_model_has_a_complete_non_negative_curvature_estimate(name, rng):
    from numcnn.sdlm import layers_without_curvature
    from numcnn.train import make_loss

    spec = models.get_spec(name)
    model = models.build(name, rng=rng, dtype=np.float64)
    assert layers_without_curvature(model) == []
    images = rng.standard_normal((4, *spec.input_shape))
    estimate = gauss_newton_diagonal(model, make_loss(spec), images, rng.integers(0, 10, size=4), batch_size=2)
    for param_name, param, _ in model.named_parameters():
        assert estimate[param_name].shape == param.shape
        assert (estimate[param_name] >= 0).all() and estimate[param_name].any(), param_name
