"""``numcnn train`` never loses a run: run directories, interruption, divergence (on synthetic digits)."""

from __future__ import annotations

import os
import signal

import pytest

from numcnn import kernels
from numcnn.checkpoint import read_meta
from numcnn.cli import main


@pytest.fixture
def synthetic_mnist(monkeypatch, synthetic_digits):
    """'numcnn train' reads the synthetic digits instead of MNIST, with the exact NumPy kernels."""
    monkeypatch.setattr("numcnn.cli.training.load_data", lambda args: synthetic_digits)
    with kernels.use_backend("numpy"):
        yield


TRAIN = ["train", "--epochs", "1", "--train-limit", "96", "--batch-size", "32", "--no-progress", "--backend", "numpy"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_refuses_a_directory_that_holds_a_run(capsys, tmp_path, synthetic_mnist):
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--out", str(out))[0] == 0
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    code, _, err = run(capsys, *TRAIN, "--out", str(out), "--seed", "4")
    assert code == 1 and err.count("\n") == 1 and err.startswith("numcnn: error: ")
    assert "--resume" in err and "--overwrite" in err and "model.npz" in err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == files  # nothing lost
    code, _, _ = run(capsys, *TRAIN, "--out", str(out), "--seed", "4", "--overwrite")
    assert code == 0 and read_meta(out / "model.npz")["config"]["seed"] == 4
    code, _, err = run(capsys, *TRAIN, "--out", str(out), "--resume", "--overwrite")
    assert code == 1 and "choose one" in err


def test_train_into_an_existing_file_is_a_one_line_error(capsys, tmp_path, synthetic_mnist):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = run(capsys, *TRAIN, "--out", str(target))
    assert code == 1 and err == f"numcnn: error: {target} is a file, not a run directory; choose another --out\n"
    assert target.read_text() == "keep me"


def test_default_runs_get_their_own_directory_and_latest_points_to_the_newest(
    capsys, tmp_path, monkeypatch, synthetic_mnist
):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, *TRAIN)[0] == 0
    assert run(capsys, *TRAIN, "--seed", "4")[0] == 0
    runs = sorted(path for path in (tmp_path / "runs").iterdir() if not path.is_symlink())
    assert len(runs) == 2 and all(path.name.startswith("lenet5-") for path in runs)
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and read_meta(latest / "model.npz")["config"]["seed"] == 4
    code, out, _ = run(capsys, *TRAIN[:2], "2", *TRAIN[3:], "--seed", "4", "--resume")  # continues runs/latest
    assert code == 0 and "resuming lenet5 from the checkpoint at the end of epoch 1" in out


def test_a_run_that_cannot_start_leaves_no_default_directory(capsys, tmp_path, monkeypatch, synthetic_mnist):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *TRAIN, "--train-offset", "5000")
    assert code == 1 and "beyond" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_ctrl_c_writes_a_checkpoint_at_the_step_and_says_so(capsys, tmp_path, monkeypatch, synthetic_mnist):
    from numcnn import train

    real, calls = train.nonfinite, {"count": 0}

    def nonfinite_then_ctrl_c(value, params):  # runs once per step, right after it
        calls["count"] += 1
        if calls["count"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(value, params)

    monkeypatch.setattr(train, "nonfinite", nonfinite_then_ctrl_c)
    out = tmp_path / "run"
    code, _, err = run(capsys, *TRAIN, "--out", str(out))
    assert code == 130
    assert err == (
        f"numcnn: interrupted: checkpoint at epoch 1, step 2 saved to {out / 'model.npz'}; "
        f"continue with --resume --out {out}\n"
    )
    monkeypatch.setattr(train, "nonfinite", real)
    code, stdout, _ = run(capsys, *TRAIN, "--out", str(out), "--resume")
    assert code == 0 and "resuming lenet5 from the checkpoint at epoch 1, step 2" in stdout


def test_divergence_is_one_line_and_a_non_zero_exit(capsys, tmp_path, synthetic_mnist):
    code, _, err = run(
        capsys, *TRAIN, "--out", str(tmp_path / "run"), "--lr", "1000", "--train-limit", "320", "--seed", "1"
    )
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("numcnn: error: training diverged at epoch 1, step ")
    assert "no checkpoint yet" in err and "lower the learning rate" in err
