"""Backends at the model level: dispatch, transparent fusion, whole training steps, gradchecks on the
fast path, and the flat parameter buffer behind the optimiser."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import numcnn
from numcnn import kernels
from numcnn.inference import inference_model
from numcnn.layers.flat import contiguous_span, flatten_parameters


# -- dispatch ---------------------------------------------------------------------------------
def test_set_backend_and_use_backend_switch_and_restore():
    before = kernels.backend_name()
    with kernels.use_backend("reference") as backend:
        assert backend.name == kernels.backend_name() == "reference"
        with kernels.use_backend("numpy"):
            assert kernels.backend_name() == "numpy"
        assert kernels.backend_name() == "reference"
    assert kernels.backend_name() == before
    previous = kernels.backend_name()
    try:
        assert numcnn.set_backend("numpy") == "numpy"
    finally:
        numcnn.set_backend(previous)


def test_unknown_backend_is_a_configuration_error():
    with pytest.raises(numcnn.ConfigurationError, match="unknown backend"):
        kernels.set_backend("cuda")


def test_auto_falls_back_to_numpy_without_numba(monkeypatch):
    monkeypatch.setattr(kernels, "_installed", lambda package: package != "numba")
    assert kernels.get_backend("auto").name == "numpy"
    assert "numba" not in kernels.available_backends()
    with pytest.raises(numcnn.ConfigurationError, match="numba"):
        kernels.get_backend("numba")


def test_environment_variable_picks_the_backend_and_import_stays_light():
    code = (
        "import sys, numcnn; assert 'numba' not in sys.modules, 'import numcnn imported numba'; "
        "print(numcnn.kernels.backend_name()); assert 'numba' not in sys.modules"
    )
    for name in ("reference", "numpy"):
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=_env(NUMCNN_BACKEND=name), check=True
        )
        assert result.stdout.strip() == name


def _env(**extra):
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(__import__("pathlib").Path(numcnn.__file__).parents[1])
    env.update(extra)
    return env


# -- fusion and whole models -----------------------------------------------------------------------
def small_lenet(dtype, rng):
    return numcnn.Sequential(
        numcnn.Conv2d(1, 3, 5, padding=2, rng=rng, dtype=dtype),
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),
        numcnn.Conv2d(3, 4, 3, rng=rng, dtype=dtype),
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),
        numcnn.Flatten(),
        numcnn.Linear(16, 8, rng=rng, dtype=dtype),
        numcnn.ReLU(),
        numcnn.Linear(8, 3, rng=rng, dtype=dtype),
    )


FAST = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not kernels.numba_available(), reason="no numba"))]


NUMBA = pytest.mark.skipif(not kernels.numba_available(), reason="no numba")


def _loss_and_gradients(model, x, targets, backend):
    with kernels.use_backend(backend):
        model.zero_grad()
        loss = numcnn.CrossEntropyLoss()
        value = loss(model.forward(x), targets)
        grad_x = model.backward(loss.backward())
        return value, grad_x, [g.copy() for _, g in model.parameters()]


def _assert_same_results(results, expected, dtype, close):
    close(results[0], expected[0], dtype)
    close(results[1], expected[1], dtype)
    for ours, theirs in zip(results[2], expected[2]):
        close(ours, theirs, dtype)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_sequential_gives_the_reference_outputs_and_gradients(backend, dtype, close):
    model = small_lenet(dtype, np.random.default_rng(1))
    x = np.random.default_rng(2).integers(-3, 4, size=(3, 1, 12, 12)).astype(dtype)  # ties and zeros
    targets = np.array([0, 2, 1])
    expected = _loss_and_gradients(model, x, targets, "reference")
    results = _loss_and_gradients(model, x, targets, backend)
    # Both ReLU → MaxPool2d pairs ran fused; numba also fuses the convolution before each of them.
    fused = {step for step in model.steps if step[1] > step[0]}
    assert fused == ({(0, 2), (3, 5)} if backend == "numba" else {(1, 2), (4, 5)})
    _assert_same_results(results, expected, dtype, close)


def test_a_relu_that_ran_fused_explains_itself_and_still_works_alone():
    model = small_lenet(np.float64, np.random.default_rng(0))
    with kernels.use_backend("numpy"):
        model.forward(np.ones((1, 1, 12, 12)))
        with pytest.raises(numcnn.NumcnnError, match="fused"):
            model[1].backward(np.ones((1, 3, 12, 12)))
        relu = model[1]
        y = relu.forward(np.array([[-1.0, 2.0]]))
        np.testing.assert_array_equal(relu.backward(np.ones_like(y)), [[0.0, 1.0]])


def test_fusion_can_be_switched_off_per_model():
    model = small_lenet(np.float64, np.random.default_rng(0))
    model.allow_fusion = False
    with kernels.use_backend("numpy"):
        model.forward(np.ones((1, 1, 12, 12)))
    assert all(first == last for first, last in model.steps)


@NUMBA
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_relu_runs_as_one_step_in_training_on_numba(dtype, close):
    rng = np.random.default_rng(3)
    model = numcnn.Sequential(
        numcnn.Conv2d(1, 4, 3, rng=rng, dtype=dtype),
        numcnn.BatchNorm2d(4, dtype=dtype),
        numcnn.ReLU(),  # fused into the batch norm
        numcnn.Conv2d(4, 4, 3, rng=rng, dtype=dtype),
        numcnn.BatchNorm2d(4, dtype=dtype),
        numcnn.ReLU(),  # fused into the pooling instead
        numcnn.MaxPool2d(2),
        numcnn.Flatten(),
        numcnn.Linear(64, 3, rng=rng, dtype=dtype),
    )
    x = np.random.default_rng(4).standard_normal((5, 1, 12, 12)).astype(dtype)
    targets = np.array([0, 2, 1, 1, 0])
    running = {name: value.copy() for name, value in model.state_dict().items()}
    expected = _loss_and_gradients(model, x, targets, "reference")
    reference_state = model.state_dict()
    model.load_state_dict(running)
    results = _loss_and_gradients(model, x, targets, "numba")
    assert {step for step in model.steps if step[1] > step[0]} == {(1, 2), (5, 6)}
    _assert_same_results(results, expected, dtype, close)
    for name, value in model.state_dict().items():  # the running statistics were updated alike
        close(value, reference_state[name], dtype)
    model.eval()
    with kernels.use_backend("numba"):
        model.forward(x)
    assert {step for step in model.steps if step[1] > step[0]} == {(5, 6)}  # evaluation: BN on its own


@NUMBA
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_relu_runs_as_one_step_on_numba(dtype, close):
    rng = np.random.default_rng(7)
    model = numcnn.Sequential(
        numcnn.Conv2d(1, 4, 3, rng=rng, dtype=dtype),
        numcnn.ReLU(),  # fused into the convolution
        numcnn.Conv2d(4, 4, 3, rng=rng, dtype=dtype),
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),  # Conv2d → ReLU → MaxPool2d as a whole
        numcnn.Flatten(),
        numcnn.Linear(64, 3, rng=rng, dtype=dtype),
    )
    x = np.random.default_rng(8).standard_normal((5, 1, 12, 12)).astype(dtype)
    targets = np.array([0, 2, 1, 1, 0])
    expected = _loss_and_gradients(model, x, targets, "reference")
    results = _loss_and_gradients(model, x, targets, "numba")
    assert {step for step in model.steps if step[1] > step[0]} == {(0, 1), (2, 4)}
    _assert_same_results(results, expected, dtype, close)


def _residual_block(rng, dtype):
    return numcnn.Graph(
        [
            ("conv1", numcnn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=dtype)),
            ("bn1", numcnn.BatchNorm2d(3, dtype=dtype)),
            ("relu1", numcnn.ReLU()),
            ("conv2", numcnn.Conv2d(3, 2, 3, padding=1, rng=rng, dtype=dtype)),
            ("bn2", numcnn.BatchNorm2d(2, dtype=dtype)),
            ("add", numcnn.Add(), ("input", "bn2")),
            ("relu2", numcnn.ReLU()),
            ("flat", numcnn.Flatten()),
            ("fc", numcnn.Linear(2 * 6 * 6, 3, rng=rng, dtype=dtype)),
        ]
    )


@NUMBA
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_graph_runs_batch_norm_relu_and_add_relu_as_one_step_where_only_the_relu_reads_them(dtype, close):
    model = _residual_block(np.random.default_rng(5), dtype)
    x = np.random.default_rng(6).standard_normal((4, 2, 6, 6)).astype(dtype)
    targets = np.array([0, 1, 2, 1])
    expected = _loss_and_gradients(model, x, targets, "reference")
    assert model.cache == {}  # the reference backend never fuses
    results = _loss_and_gradients(model, x, targets, "numba")
    assert model.cache == {"relu1": "bn1", "relu2": "add"}  # bn2 feeds the Add, not a ReLU
    _assert_same_results(results, expected, dtype, close)
    # A hook keeps its layer's output: that pair does not fuse, the same numbers.
    seen = []
    model["bn1"].register_forward_hook(lambda layer, inputs, output: seen.append(output.shape))
    hooked = _loss_and_gradients(model, x, targets, "numba")
    assert model.cache == {"relu2": "add"} and seen == [(4, 3, 6, 6)]
    _assert_same_results(hooked, expected, dtype, close)
    model["relu2"].register_forward_hook(lambda layer, inputs, output: seen.append(output.shape))
    hooked = _loss_and_gradients(model, x, targets, "numba")
    assert model.cache == {} and seen[1:] == [(4, 3, 6, 6), (4, 2, 6, 6)]
    _assert_same_results(hooked, expected, dtype, close)
    # For inference the batch norms are folded into the convolutions: conv1 (now named bn1) → relu1
    # fuses, add → relu2 would but for the hook the folded copy keeps.
    folded = inference_model(model)
    with kernels.use_backend("reference"):
        want = folded.forward(x)
    with kernels.use_backend("numba"):
        got = folded.forward(x)
    assert folded.cache == {"relu1": "bn1"}
    close(got, want, dtype)


@NUMBA
def test_the_fused_add_relu_equals_the_sum_then_the_relu_bit_for_bit(rng):
    """The numba backend's one pass over two inputs in any plane layout, against NumPy's sum and ReLU."""
    backend = kernels.get_backend("numba")
    a = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    b = np.ascontiguousarray(rng.standard_normal((4, 3, 5, 6)).astype(np.float32)).transpose(1, 0, 2, 3)
    a[0, 0, 0, :3] = [1.0, -1.0, 0.5]
    b[0, 0, 0, :3] = [-1.0, 0.5, -0.5]  # sums exactly 0, then −0.5 and 0: the ReLU's edge
    y, cache = backend.add_relu_forward((a, b))
    np.testing.assert_array_equal(y, np.maximum(a + b, 0))
    delta = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(backend.relu_backward(delta, cache), delta * (a + b > 0))
    with pytest.raises(numcnn.ShapeError, match="input 1 has shape"):
        numcnn.Add().forward_relu(a, a[:, :2])


def _weights_after_steps(backend, model_name, x, targets, dtype, steps):
    """The state dict of a registry model after ``steps`` SGD-with-momentum steps on ``backend``."""
    with kernels.use_backend(backend):
        model = numcnn.models.build(model_name, rng=0, dtype=dtype)
        optimizer = numcnn.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss = numcnn.CrossEntropyLoss()
        for _ in range(steps):
            optimizer.zero_grad()
            loss(model.forward(x), targets)
            model.backward(loss.backward(), need_input_grad=False)
            optimizer.step()
        return model.state_dict()


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lenet5_training_steps_agree_between_backends(backend, dtype):
    """Three SGD-with-momentum steps of the registry's LeNet-5 from the same start on each backend."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 1, 28, 28)).astype(dtype)
    targets = rng.integers(0, 10, size=4)
    final = {name: _weights_after_steps(name, "lenet5", x, targets, dtype, 3) for name in ("reference", backend)}
    rtol = 1e-9 if dtype == np.float64 else 1e-3
    for key, value in final["reference"].items():
        np.testing.assert_allclose(final[backend][key], value, rtol=rtol, atol=rtol * 1e-2, err_msg=key)


