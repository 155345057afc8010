"""``numcnn gradcheck`` never cries wolf on a correct model, and still catches a 1% error (issue 8, item 1).

Both directions on every registered model: the check as ``numcnn gradcheck`` runs it passes, and the same
check fails once a layer's backward scales a parameter gradient, or the gradient it passes on, by 1.01.
vgg16 is left out here: one float64 forward pass of one 224×224 image takes 15-30 s on the CI machine,
so even one entry per tensor is ~20 minutes; it runs the same code (Conv2d, ReLU, MaxPool2d, Dropout,
Flatten, all covered by the other models) and ``numcnn gradcheck vgg16`` checks it at its light defaults.
"""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import kernels, models
from numcnn.cli import main
from numcnn.gradcheck import check_model
from numcnn.layers.flat import walk_layers

FAST_MODELS = ["lenet5", "lenet5_1998", "base", "base_dropout", "bn", "bn_dropout", "sk_0.2", "sk_0.5"]
SLOW_MODELS = ["resnet_mnist", "sk", "sk_1", "sk_1.5", "sk_2"]
TOO_LARGE = {"vgg16"}


@pytest.fixture(autouse=True)
def single_threaded_kernels():
    """The numpy backend: a gradient check runs hundreds of forward passes of two images, where
    numba's thread pool costs more than it saves (10x slower on a loaded 2-core machine)."""
    with kernels.use_backend("numpy"):
        yield


def test_the_lists_cover_every_registered_model():
    assert set(FAST_MODELS) | set(SLOW_MODELS) | TOO_LARGE == set(models.available_models())


def every_model(fast_ones=FAST_MODELS, slow_ones=SLOW_MODELS):
    return [*fast_ones, *(pytest.param(name, marks=pytest.mark.slow) for name in slow_ones)]


def scale_backward(layer: numcnn.Layer, what: str, factor: float = 1.01) -> None:
    """Plant a bug: ``layer.backward`` scales its first parameter's gradient (``what="parameter"``) or the
    gradient it returns (``"input"``) by ``factor``."""
    original = layer.backward
    first = next(iter(layer.params))

    def backward(grad_output, need_input_grad=True):
        before = layer.grads[first].copy()
        grad_input = original(grad_output, need_input_grad)
        if what == "parameter":
            layer.grads[first][...] = before + factor * (layer.grads[first] - before)
            return grad_input
        return None if grad_input is None else grad_input * factor

    layer.backward = backward


def parameterised_layers(model: numcnn.Layer) -> list[numcnn.Layer]:
    return [layer for layer in walk_layers(model) if layer.params]


@pytest.mark.parametrize("name", every_model())
def test_a_correct_model_passes(name):
    report = check_model(name, batch_size=2, max_checks=3)
    assert report.passed, str(report)
    assert all(entry.status in ("ok", "kink, skipped") for entry in report.entries)


@pytest.mark.parametrize("name", every_model())
def test_a_parameter_gradient_off_by_one_percent_fails(name):
    planted = []

    def plant(model):
        scale_backward(parameterised_layers(model)[0], "parameter")
        planted.append(model.named_parameters()[0][0])  # that layer's first parameter comes first

    report = check_model(name, batch_size=2, max_checks=3, prepare=plant)
    assert not report.passed, str(report)
    failed = [entry.name for entry in report.entries if entry.status == "FAILED"]
    assert failed == planted, str(report)  # exactly the planted tensor
    with pytest.raises(numcnn.NumcnnError, match="gradient check failed"):
        report.raise_if_failed()


@pytest.mark.parametrize("name", every_model())
def test_an_input_gradient_off_by_one_percent_fails(name):
    """The last parameterised layer passes on δ·1.01: every tensor before it must notice."""

    def plant(model):
        scale_backward(parameterised_layers(model)[-1], "input")

    report = check_model(name, batch_size=2, max_checks=3, prepare=plant)
    assert not report.passed, str(report)
    assert report["input"].status == "FAILED", str(report)


# -- the causes of the false alarms, one small case each ------------------------------------------------


