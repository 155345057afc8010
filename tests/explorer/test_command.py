"""``numcnn explore``'s failures are one line on stderr with exit code 1, never a traceback."""

from __future__ import annotations

import socket
import sys

import pytest

from numcnn.cli.main import main


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("numcnn: error: "), err
    return err


def test_without_the_extra_it_says_what_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    assert main(["explore"]) == 1
    assert 'pip install "numcnn[explore]"' in one_error_line(capsys)


def test_a_bad_checkpoint(tmp_path, capsys) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    missing = tmp_path / "nothing.npz"
    assert main(["explore", str(missing)]) == 1
    assert "no such checkpoint file" in one_error_line(capsys)


def test_a_port_in_use(capsys) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["explore", "--port", str(port)]) == 1
    message = one_error_line(capsys)
    assert f"127.0.0.1:{port}" in message and "in use" in message


def test_a_port_out_of_range(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explore", "--port", "70000"])
    assert exited.value.code == 2
    assert "0..65535" in capsys.readouterr().err
