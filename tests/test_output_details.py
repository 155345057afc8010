"""Smaller user-facing details (issue 8, item 8): what the reports say and how the plots look."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from numcnn.cli import main


def test_bench_without_torch_does_not_mention_pytorch(capsys):
    code = main(
        ["bench", "--batch-size", "2", "--steps", "1", "--repeats", "3", "--backend", "reference", "--no-torch",
         "--no-compile-time", "--no-onnxruntime"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "numcnn bench: model lenet5" in out
    assert "pytorch" not in out.lower()


def write_metrics(run_dir: Path, errors: list[float]) -> None:
    run_dir.mkdir()
    lines = [
        json.dumps({"epoch": k + 1, "train_loss": 1.0 / (k + 1), "test_loss": 1.2 / (k + 1),
                    "train_accuracy": 1 - e / 2, "test_accuracy": 1 - e})
        for k, e in enumerate(errors)
    ]  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_error_axis_is_logarithmic(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from numcnn import plots

    write_metrics(tmp_path / "run", [0.1, 0.03, 0.012, 0.009])
    scales = []
    real_close = plt.close

    def record_scales(figure):
        scales.extend(axes.get_yscale() for axes in figure.axes)
        real_close(figure)

    monkeypatch.setattr(plt, "close", record_scales)
    output = plots.plot_learning_curves(tmp_path / "run")
    assert output.stat().st_size > 1000
    assert scales == ["linear", "log"]  # loss, then error


def test_plot_of_an_empty_metrics_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err == f"numcnn: error: {tmp_path / 'run' / 'metrics.jsonl'}: no epochs recorded yet, nothing to plot\n"
    assert not (tmp_path / "run" / "curves.png").exists()


def test_readme_quotes_the_measured_error_range():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    # seeds 0, 1, 2 measured 0.89%, 0.78%, 0.78% (README's Measured table); the quoted range must hold them all
    assert "**0.78–0.89% test error**" in readme
    assert "**0.89% test error**" in readme and "| 0.78%, 0.78% (" in readme
    assert "export NUMCNN_DATA=../shared/data" not in readme  # relative: only right in CI's layout
    assert "the folder that holds `mnist/`" in readme


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    from numcnn.data import download_mnist
    from numcnn.errors import DataError

    def offline(url: str, timeout: float):
        raise OSError("network is unreachable")

    target = tmp_path / "new" / "data" / "mnist"
    with pytest.raises(DataError, match="download failed from every mirror"):
        download_mnist(target, mirrors=["https://example.invalid/mnist"], progress=False, opener=offline)
    assert list(tmp_path.iterdir()) == []
    # A folder that was there before stays, even if empty.
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError):
        download_mnist(tmp_path / "kept" / "mnist", mirrors=["https://example.invalid/mnist"], progress=False,
                       opener=offline)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


REAL_MNIST = Path(__import__("os").environ.get("NUMCNN_DATA", "/nonexistent")) / "mnist"


@pytest.mark.skipif(not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="needs NUMCNN_DATA (real MNIST)")
def test_evaluate_needs_only_the_test_files(tmp_path, capsys, no_mnist_anywhere):
    from numcnn import models
    from numcnn.checkpoint import save_checkpoint

    test_only = tmp_path / "mnist"
    test_only.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (test_only / name).symlink_to(REAL_MNIST / name)
    save_checkpoint(tmp_path / "model.npz", models.build("lenet5", rng=0), "lenet5")
    code = main(["evaluate", str(tmp_path / "model.npz"), "--data-dir", str(test_only), "--no-download",
                 "--backend", "numpy"])  # fmt: skip
    assert code == 0
    assert "on 10,000 test images" in capsys.readouterr().out