@pytest.mark.skipif(not kernels.numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("model_name", ["sk", "resnet_mnist"])
def test_winograd_models_train_like_the_reference_in_float64(model_name):
    """Two SGD steps of SK (a Sequential) and resnet_mnist (a Graph with additions) on numba -- SK's
    fourth convolution by Winograd, the 16–32-channel 3×3 layers by the direct kernels, the rest by
    im2col + GEMM -- end with the reference backend's weights, to rounding."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 1, 28, 28))
    targets = rng.integers(0, 10, size=3)
    final = {name: _weights_after_steps(name, model_name, x, targets, np.float64, 2) for name in ("reference", "numba")}
    numba = kernels.get_backend("numba")
    assert numba.use_winograd((50, 50, 3, 3), (1, 1), (8, 8))  # SK's fourth convolution
    assert numba.use_direct((32, 32, 3, 3), (1, 1), 14)  # resnet_mnist's second stage
    for key, value in final["reference"].items():
        np.testing.assert_allclose(final["numba"][key], value, rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.skipif(not kernels.numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("path", ["direct", "winograd"])
def test_gradcheck_passes_through_the_3x3_paths(path, rng, distinct_values, monkeypatch):
    """Finite differences in float64 through a 16-channel convolution run by the register-blocked direct
    kernels (its input gradient as a correlation) or, with those switched off, by Winograd."""
    numba = kernels.get_backend("numba")
    if path == "winograd":
        monkeypatch.setattr(numba, "direct_max_filters_times_rows", 0)
    model = numcnn.Sequential(
        numcnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=np.float64),
        numcnn.ReLU(),
        numcnn.Flatten(),
        numcnn.Linear(16 * 8 * 8, 2, rng=rng, dtype=np.float64),
    )
    assert numba.use_winograd((16, 16, 3, 3), (1, 1), (8, 8)) == (path == "winograd")
    assert numba.use_direct((16, 16, 3, 3), (1, 1), 8) == (path == "direct")
    x = distinct_values((2, 16, 8, 8))
    with kernels.use_backend("numba"):
        report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 0]), rng=rng)
    assert report.passed, str(report)


def test_gradcheck_passes_through_the_fused_relu_steps(rng, distinct_values, monkeypatch):
    """Finite differences in float64 through BatchNorm2d → ReLU (training), Winograd with the ReLU in its
    output transform, and Winograd with the 2×2 pooling in it -- each one fused step on numba."""
    monkeypatch.setattr(kernels.get_backend("numba"), "direct_max_filters_times_rows", 0)  # Winograd's layers
    model = numcnn.Sequential(
        numcnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=np.float64),
        numcnn.BatchNorm2d(16, dtype=np.float64),
        numcnn.ReLU(),  # into the batch norm
        numcnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=np.float64),
        numcnn.ReLU(),  # into Winograd's output transform
        numcnn.Conv2d(16, 16, 3, padding=1, rng=rng, dtype=np.float64),
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),  # the three as Winograd with the pooling in its output transform
        numcnn.Flatten(),
        numcnn.Linear(16 * 4 * 4, 2, rng=rng, dtype=np.float64),
    )
    x = distinct_values((2, 16, 8, 8))
    with kernels.use_backend("numba"):
        report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 0]), rng=rng)
        model.forward(x)
    assert report.passed, str(report)
    assert {step for step in model.steps if step[1] > step[0]} == {(1, 2), (3, 4), (5, 7)}


@NUMBA
def test_gradcheck_passes_through_a_residual_blocks_fused_steps(rng, distinct_values):
    """Finite differences in float64 through a graph on numba whose BatchNorm2d → ReLU and Add → ReLU
    (the residual block's end) each run as one step."""
    model = _residual_block(rng, np.float64)
    x = distinct_values((4, 2, 6, 6))
    with kernels.use_backend("numba"):
        report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([0, 1, 2, 1]), rng=rng)
        model.forward(x)
    assert model.cache == {"relu1": "bn1", "relu2": "add"}
    assert report.passed, str(report)


@pytest.mark.parametrize("backend", FAST)
def test_gradcheck_passes_on_the_fast_path(backend, rng, distinct_values):
    model = numcnn.Sequential(
        numcnn.Conv2d(1, 2, 5, padding=2, rng=rng, dtype=np.float64),  # numba: direct kernels
        numcnn.ReLU(),
        numcnn.MaxPool2d(2),
        numcnn.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64),  # im2col + GEMM
        numcnn.ReLU(),
        numcnn.MaxPool2d(3, stride=1),  # overlapping
        numcnn.Flatten(),
        numcnn.Linear(12, 2, rng=rng, dtype=np.float64),
    )
    x = distinct_values((2, 1, 16, 16))
    with kernels.use_backend(backend):
        report = numcnn.gradcheck(model, x, loss=numcnn.CrossEntropyLoss(), targets=np.array([1, 0]), rng=rng)
    assert report.passed, str(report)


