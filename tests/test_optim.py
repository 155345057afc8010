"""SGD: the update rule, momentum's two written forms, weight decay, groups and state."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn.errors import CheckpointError, ConfigurationError
from numcnn.optim import SGD


def quadratic_gradient(w: np.ndarray) -> np.ndarray:
    # E(w) = ½ wᵀ A w with a fixed positive-definite A.
    a = np.array([[3.0, 0.5], [0.5, 1.0]])
    return a @ w


def test_plain_sgd_step_is_w_minus_lr_times_grad():
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    SGD([(w, g)], lr=0.1).step()
    np.testing.assert_array_equal(w, [0.95, -2.025])


def test_momentum_matches_seed_002_form_over_many_steps():
    lr, mu = 0.05, 0.9
    w = np.array([1.0, -1.0])
    grad = np.zeros(2)
    optimizer = SGD([(w, grad)], lr=lr, momentum=mu)
    w_seed, v_seed = w.copy(), np.zeros(2)  # seed 002: v ← μ·v − η·∇E;  w ← w + v
    for _ in range(25):
        grad[...] = quadratic_gradient(w)
        optimizer.step()
        v_seed = mu * v_seed - lr * quadratic_gradient(w_seed)
        w_seed = w_seed + v_seed
        np.testing.assert_allclose(w, w_seed, rtol=1e-12, atol=1e-15)
    assert np.linalg.norm(w) < 0.5  # and it actually descends


def test_weight_decay_adds_lambda_w_to_the_gradient():
    w, g = np.array([2.0]), np.array([0.0])
    SGD([(w, g)], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_allclose(w, [2.0 - 0.5 * 0.1 * 2.0])


def test_parameter_groups_have_their_own_learning_rates():
    w1, g1, w2, g2 = np.ones(1), np.ones(1), np.ones(1), np.ones(1)
    optimizer = SGD([{"params": [(w1, g1)], "lr": 0.5}, {"params": [(w2, g2)]}], lr=0.1)
    optimizer.step()
    assert w1[0] == pytest.approx(0.5) and w2[0] == pytest.approx(0.9)
    optimizer.set_lr(0.2)
    optimizer.step()
    assert w1[0] == pytest.approx(0.3) and w2[0] == pytest.approx(0.7)


def test_state_dict_round_trip_resumes_the_same_trajectory():
    def run(steps, resume_after=None):
        w, g = np.array([1.0, 2.0]), np.zeros(2)
        optimizer = SGD([(w, g)], lr=0.1, momentum=0.8)
        for step in range(steps):
            if step == resume_after:
                state = optimizer.state_dict()
                optimizer = SGD([(w, g)], lr=0.1, momentum=0.8)
                optimizer.load_state_dict(state)
            g[...] = quadratic_gradient(w)
            optimizer.step()
        return w

    np.testing.assert_array_equal(run(6), run(6, resume_after=3))


def test_bad_settings_give_clear_errors():
    with pytest.raises(ConfigurationError, match="must be >= 0"):
        SGD([(np.ones(1), np.ones(1))], lr=-1)
    with pytest.raises(ConfigurationError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ConfigurationError, match="unknown optimiser setting"):
        SGD([{"params": [(np.ones(1), np.ones(1))], "betas": 1}], lr=0.1)
    optimizer = SGD([(np.ones(2), np.ones(2))], lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError):
        optimizer.load_state_dict({"velocity.5": np.zeros(2)})


def test_online_minibatch_and_full_batch_training_all_fit_a_linear_map(rng):
    x = rng.standard_normal((64, 3))
    true_weight = np.array([[1.5, -2.0, 0.5]])
    y = x @ true_weight.T
    for batch_size in (1, 8, 64):
        layer = numcnn.Linear(3, 1, rng=0, dtype=np.float64)
        loss = numcnn.MSELoss()
        optimizer = SGD(layer.parameters(), lr=0.05 if batch_size == 1 else 0.5, momentum=0.5)
        for _ in range(40):
            for start in range(0, 64, batch_size):
                layer.zero_grad()
                loss.forward(layer.forward(x[start : start + batch_size]), y[start : start + batch_size])
                layer.backward(loss.backward())
                optimizer.step()
        np.testing.assert_allclose(layer.weight, true_weight, atol=1e-3, err_msg=f"batch size {batch_size}")
