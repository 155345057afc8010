"""The benchmark runs end to end on tiny settings (no timing is asserted: CI machines are noisy)."""

from __future__ import annotations

import numpy as np
import pytest

import numcnn
from numcnn.benchmark import BenchConfig, format_report, run_benchmark, summary
from numcnn.cli.main import main


def test_tiny_benchmark_without_torch_reports_every_measurement():
    config = BenchConfig(
        batch_sizes=(4,),
        steps=2,
        repeats=3,
        warmup_steps=1,
        backend="numpy",
        torch=False,
        profile=True,
        profile_steps=1,
    )
    result = run_benchmark(config, log=lambda line: None)
    assert [(m.task, m.batch_size, len(m.numcnn)) for m in result.measurements] == [("train", 4, 3), ("infer", 4, 3)]
    assert all(t > 0 for m in result.measurements for t in m.numcnn)
    assert result.peak_memory[4]["train_mib"] > 0
    text = format_report(result)
    assert "train s/epoch" in text and "infer s/10k" in text and "ReLU+MaxPool2d [1]" in text
    assert "PyTorch" not in text  # --no-torch: the report does not mention it (issue 8)


def test_benchmark_options_are_validated():
    with pytest.raises(numcnn.ConfigurationError, match="repeats"):
        run_benchmark(BenchConfig(repeats=2))
    with pytest.raises(numcnn.ConfigurationError, match="unknown model"):
        run_benchmark(BenchConfig(model="no-such-model"))


def test_summary_is_median_and_range():
    assert summary([3.0, 1.0, 2.0]) == "2.00 (1.00–3.00)"


def test_bench_command_runs(capsys):
    code = main(
        ["bench", "--batch-size", "2", "--steps", "1", "--repeats", "3", "--backend", "reference", "--no-torch"]
    )
    assert code == 0
    assert "numcnn bench: model lenet5, backend reference" in capsys.readouterr().out


@pytest.mark.torch
def test_torch_translation_computes_the_same_function(rng):
    torch = pytest.importorskip("torch")
    from numcnn.benchmark.torch_baseline import build_torch_model

    model = numcnn.models.build("lenet5", rng=0)
    twin = build_torch_model(model.spec, model)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), theirs, rtol=1e-4, atol=1e-5)


