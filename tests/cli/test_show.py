"""``numcnn show``: the PNG figures of one traced digit, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numcnn import models
from numcnn.checkpoint import save_checkpoint
from numcnn.cli import main

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained LeNet-5 checkpoint: the figures need a model, not a good one."""
    path = tmp_path_factory.mktemp("run") / "model.npz"
    save_checkpoint(path, models.build("lenet5", rng=0), "lenet5")
    return path


@pytest.fixture
def digit(tmp_path) -> Path:
    from PIL import ImageDraw

    image = Image.new("L", (60, 90), color=255)  # a dark 7 on white paper
    ImageDraw.Draw(image).line([(8, 10), (52, 10), (24, 82)], fill=0, width=9)
    path = tmp_path / "seven.png"
    image.save(path)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_show_writes_every_figure(checkpoint, digit, tmp_path, capsys):
    out = tmp_path / "figures"
    code, stdout, stderr = run(capsys, "show", str(checkpoint), str(digit), "--target", "7", "--out", str(out))
    assert code == 0, stderr
    assert "for target 7" in stdout and f"to {out}" in stdout
    names = {path.name for path in out.iterdir()}
    expected = {"summary.png", "input.png", "probabilities.png", "saliency.png", "kernels.png"}
    for index, kind in enumerate(["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                  "Linear", "ReLU", "Linear", "ReLU", "Linear"]):  # fmt: skip
        expected |= {f"{index:02d}-{index}-{kind}-output.png", f"{index:02d}-{index}-{kind}-delta.png"}
    assert names == expected
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert width >= 300 and height >= 200, name
            # Not a blank page: a drawn figure has many distinct colours.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20, name
    with Image.open(out / "00-0-Conv2d-delta.png") as image:
        assert image.size[0] > 500  # six 28×28 maps side by side and a colour bar


def test_show_defaults_to_a_folder_next_to_the_checkpoint(checkpoint, digit, capsys, monkeypatch):
    from numcnn import figures

    folders = []
    monkeypatch.setattr(figures, "write_figures", lambda trace, out, **_: folders.append(out) or [])
    code, _, _ = run(capsys, "show", str(checkpoint), str(digit))
    assert code == 0
    assert folders == [checkpoint.parent / "show-seven"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "10"], "--target 10 is not a class of lenet5 (0-9)"),
        (["--target", "-1"], "--target -1 is not a class"),
    ],
)
def test_show_rejects_a_bad_target_in_one_line(checkpoint, digit, tmp_path, capsys, argv, message):
    code, _, stderr = run(capsys, "show", str(checkpoint), str(digit), "--out", str(tmp_path / "o"), *argv)
    assert code == 1
    assert stderr.startswith("numcnn: error: ") and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_show_rejects_bad_files_in_one_line(checkpoint, digit, tmp_path, capsys):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    blank = tmp_path / "blank.png"
    Image.new("L", (20, 20), color=255).save(blank)
    occupied = tmp_path / "occupied"
    occupied.write_text("keep me")
    cases = [
        ([str(tmp_path / "missing.npz"), str(digit)], "no such checkpoint file"),
        ([str(digit), str(digit)], "is not a numcnn checkpoint"),
        ([str(checkpoint), str(tmp_path / "missing.png")], "file not found"),
        ([str(checkpoint), str(not_an_image)], "not an image"),
        ([str(checkpoint), str(blank)], "no digit found"),
        ([str(checkpoint), str(digit), "--out", str(occupied)], "is not a folder"),
    ]
    for argv, message in cases:
        code, _, stderr = run(capsys, "show", *argv)
        assert code == 1, argv
        assert stderr.startswith("numcnn: error: ") and message in stderr and stderr.count("\n") == 1, stderr
    assert occupied.read_text() == "keep me"


def test_figure_functions_return_figures_for_a_notebook():
    import numcnn
    from numcnn import figures

    model = models.build("lenet5", rng=0, dtype=np.float64)
    t = numcnn.trace(model, np.random.default_rng(0).random((28, 28)), target=2, spec=model.spec)
    for figure in (figures.delta_maps(t.layer("3")), figures.feature_maps(t.layer("7")), figures.kernel_figure(t)):
        assert figure.axes  # drawn, with a colour bar among the axes
        figure.canvas.draw()
    delta = figures.delta_maps(t.layer("0"))
    low, high = delta.axes[0].images[0].get_clim()
    assert low == -high  # diverging maps are centred at 0
