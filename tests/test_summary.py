"""``numcnn summary``: shapes, parameter counts, FLOPs and receptive fields (seed 004 table 15.2)."""

from __future__ import annotations

import pytest

from numcnn import models
from numcnn.cli.main import main
from numcnn.errors import ConfigurationError
from numcnn.models.registry import ModelSpec
from numcnn.summary import summarize

# Table 15.2 of seed 004, the receptive-field column for layers 1-32 (33-39 have none).
TABLE_15_2_RF = [
    212, 210, 210, 208, 208, 104, 102, 102, 100, 100, 50, 48, 48, 46, 46, 44,
    44, 22, 20, 20, 18, 18, 16, 16, 8, 6, 6, 4, 4, 2, 2, 1,
]  # fmt: skip


def test_vgg16_receptive_fields_reproduce_table_15_2():
    summary = summarize("vgg16")
    fields = [layer.receptive_field for layer in summary.layers]
    assert [field[0] for field in fields[:32]] == TABLE_15_2_RF
    assert all(field[0] == field[1] for field in fields[:32])
    assert fields[32:] == [None] * 7
    assert summary.reference == "31" and summary["31"].output_shape == (512, 7, 7)


def test_vgg16_parameters_and_flops():
    summary = summarize("vgg16")
    assert summary.parameters == 138_357_544
    assert summary["1"].flops == 2 * 64 * 224 * 224 * 27 + 64 * 224 * 224  # multiply-add = 2, plus bias
    assert summary["32"].parameters == 7 * 7 * 512 * 4096 + 4096
    assert summary["39"].output_shape == (1000,)
    assert 30.9e9 < summary.flops < 31.0e9  # ≈ 15.5 G multiply-adds, the usual figure for VGG-16


@pytest.mark.parametrize("name", [n for n in models.available_models() if n != "vgg16"])
def test_summary_agrees_with_the_built_model(name):
    spec = models.get_spec(name)
    model = models.build(name, rng=0)
    summary = summarize(name)
    assert summary.parameters == model.num_parameters()
    if spec.graph:
        shapes = model.tensor_shapes(spec.input_shape)
        assert all(layer.output_shape == shapes[layer.name] for layer in summary.layers)
    else:
        shape = spec.input_shape
        for layer, info in zip(model, summary.layers):
            shape = layer.output_shape(shape)
            assert info.output_shape == shape, info.name


def test_receptive_field_in_a_graph_takes_the_widest_branch():
    spec = ModelSpec(
        name="two-branches", layers=(), input_shape=(1, 16, 16), num_classes=2,
        graph=(
            ("wide", "Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 5, "padding": 2}, "input"),
            ("narrow", "Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1}, "input"),
            ("sum", "Add", {}, ("wide", "narrow")),
            ("pool", "MaxPool2d", {"kernel_size": 2}),
        ),
    )  # fmt: skip
    summary = summarize(spec)
    assert summary.reference == "pool"
    assert summary["pool"].receptive_field == (2, 2) and summary["sum"].receptive_field == (2, 2)
    assert summary["wide"].receptive_field == (6, 6) and summary["narrow"].receptive_field == (4, 4)
    assert summary["sum"].flops == 16 * 16


def test_base_summary_and_a_chosen_reference():
    summary = summarize("base", reference="5")
    assert [layer.receptive_field for layer in summary.layers][:6] == [
        (28, 28),
        (24, 24),
        (12, 12),
        (8, 8),
        (4, 4),
        (1, 1),
    ]
    assert summarize("base").reference == "4"  # the last pooling layer by default
    with pytest.raises(ConfigurationError, match="reference '99'"):
        summarize("base", reference="99")


def test_summary_command_prints_the_table(capsys):
    assert main(["summary", "vgg16"]) == 0
    out = capsys.readouterr().out
    first_conv = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert first_conv.split()[-1] == "212" and "64×224×224" in first_conv
    assert "512×7×7" in out and "138,357,544 parameters" in out and "multiply-add counts as 2" in out


def test_summary_command_errors_are_one_line(capsys):
    assert main(["summary", "vgg16", "--input", "3,32,32"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("numcnn: error: vgg16 layer 32 (Conv2d): kernel size 7") and error.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["summary", "base", "--input", "1,a,3"])


def test_models_command_lists_the_new_models_quickly(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "138,357,544" in out and "sk_0.2" in out and "resnet_mnist" in out


def test_classic_layers_in_the_summary():
    summary = summarize("lenet5_1998")
    assert summary.reference == "7"  # S4, a (trainable) sub-sampling layer, counts as pooling
    assert [layer.receptive_field[0] for layer in summary.layers[:8]] == [16, 12, 12, 6, 6, 2, 2, 1]
    assert summary["5"].flops == 2 * 60 * 25 * 100 + 16 * 100  # only C3's 60 connected kernels cost
    assert "60 of 96 connections" in summary["5"].description
    assert summary["5"].parameters == 60 * 25 + 16  # the connected kernels and 16 biases
    # The spec's notes reach the summary and the end of its table.
    notes = list(models.get_spec("lenet5_1998").notes)
    assert notes and summary.notes == notes
    assert summary.table().splitlines()[-len(notes) :] == notes
    assert summary["14"].flops == 3 * 84 * 10


def test_pooling_spec_is_validated_like_the_layer():
    # Padding larger than half the kernel: MaxPool2d rejects it, so the summary must too.
    spec = ModelSpec(
        name="bad-pool", layers=(("MaxPool2d", {"kernel_size": 2, "padding": 2}),), input_shape=(1, 8, 8), num_classes=2
    )
    with pytest.raises(ConfigurationError, match="bad-pool layer 1 \\(MaxPool2d\\): MaxPool2d: padding"):
        summarize(spec)
    good = ModelSpec(name="pool", layers=(("AvgPool2d", {"kernel_size": 3, "padding": 1}),), input_shape=(2, 8, 8),
                     num_classes=2)  # fmt: skip
    assert summarize(good)["1"].output_shape == (2, 3, 3)  # stride defaults to the kernel: ⌊(8 + 2 − 3)/3⌋ + 1


def test_subsampling_spec_is_validated_like_the_layer():
    too_small = ModelSpec(name="tiny", layers=(("Subsample2d", {"channels": 1, "factor": 4}),), input_shape=(1, 3, 3),
                          num_classes=2)  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"tiny layer 1 \(Subsample2d\): sub-sampling by \(4, 4\) needs"):
        summarize(too_small)
    bad_mode = ModelSpec(name="mode", layers=(("Subsample2d", {"channels": 1, "mode": "max"}),), input_shape=(1, 4, 4),
                         num_classes=2)  # fmt: skip
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        summarize(bad_mode)


def test_summary_command_prints_the_model_notes(capsys):
    assert main(["summary", "lenet5_1998"]) == 0
    out = capsys.readouterr().out
    assert "Euclidean RBF outputs are penalties: the predicted digit is the argmin." in out
