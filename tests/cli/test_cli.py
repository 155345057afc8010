"""The numcnn command: end to end on real MNIST (when NUMCNN_DATA is set) and its error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from numcnn.cli import main

REAL_DATA = os.environ.get("NUMCNN_DATA", "")
needs_mnist = pytest.mark.skipif(
    not (REAL_DATA and Path(REAL_DATA).is_dir()),
    reason="set NUMCNN_DATA to the folder holding MNIST to run the end-to-end CLI tests",
)


@pytest.fixture
def isolated_home(tmp_path, no_mnist_anywhere):
    """No real data, an empty cache and no network; ``tmp_path`` for the test's own files."""
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def draw_digit_one(path: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("L", (90, 140), color=255)  # black ink on white paper, unlike MNIST
    ImageDraw.Draw(image).line([(45, 15), (45, 125)], fill=0, width=14)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short real training run shared by the end-to-end tests."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--epochs", "2", "--train-limit", "3000", "--batch-size", "32", "--lr", "0.01",
                 "--out", str(out), "--no-progress", "--no-download"])  # fmt: skip
    assert code == 0
    return out


@needs_mnist
@pytest.mark.slow
def test_train_writes_metrics_checkpoint_and_plot(trained_run):
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["test_accuracy"] > 0.85  # 3,000 images, 2 epochs: far above chance (0.1)
    assert (trained_run / "model.npz").is_file()
    assert (trained_run / "curves.png").stat().st_size > 1000


@needs_mnist
@pytest.mark.slow
def test_evaluate_reproduces_the_last_test_accuracy(trained_run, capsys):
    code, out, _ = run(capsys, "evaluate", str(trained_run / "model.npz"), "--confusion")
    last = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert code == 0
    assert f"accuracy {last['test_accuracy']:.2%}" in out
    assert "rows: true digit" in out


@needs_mnist
@pytest.mark.slow
def test_predict_reads_a_picture_of_any_size(trained_run, tmp_path, capsys):
    image = draw_digit_one(tmp_path / "one.png")
    code, out, _ = run(capsys, "predict", str(trained_run / "model.npz"), str(image), "--top", "3")
    assert code == 0
    assert out.startswith(f"{image}: 1 (")  # a vertical bar is a 1
    assert out.count("%") == 3


@needs_mnist
@pytest.mark.slow
def test_resume_adds_an_epoch(trained_run, capsys):
    code, out, _ = run(capsys, "train", "--epochs", "3", "--train-limit", "3000", "--batch-size", "32",
                       "--lr", "0.01", "--out", str(trained_run), "--resume", "--no-progress",
                       "--no-download")  # fmt: skip
    assert code == 0 and "resuming lenet5 from the checkpoint at the end of epoch 2" in out
    epochs = [json.loads(line)["epoch"] for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_unknown_model_is_a_one_line_error(capsys, isolated_home):
    code, _out, err = run(capsys, "train", "--model", "lenet7", "--out", str(isolated_home / "x"))
    assert code == 1
    assert err.startswith("numcnn: error: unknown model 'lenet7'") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("train", "--epochs", "0"), "argument --epochs: must be >= 1, got 0"),
        (("train", "--batch-size", "ten"), "argument --batch-size: expected a whole number, got 'ten'"),
        (("experiment", "exercise_15_6", "--jobs", "-1"), "argument --jobs: must be >= 1, got -1"),
        (("bench", "--threads", "0"), "argument --threads: must be >= 1, got 0"),
    ],
)
def test_counts_below_one_are_rejected_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_mnist_names_where_it_looked(capsys, isolated_home):
    data_dir = isolated_home / "empty"
    data_dir.mkdir()
    code, _, err = run(capsys, "train", "--data-dir", str(data_dir), "--no-download", "--out", str(isolated_home / "x"))
    assert code == 1
    assert "MNIST files not found" in err and str(data_dir) in err and "NUMCNN_DATA" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_backend_fails_before_data_is_loaded_or_the_run_dir_is_touched(capsys, isolated_home, monkeypatch):
    monkeypatch.setenv("NUMCNN_BACKEND", "foo")
    out = isolated_home / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, _, err = run(capsys, "train", "--no-download", "--out", str(out))
    assert code == 1 and err.startswith("numcnn: error: unknown backend 'foo'") and err.count("\n") == 1
    assert "MNIST" not in err  # no data is found in isolated_home: the backend was checked first
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_corrupt_mnist_file_is_reported_by_name(capsys, isolated_home):
    data_dir = isolated_home / "corrupt"
    data_dir.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (data_dir / f"{name}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code, _, err = run(capsys, "train", "--data-dir", str(data_dir), "--no-download", "--out", str(isolated_home / "x"))
    assert code == 1
    assert "idx" in err and "gzip" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b"nonsense"), "is not a numcnn checkpoint (.npz)"),
        (lambda path: path.write_text("# numcnn\n\nA README.\n"), "is not a numcnn checkpoint (.npz)"),
        (lambda path: path.mkdir(), "is a directory, not a checkpoint file"),
    ],
)
def test_bad_checkpoint_is_a_one_line_error(capsys, tmp_path, make, message):
    bad = tmp_path / "model.npz"
    make(bad)
    code, _, err = run(capsys, "evaluate", str(bad))
    assert code == 1 and err.startswith(f"numcnn: error: {bad}: {message}")
    assert err.count("\n") == 1 and "allow_pickle" not in err


def test_predict_reports_an_unreadable_image(capsys, tmp_path):
    from numcnn import models
    from numcnn.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "m.npz", models.build("lenet5", rng=0), "lenet5")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    code, _, err = run(capsys, "predict", str(checkpoint), str(not_an_image))
    assert code == 1 and "notes.png" in err and err.count("\n") == 1


def test_bench_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 64 and 256)" in text and "(default: 5)" in text
    assert "(default: None)" not in text and ") (default:" not in text


def test_models_lists_lenet5_with_its_parameter_count(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "lenet5" in out and "61,706" in out


def test_gradcheck_command_passes_for_lenet5(capsys):
    code, out, _ = run(capsys, "gradcheck", "lenet5", "--max-checks", "5")
    assert code == 0 and out.strip().endswith("passed")
