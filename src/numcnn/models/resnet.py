"""A small residual network for MNIST, declared as a graph (He et al., CVPR 2016; seed 004 ex. 15.4).

Layout (He et al.'s "basic block": two 3×3 convolutions with BN, the block's input added before the
last ReLU; a 1×1 convolution + BN as the shortcut where the shape changes, their option B)::

    stem     conv 3×3 1→16, BN, ReLU                                  16@28×28
    block 1  [conv 3×3 16→16, BN, ReLU, conv 3×3, BN] + identity, ReLU  16@28×28
    block 2  [conv 3×3/2 16→32, BN, ReLU, conv 3×3, BN] + 1×1/2 conv+BN, ReLU   32@14×14
    block 3  [conv 3×3/2 32→64, BN, ReLU, conv 3×3, BN] + 1×1/2 conv+BN, ReLU   64@7×7
    head     global average pooling, linear 64→10                     (instead of VGG's FC layers)

Convolutions feeding BN have no bias. Trained with numcnn's default recipe (PyTorch-style
initialisation, inputs normalised with MNIST's mean and standard deviation).
"""

from __future__ import annotations

from numcnn.models.registry import ModelSpec, NodeSpec, register

__all__ = ["RESNET_MNIST", "residual_block"]


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> tuple[str, dict]:
    arguments = {
        "in_channels": in_channels, "out_channels": out_channels, "kernel_size": kernel,
        "stride": stride, "padding": kernel // 2, "bias": False,
    }  # fmt: skip
    return ("Conv2d", arguments)


def residual_block(name: str, source: str, in_channels: int, out_channels: int, stride: int) -> list[NodeSpec]:
    """Nodes of one basic block reading tensor ``source``; its output is the node ``f"{name}_out"``."""
    nodes: list[NodeSpec] = [
        (f"{name}_conv1", *_conv(in_channels, out_channels, 3, stride), source),
        (f"{name}_bn1", "BatchNorm2d", {"num_features": out_channels}),
        (f"{name}_relu1", "ReLU", {}),
        (f"{name}_conv2", *_conv(out_channels, out_channels, 3)),
        (f"{name}_bn2", "BatchNorm2d", {"num_features": out_channels}),
    ]
    shortcut = source
    if stride != 1 or in_channels != out_channels:
        nodes += [
            (f"{name}_proj", *_conv(in_channels, out_channels, 1, stride), source),
            (f"{name}_proj_bn", "BatchNorm2d", {"num_features": out_channels}),
        ]
        shortcut = f"{name}_proj_bn"
    nodes += [
        (f"{name}_add", "Add", {}, (f"{name}_bn2", shortcut)),
        (f"{name}_out", "ReLU", {}),
    ]
    return nodes


def _resnet_mnist_nodes() -> tuple[NodeSpec, ...]:
    return (
        ("stem_conv", *_conv(1, 16, 3), "input"),
        ("stem_bn", "BatchNorm2d", {"num_features": 16}),
        ("stem_relu", "ReLU", {}),
        *residual_block("block1", "stem_relu", 16, 16, 1),
        *residual_block("block2", "block1_out", 16, 32, 2),
        *residual_block("block3", "block2_out", 32, 64, 2),
        ("pool", "GlobalAvgPool2d", {}),
        ("classifier", "Linear", {"in_features": 64, "out_features": 10}),
    )


RESNET_MNIST = register(
    ModelSpec(
        name="resnet_mnist",
        layers=(),
        graph=_resnet_mnist_nodes(),
        input_shape=(1, 28, 28),
        num_classes=10,
        description="small residual network (3 basic blocks, global average pooling) for MNIST",
        source="He et al., CVPR 2016 (basic block, projection shortcuts); seed 004 exercise 15.4",
    )
)
