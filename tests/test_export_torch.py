"""The PyTorch twin (numcnn.export.to_torch) computes numcnn's function: outputs, ∂E/∂x and every
parameter gradient agree in float64 to 1e-10; PyTorch weights load back into numcnn."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn import models
from numcnn.cli.main import main
from numcnn.errors import CheckpointError, ConfigurationError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOLERANCE = 1e-10
# vgg16's layer types (Conv2d, ReLU, MaxPool2d, Dropout, Flatten, Linear) are all covered by the others;
# its 138M float64 weights would make this test slow.
REGISTERED = [name for name in models.available_models() if name != "vgg16"]


def compare_with_twin(model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Outputs, input gradient and parameter gradients of ``model`` and its twin, for a random δ."""
    twin = numcnn.export.to_torch(model)
    y = model.forward(x)
    delta = rng.standard_normal(y.shape)
    model.zero_grad()
    grad_input = model.backward(delta)
    inputs = torch.from_numpy(x).requires_grad_(True)
    theirs = twin(inputs)
    theirs.backward(torch.from_numpy(delta))
    np.testing.assert_allclose(theirs.detach().numpy(), y, rtol=0, atol=TOLERANCE * max(1.0, np.abs(y).max()))
    np.testing.assert_allclose(inputs.grad.numpy(), grad_input, rtol=0, atol=TOLERANCE)
    twin_parameters = dict(twin.named_parameters())
    for name, _, grad in model.named_parameters():
        np.testing.assert_allclose(twin_parameters[name].grad.numpy(), grad, rtol=0, atol=TOLERANCE, err_msg=name)


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_models_twins_agree_in_float64(name, rng, randomised_statistics):
    model = models.build(name, rng=1, dtype=np.float64)
    randomised_statistics(model, rng)
    model.eval()  # running statistics; dropout off (its masks are random)
    compare_with_twin(model, rng.standard_normal((3, *model.spec.input_shape)), rng)


def test_batch_statistics_in_training_mode_agree(rng):
    model = models.build("resnet_mnist", rng=2, dtype=np.float64)
    compare_with_twin(model.train(), rng.standard_normal((4, 1, 28, 28)), rng)


@pytest.mark.parametrize("kind", ["sequential", "graph"])
def test_user_built_models_twins_agree(kind, user_models, rng, randomised_statistics):
    builder, shape = user_models[kind]
    # sparsity 0: Ω is a term of the objective, not of the network's function the twin computes
    model = builder(rng, dtype=np.float64, sparsity=0.0) if kind == "sequential" else builder(rng, dtype=np.float64)
    randomised_statistics(model, rng)
    compare_with_twin(model.eval(), rng.standard_normal((3, *shape)), rng)


def test_twin_state_dict_names_are_numcnn_names():
    model = models.build("lenet5_1998", rng=0)
    assert list(numcnn.export.to_torch(model).state_dict()) == list(model.state_dict())


def test_pytorch_weights_load_into_numcnn(tmp_path, rng):
    source = models.build("resnet_mnist", rng=3)
    target = models.build("resnet_mnist", rng=4)
    path = tmp_path / "weights.pt"
    torch.save(numcnn.export.to_torch(source).state_dict(), path)
    numcnn.load_torch_state_dict(target, path)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(target.eval().forward(x), source.eval().forward(x))


def test_pytorch_weights_mismatch_is_a_one_line_error_and_changes_nothing(rng):
    model = models.build("lenet5", rng=0)
    before = model.state_dict()
    state = numcnn.export.to_torch(model).state_dict()
    state["0.weight"] = torch.zeros(7, 1, 5, 5)
    with pytest.raises(CheckpointError, match=r"0.weight: saved shape \(7, 1, 5, 5\)"):
        numcnn.load_torch_state_dict(model, state)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    del state["0.weight"]
    with pytest.raises(CheckpointError, match=r"missing \['0.weight'\]"):
        numcnn.load_torch_state_dict(model, state)


def test_a_layer_without_an_entry_is_named():
    class Custom(numcnn.ReLU):
        pass

    with pytest.raises(ConfigurationError, match="layer type Custom has no entry"):
        numcnn.export.to_torch(numcnn.Sequential(numcnn.Linear(2, 2), Custom()))


def test_export_command_writes_a_weights_only_state_dict(tmp_path, capsys):
    model = models.build("lenet5_1998", rng=0)
    numcnn.save(model, tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--format", "torch", "-o", str(tmp_path / "w.pt")]) == 0
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    np.testing.assert_array_equal(state["2.beta"].numpy(), model.state_dict()["2.beta"])


def test_bench_times_a_graph_model_against_its_twin(monkeypatch):
    """``numcnn bench --model resnet_mnist`` used to fail ("optimizer got an empty parameter list")."""
    from numcnn.benchmark import BenchConfig, run_benchmark, runner

    monkeypatch.setattr(runner, "TEST_IMAGES", 8)
    config = BenchConfig(
        model="resnet_mnist", batch_sizes=(4,), steps=1, repeats=3, warmup_steps=1, backend="numpy",
        compile_time=False, threads=1,
    )  # fmt: skip
    result = run_benchmark(config, log=lambda line: None)
    assert result.torch_note.startswith("PyTorch") and "threads" in result.torch_note
    assert all(len(m.torch) == 3 and min(m.torch) > 0 for m in result.measurements)