def test_an_exactly_zero_gradient_passes(rng):
    """The issue's ``bn`` case: the first BN's β shifts a whole channel, which max pooling keeps and the next
    BN removes, so ∂E/∂β is exactly 0 while finite differences give round-off (~4e-10). The norm-wise
    relative error was 1: FAILED."""
    model = models.build("bn", rng=0, dtype=np.float64)
    report = numcnn.gradcheck(
        model, rng.standard_normal((2, 1, 28, 28)), loss=numcnn.CrossEntropyLoss(), targets=np.array([3, 7]),
        max_checks=4, rng=rng,
    )  # fmt: skip
    grads = {name: grad for name, _, grad in model.named_parameters()}
    assert np.max(np.abs(grads["1.bias"])) < 1e-12  # zero but for rounding
    assert report["1.bias"].passed and report["1.bias"].max_abs_error > 0, str(report)
    assert report.passed, str(report)


def test_a_gradient_at_round_off_level_passes(rng):
    """Gradients of ~1e-6 (tiny weights, as in MatConvNet's N(0, 0.01²) models): a round-off error of
    ~1e-10 is a relative error of ~1e-4, which the old norm-wise test called FAILED."""
    layer = numcnn.Linear(20, 10, rng=rng, dtype=np.float64)
    layer.params["weight"] *= 1e-5
    report = numcnn.gradcheck(
        numcnn.Sequential(layer), rng.standard_normal((2, 20)), loss=numcnn.CrossEntropyLoss(),
        targets=np.array([1, 2]), rng=rng,
    )  # fmt: skip
    assert report["input"].relative_error > 1e-6  # what the old criterion compared with 1e-6
    assert report.passed, str(report)


def test_a_step_across_a_relu_kink_is_not_a_failure(rng):
    """A ReLU input 3e-7 from zero: the steps ±1e-6 straddle the kink, the central difference is off by
    ~half the slope's jump. A smaller step avoids the kink and the entry passes."""
    x = np.array([[3e-7, -0.5, 0.8]])
    report = numcnn.gradcheck(numcnn.ReLU(), x, rng=rng)
    assert report.passed, str(report)
    assert report["input"].kinks == 0


def test_an_entry_sitting_on_a_kink_is_skipped(rng):
    """A ReLU input exactly at 0: every step straddles the kink; it is reported, not failed."""
    x = np.array([[0.0, -0.5, 0.8, 1.3]])
    report = numcnn.gradcheck(numcnn.ReLU(), x, rng=rng)
    assert report.passed, str(report)
    assert report["input"].kinks == 1 and report["input"].checked == 4
    assert "1 entries at ReLU/max-pooling kinks skipped" in str(report)


def test_a_tensor_whose_every_entry_is_a_kink_says_so(rng):
    report = numcnn.gradcheck(numcnn.ReLU(), np.zeros((1, 3)), rng=rng)
    assert report["input"].status == "kink, skipped"
    assert "kink, skipped" in str(report)


def test_a_wrong_gradient_next_to_a_kink_still_fails(rng):
    class BrokenReLU(numcnn.ReLU):
        def backward(self, grad_output, need_input_grad=True):
            return super().backward(grad_output, need_input_grad) * 1.01

    report = numcnn.gradcheck(BrokenReLU(), np.array([[3e-7, -0.5, 0.8, 1.2]]), rng=rng)
    assert report["input"].status == "FAILED", str(report)


def test_max_pooling_near_ties_passes(rng):
    """Two window entries 2e-7 apart: a step of 1e-6 swaps the maximum."""
    x = rng.uniform(-1, 1, size=(1, 1, 4, 4))
    x[0, 0, 0, :2] = 3.0, 3.0 + 2e-7
    report = numcnn.gradcheck(numcnn.MaxPool2d(2), x, rng=rng)
    assert report.passed, str(report)


# -- the command ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["bn"], ["base_dropout"], ["lenet5", "--max-checks", "3"], ["sk_0.2"]])
def test_the_issue_cases_exit_0(argv, capsys):
    assert main(["gradcheck", *argv]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("passed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5_1998", "resnet_mnist"])
def test_gradcheck_command_at_defaults(name, capsys):
    """``numcnn gradcheck M`` exits 0 at its defaults (with the issue's cases above; every other model is
    checked above with fewer entries, as the defaults of all of them take ~15 minutes here)."""
    assert main(["gradcheck", name]) == 0, capsys.readouterr().out