# -- flat parameters and the optimiser ---------------------------------------------------------------
def test_build_puts_parameters_into_one_buffer_without_changing_the_contract(monkeypatch):
    import numcnn.models.registry as registry

    model = numcnn.models.build("lenet5", rng=0)
    monkeypatch.setattr(registry, "flatten_parameters", lambda model: None)
    separate = numcnn.models.build("lenet5", rng=0)  # the same draws, each array on its own
    assert contiguous_span([p for _, p, _ in separate.named_parameters()]) is None
    params = [p for _, p, _ in model.named_parameters()]
    grads = [g for _, _, g in model.named_parameters()]
    assert contiguous_span(params) is not None and contiguous_span(grads) is not None
    for (name, a, _), (_, b, _) in zip(model.named_parameters(), separate.named_parameters(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)  # flattening keeps every value
    conv = model[0]
    assert conv.weight is conv.params["weight"] and conv.weight.shape == (6, 1, 5, 5)
    conv.grads["weight"] += 1.0
    model.zero_grad()
    assert not conv.grads["weight"].any()


def sgd_run(model, steps, state=None, **settings):
    optimizer = numcnn.SGD(model.parameters(), **settings)
    if state is not None:
        optimizer.load_state_dict(state)
    rng = np.random.default_rng(3)
    for _ in range(steps):
        for _, grad in model.parameters():
            grad[...] = rng.standard_normal(grad.shape)
        optimizer.step()
    return optimizer


def unflattened_lenet():
    model = numcnn.models.build("lenet5", rng=0)
    for layer in model:
        for name in layer.params:
            layer.params[name] = layer.params[name].copy()
            layer.grads[name] = layer.grads[name].copy()
    return model


@pytest.mark.parametrize("settings", [{"lr": 0.1}, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}])
def test_flat_sgd_gives_bitwise_the_per_array_result(settings):
    flat_model, plain_model = numcnn.models.build("lenet5", rng=0), unflattened_lenet()
    flat_optimizer = sgd_run(flat_model, 4, **settings)
    plain_optimizer = sgd_run(plain_model, 4, **settings)
    assert flat_optimizer._flat[0] is not None and plain_optimizer._flat[0] is None
    for (name, a, _), (_, b, _) in zip(flat_model.named_parameters(), plain_model.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    flat_state, plain_state = flat_optimizer.state_dict(), plain_optimizer.state_dict()
    assert flat_state.keys() == plain_state.keys()
    for key in flat_state:
        np.testing.assert_array_equal(flat_state[key], plain_state[key])


def test_flat_optimiser_state_round_trips_through_state_dict():
    settings = {"lr": 0.05, "momentum": 0.9}
    straight = numcnn.models.build("lenet5", rng=0)
    sgd_run(straight, 2, **settings)  # uses the same gradients as the two halves below
    resumed = numcnn.models.build("lenet5", rng=0)
    first = sgd_run(resumed, 1, **settings)
    # A new optimiser continues from the saved momentum: state arrives as separate arrays.
    second = numcnn.SGD(resumed.parameters(), **settings)
    second.load_state_dict(first.state_dict())
    rng = np.random.default_rng(3)
    for _ in range(2):
        for _, grad in resumed.parameters():
            grad[...] = rng.standard_normal(grad.shape)
    second.step()
    for (name, a, _), (_, b, _) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)


