"""Every sub-command, given bad arguments, fails with one line on stderr and a non-zero exit -- never a
traceback, and never through the catch-all for unexpected errors (which would mean a missed check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numcnn.cli import main
from numcnn.cli.main import DEBUG_VARIABLE, EXIT_BROKEN_PIPE, build_parser

# Paths are relative to the test's working directory (tmp_path), which `workspace` fills with:
#   a_file.txt      a text file, where a checkpoint, image, run folder or TOML file is expected
#   a_dir/          an empty folder
#   empty_run/      a run folder with an empty metrics.jsonl
#   bad_run/        a run folder whose metrics.jsonl is not JSON
#   model.npz       a valid lenet5 checkpoint (for the commands that need one to get further)
#   broken.toml     an experiment file that is not TOML
BAD_ARGUMENTS: dict[str, list[list[str]]] = {
    "train": [
        ["--model", "lenet7"],
        ["--epochs", "0"],
        ["--epochs", "three"],
        ["--batch-size", "-1"],
        ["--lr", "-1"],
        ["--lr", "nan"],
        ["--momentum", "-1"],
        ["--weight-decay", "inf"],
        ["--augment-rotate", "nan"],
        ["--train-offset", "-5"],
        ["--layer-lr", "conv=0.1"],
        ["--layer-lr", "99=0.1"],
        ["--threads", "0"],
        ["--backend", "cuda"],
        ["--validation-size", "-1"],
        ["--early-stopping", "-2"],
        ["--augment-shift", "-1"],
        ["--out", "a_file.txt"],
        ["--data-dir", "no_such_dir", "--no-download"],
        ["--data-dir", "a_file.txt", "--no-download"],
        ["--data-dir", "a_dir", "--no-download"],
        ["--epoch", "3"],  # an abbreviation: refused, not taken for --epochs
    ],
    "evaluate": [
        ["no_such.npz"],
        ["a_dir"],
        ["a_file.txt"],
        ["model.npz", "--batch-size", "0"],
        ["model.npz", "--data-dir", "a_dir", "--no-download"],
        ["model.npz", "--confus"],
    ],
    "predict": [
        ["no_such.npz", "digit.png"],
        ["a_file.txt", "digit.png"],
        ["model.npz", "no_such.png"],
        ["model.npz", "a_dir"],
        ["model.npz", "a_file.txt"],
        ["model.npz", "a_file.txt", "--top", "0"],
        ["model.npz"],
    ],
    "plot": [
        ["no_such_run"],
        ["a_file.txt"],
        ["a_dir"],
        ["empty_run"],
        ["bad_run"],
        ["empty_run", "--output", "no_such_dir/x.png"],
        ["empty_run", "--output", "x.txt"],
        ["empty_run", "--output", "a_dir"],
    ],
    "models": [["extra"], ["--verbose"]],
    "gradcheck": [
        ["lenet7"],
        ["lenet5", "--batch-size", "0"],
        ["lenet5", "--max-checks", "many"],
        ["lenet5", "--seed", "-1"],
    ],
    "summary": [
        ["vgg17"],
        ["lenet5", "--input", "0,28,28"],
        ["lenet5", "--input", "abc"],
        ["lenet5", "--input", "1,2,2"],
        ["lenet5", "--rf-from", "99"],
        ["lenet5", "--rf"],
    ],
    "experiment": [
        ["no_such_experiment"],
        ["a_dir"],
        ["a_file.txt"],
        ["broken.toml"],
        ["exercise_15_6", "--jobs", "0"],
        ["exercise_15_6", "--threads-per-job", "0"],
        ["exercise_15_6", "--backend", "cuda"],
        ["exercise_15_6", "--quick", "--dry-run", "--out", "a_file.txt"],
    ],
    "bench": [
        ["--model", "lenet7"],
        ["--repeats", "1"],
        ["--batch-size", "0"],
        ["--epochs-equivalent", "-1"],
        ["--threads", "0"],
        ["--backend", "cuda"],
        ["--json", "no_such_dir/timings.json"],
        ["--steps", "1", "--epochs-equivalent", "1"],
    ],
}
# Arguments every sub-command must refuse, including ones added after this table was written.
GENERIC_BAD_ARGUMENTS = [["--no-such-option"], ["--no-such-option", "no_such_file"]]


@pytest.fixture
def workspace(tmp_path, monkeypatch, no_mnist_anywhere):
    from numcnn import models
    from numcnn.checkpoint import save_checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    (tmp_path / "a_file.txt").write_text("not what you are looking for\n")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "empty_run" / "metrics.jsonl").write_text("")
    (tmp_path / "bad_run").mkdir()
    (tmp_path / "bad_run" / "metrics.jsonl").write_text("{not json\n")
    (tmp_path / "broken.toml").write_text("name = [unclosed\n")
    save_checkpoint(tmp_path / "model.npz", models.build("lenet5", rng=0), "lenet5")
    return tmp_path


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


def cases() -> list[tuple[str, list[str]]]:
    # --no-download: a check that is missing must show up as an error here, not as a download attempt.
    listed = [
        (command, [*args, "--no-download"] if command == "train" and "--no-download" not in args else args)
        for command, table in BAD_ARGUMENTS.items()
        for args in table
    ]
    generic = [(command, args) for command in subcommands() for args in GENERIC_BAD_ARGUMENTS]
    return listed + generic


def run_in_process(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse: usage, then one error line, exit status 2
        code = exit.code if isinstance(exit.code, int) else 1
    return code, capsys.readouterr().err


def case_id(value: str | list[str]) -> str:
    return " ".join(value) if isinstance(value, list) else value


@pytest.mark.parametrize(("command", "args"), cases(), ids=case_id)
def test_bad_arguments_give_one_error_line(workspace, capsys, command, args):
    code, err = run_in_process(capsys, [command, *args])
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    error_lines = [line for line in lines if ": error: " in line]
    assert len(error_lines) == 1 and error_lines[0] == lines[-1], err
    if code == 2:  # an argument error: argparse's usage of *this* sub-command, then the error
        assert lines[-1].startswith(f"numcnn {command}: error: ")
        assert lines[0].startswith(f"usage: numcnn {command}")
    else:  # a problem found while running: exactly one line
        assert len(lines) == 1 and lines[0].startswith("numcnn: error: ")
    assert DEBUG_VARIABLE not in err, "an unanticipated error reached the catch-all: add a proper check"


def test_every_subcommand_has_its_own_bad_arguments():
    assert sorted(BAD_ARGUMENTS) == [command for command in subcommands() if command in BAD_ARGUMENTS]
    missing = {"train", "evaluate", "predict", "plot", "models", "gradcheck", "summary", "experiment", "bench"}
    assert missing <= set(BAD_ARGUMENTS)


def test_abbreviations_are_refused(workspace, capsys):
    code, err = run_in_process(capsys, ["summary", "lenet5", "--inp", "1,28,28"])
    assert code == 2 and "unrecognized arguments: --inp" in err and err.startswith("usage: numcnn summary")


def test_unexpected_errors_are_one_line_with_a_hint(workspace, capsys, monkeypatch):
    from numcnn.cli import inspection

    def broken(args):
        raise ValueError("something\nunexpected")

    monkeypatch.setattr(inspection, "run_models", broken)
    code, err = run_in_process(capsys, ["models"])
    assert code == 1
    assert err == f"numcnn: error: ValueError: something unexpected (set {DEBUG_VARIABLE}=1 to see the traceback)\n"
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(ValueError, match="something"):
        main(["models"])


def test_os_errors_name_the_file(workspace, capsys, monkeypatch):
    from numcnn.cli import inspection

    def denied(args):
        raise PermissionError(13, "Permission denied", "somewhere/file.npz")

    monkeypatch.setattr(inspection, "run_models", denied)
    code, err = run_in_process(capsys, ["models"])
    assert (code, err) == (1, "numcnn: error: somewhere/file.npz: Permission denied\n")


def run_into_closed_pipe(*argv: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``numcnn ARGV`` with a stdout whose reader has already gone (``numcnn ... | head -0``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "numcnn", *argv], check=False, stdout=write_end, stderr=subprocess.PIPE, text=True,
            cwd=cwd, timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg"},
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "argv", [["models"], ["summary", "vgg16"], ["experiment", "exercise_15_6", "--dry-run"]], ids=" ".join
)
def test_a_closed_pipe_ends_the_command_quietly(argv, tmp_path):
    result = run_into_closed_pipe(*argv, cwd=tmp_path)
    assert result.stderr == ""
    assert result.returncode == EXIT_BROKEN_PIPE


REAL_DATA = os.environ.get("NUMCNN_DATA", "")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA and Path(REAL_DATA).is_dir()), reason="needs NUMCNN_DATA (real MNIST)")
def test_a_closed_pipe_does_not_stop_training(tmp_path):
    """'numcnn train | head': the reader goes away, the run still finishes and writes its checkpoint."""
    result = run_into_closed_pipe(
        "train", "--epochs", "1", "--train-limit", "256", "--batch-size", "64", "--backend", "numpy",
        "--out", str(tmp_path / "run"), "--no-download",
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    assert result.returncode == 0
    assert (tmp_path / "run" / "model.npz").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_progress_lines_survive_a_closed_stream():
    from numcnn.progress import Progress

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    with Progress(100, "epoch 1/1", enabled=True, stream=ClosedPipe()) as progress:
        for _ in range(10):
            progress.update(10, loss=np.float64(0.5))
    assert progress.done == 100 and not progress.enabled