def test_several_models_make_one_table(capsys):
    code = main([
        "bench", "--models", "lenet5,resnet_mnist", "--batch-size", "2", "--steps", "1", "--repeats", "3",
        "--infer-images", "4", "--backend", "numpy", "--no-torch", "--no-onnxruntime", "--no-compile-time",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    table = out[out.index("model          batch"):]
    rows = [line.split()[:3] for line in table.splitlines()[2:6]]
    expected = [[model, "2", task] for model in ("lenet5", "resnet_mnist") for task in ("train", "infer")]
    assert rows == expected
    assert "--no-onnxruntime" in table


def test_an_unknown_model_in_the_list_fails_before_any_measurement(capsys):
    assert main(["bench", "--models", "lenet5,nope", "--no-torch"]) != 0
    captured = capsys.readouterr()
    assert "lenet5: batch" not in captured.out and "nope" in captured.err


def test_a_graph_model_is_benchmarked():
    """Graph models are timed too, next to their PyTorch twin when torch is installed."""
    config = BenchConfig(
        model="resnet_mnist", batch_sizes=(2,), steps=1, repeats=3, infer_images=4, warmup_steps=1, backend="numpy",
        compile_time=False,
    )
    result = run_benchmark(config, log=lambda line: None)
    assert all(len(m.numcnn) == 3 for m in result.measurements)
    assert all(len(m.torch) in (0, 3) for m in result.measurements)  # 3 with PyTorch installed


@pytest.mark.torch
def test_onnxruntime_runs_the_same_function(rng):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from numcnn.benchmark.onnx_baseline import OnnxRunner
    from numcnn.benchmark.torch_baseline import build_torch_model

    model = numcnn.models.build("lenet5", rng=0)
    runner = OnnxRunner(model, build_torch_model(model.spec, model), model.spec.input_shape, threads=1)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.eval()
    np.testing.assert_allclose(runner.run(x), model.forward(x), rtol=1e-4, atol=1e-5)
    assert "ONNX Runtime" in runner.note()
    # Its idle workers must not spin while numcnn and PyTorch are timed (see onnx_baseline).
    options = runner.session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


@pytest.mark.torch
def test_bench_times_onnxruntime_for_inference_only():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    config = BenchConfig(
        batch_sizes=(4,), steps=1, repeats=3, infer_images=8, warmup_steps=1, backend="numpy", compile_time=False
    )
    result = run_benchmark(config, log=lambda line: None)
    train, infer = result.measurements
    assert not train.onnxruntime and len(infer.onnxruntime) == 3 and len(infer.onnxruntime_ratios) == 3
    assert "numcnn/ORT" in format_report(result)


def test_bench_trains_at_the_models_recommended_learning_rate():
    """BASE diverged into overflow at a fixed lr of 0.01 (and timed NaN arithmetic): the default is now
    each model's own rate, as `numcnn train` uses it; an explicit rate still wins."""
    from numcnn import models
    from numcnn.benchmark.runner import BenchConfig

    assert BenchConfig(model="base").learning_rate(models.get_spec("base")) == 0.001
    assert BenchConfig(model="resnet_mnist").learning_rate(models.get_spec("resnet_mnist")) == 0.01
    assert BenchConfig(model="base", lr=0.05).learning_rate(models.get_spec("base")) == 0.05


def test_profile_of_a_graph_model_has_a_row_per_node():
    """--profile on resnet_mnist: every node's forward and backward time (hooks between consecutive
    nodes), then loss and optimiser; the hooks are removed afterwards."""
    config = BenchConfig(
        model="resnet_mnist", batch_sizes=(2,), steps=1, repeats=3, warmup_steps=1, infer_images=2,
        backend="numpy", torch=False, onnxruntime=False, profile=True, profile_steps=1, compile_time=False,
    )  # fmt: skip
    result = run_benchmark(config, log=lambda line: None)
    rows = result.profile[2]
    model = numcnn.models.build("resnet_mnist", rng=0)
    assert [name for name, _, _ in rows] == [f"{type(n.layer).__name__} {n.name}" for n in model.nodes] + [
        "loss",
        "optimizer",
    ]
    assert all(forward > 0 for _, forward, _ in rows[:-2])
    assert all(backward > 0 for _, _, backward in rows[:-2])
    assert "Conv2d block3_conv2" in format_report(result)


def test_alternating_model_times_takes_turns_and_times_each_setting():
    """The on/off benchmarks' loop: each setting applied before its own timings, in turn, every round."""
    from numcnn.benchmark.runner import alternating_model_times, median_ms

    applied = []
    settings = {"a": lambda: applied.append("a"), "b": lambda: applied.append("b")}
    with numcnn.kernels.use_backend("numpy"):
        times = alternating_model_times("lenet5", settings, rounds=2, batch_size=4, batches=2)
    assert applied == ["a", "b", "a", "b"]
    assert set(times) == {"a", "b"}
    for train, infer in times.values():
        assert len(train) == 2 and len(infer) == 2 and all(t > 0 for t in train + infer)
    calls = []
    assert median_ms(lambda: calls.append(1), repeats=3) >= 0 and len(calls) == 4  # one untimed call first


def test_another_frameworks_environment_lacks_only_what_numcnn_set():
    from numcnn.kernels.threads import environment_without_own_settings

    own = {"OMP_WAIT_POLICY": "passive"}
    environ = {"OMP_WAIT_POLICY": "passive", "PATH": "/bin"}
    assert environment_without_own_settings(environ, own) == {"PATH": "/bin"}
    # the user's own value (or one changed since numcnn set it) passes on
    assert environment_without_own_settings({"OMP_WAIT_POLICY": "active"}, own) == {"OMP_WAIT_POLICY": "active"}
    assert environment_without_own_settings(environ, {}) == environ


@pytest.mark.torch
def test_pytorch_is_timed_in_its_own_process_with_its_own_waiting_policy(monkeypatch):
    """numcnn's OMP_WAIT_POLICY=passive slowed PyTorch's parallel regions when both shared a process
    (numcnn.benchmark.torch_process): the PyTorch side must not inherit it, but a user's setting."""
    pytest.importorskip("torch")
    from numcnn import models
    from numcnn.benchmark.torch_process import TorchProcess
    from numcnn.errors import ConfigurationError
    from numcnn.kernels import threads

    monkeypatch.setattr(threads, "_environment_set", {"OMP_WAIT_POLICY": "passive"})
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    spec = models.get_spec("lenet5")
    model = models.build("lenet5", rng=0)
    worker = TorchProcess(spec, model, 0.01, 0.9, 1)
    try:
        assert worker.child_environ("OMP_WAIT_POLICY") is None
        images = np.zeros((4, 1, 28, 28), dtype=np.float32)
        worker.load("batches", [(images, np.arange(4) % 10)])
        assert worker.train_seconds("batches") > 0 and worker.infer_seconds("batches") > 0
        with pytest.raises(ConfigurationError, match="KeyError"):
            worker.train_seconds("never loaded")
    finally:
        worker.close()
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # the user's choice: PyTorch's process gets it too
    worker = TorchProcess(spec, model, 0.01, 0.9, 1)
    try:
        assert worker.child_environ("OMP_WAIT_POLICY") == "active"
    finally:
        worker.close()