def test_flatten_parameters_keeps_shared_parameters_shared():
    shared = numcnn.Linear(3, 3, rng=0)
    model = numcnn.Sequential(shared, numcnn.ReLU(), shared)
    params, _grads = flatten_parameters(model)
    assert params.size == 12 and model[0].params["weight"] is model[2].params["weight"]
    assert flatten_parameters(numcnn.Sequential(numcnn.ReLU())) is None


@pytest.fixture
def thread_counts(monkeypatch):
    """The thread module, with the counts it changes restored afterwards (later tests run with the
    numba threads and OpenBLAS limit they started with), and a reader of the counts in force."""
    from threadpoolctl import ThreadpoolController, threadpool_info

    from numcnn.kernels import threads

    monkeypatch.setattr(threads, "_explicit", threads._explicit)
    monkeypatch.setattr(threads, "_blas_limiter", threads._blas_limiter)
    # Per library: NumPy's OpenBLAS and SciPy's (both "libscipy_openblas") may hold different counts,
    # and a later test's numbers depend on NumPy's (the MPI sweep compares bits with one-thread ranks).
    blas_before = {
        library.filepath: library.num_threads
        for library in ThreadpoolController().lib_controllers
        if library.user_api == "blas"
    }
    numba = sys.modules.get("numba")
    numba_before = numba.get_num_threads() if numba is not None else None

    def in_force() -> dict[str, int]:
        counts = {"blas": max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")}
        if "numba" in sys.modules:
            counts["numba"] = sys.modules["numba"].get_num_threads()
        return counts

    yield threads, in_force
    for library in ThreadpoolController().lib_controllers:
        if library.filepath in blas_before:
            library.set_num_threads(blas_before[library.filepath])
    if numba_before is not None:
        numba.set_num_threads(numba_before)


def test_set_threads_sets_the_thread_counts(thread_counts):
    threads, in_force = thread_counts
    assert threads.set_threads(2, "numpy") == {"blas": 2}
    assert in_force()["blas"] == min(2, os.cpu_count())  # OpenBLAS never starts more threads than CPUs
    assert threads.set_threads(1, "numpy", blas_threads=1) == {"blas": 1}
    assert in_force()["blas"] == 1
    assert threads.thread_report()["cpus"] >= 1
    with pytest.raises(numcnn.ConfigurationError):
        threads.set_threads(0)


def test_set_threads_defaults_to_the_active_backend(thread_counts):
    """With numba active, a bare set_threads(n) must leave OpenBLAS on one thread (oversubscription)."""
    pytest.importorskip("numba")
    from numcnn.kernels import use_backend

    threads, in_force = thread_counts
    with use_backend("numba"):
        assert threads.set_threads(1) == {"numba": 1, "blas": 1}
        assert in_force() == {"numba": 1, "blas": 1}
    with use_backend("numpy"):
        assert threads.set_threads(1) == {"blas": 1}
        assert threads.set_threads(2) == {"blas": 2}
        assert in_force()["blas"] == min(2, os.cpu_count())
