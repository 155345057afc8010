"""VGG-16 (Simonyan & Zisserman, ICLR 2015) exactly as seed 004 table 15.2 lists it ("VGG-Verydeep-16").

Five stages of 3×3 convolutions (padding 1, stride 1, each followed by ReLU) separated by 2×2 max
pooling with stride 2: 64, 64 | 128, 128 | 256 ×3 | 512 ×3 | 512 ×3. A 224×224×3 input leaves the
fifth pooling layer as 7×7×512 (the 25,088 "features" of §15.7.1). The three fully connected layers
are *implemented as convolutions*, as the chapter says of VGG-16: "(7×7×512)×4096" is a 7×7
convolution with 4096 outputs, "4096×4096" and "4096×1000" are 1×1 convolutions; each of the first
two is followed by ReLU and ``Dropout(0.5)``. A final ``Flatten`` gives the ``(N, 1000)`` logits;
table 15.2's softmax layer (row 39) is part of the cross-entropy loss in numcnn.

Defined for ``numcnn summary vgg16`` (shapes, 138,357,544 parameters, FLOPs, and the receptive
fields of table 15.2); training it on a CPU here is out of scope.
"""

from __future__ import annotations

from numcnn.models.registry import LayerSpec, ModelSpec, register

__all__ = ["VGG16", "VGG16_STAGES"]

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convolutions) per stage


def _vgg16_layers() -> tuple[LayerSpec, ...]:
    layers: list[LayerSpec] = []
    in_channels = 3
    for channels, count in VGG16_STAGES:
        for _ in range(count):
            conv = {"in_channels": in_channels, "out_channels": channels, "kernel_size": 3, "padding": 1}
            layers += [("Conv2d", conv), ("ReLU", {})]
            in_channels = channels
        layers.append(("MaxPool2d", {"kernel_size": 2, "stride": 2}))
    layers += [
        ("Conv2d", {"in_channels": 512, "out_channels": 4096, "kernel_size": 7}),  # FC (7×7×512)×4096
        ("ReLU", {}),
        ("Dropout", {"p": 0.5}),
        ("Conv2d", {"in_channels": 4096, "out_channels": 4096, "kernel_size": 1}),  # FC 4096×4096
        ("ReLU", {}),
        ("Dropout", {"p": 0.5}),
        ("Conv2d", {"in_channels": 4096, "out_channels": 1000, "kernel_size": 1}),  # FC 4096×1000
        ("Flatten", {}),
    ]
    return tuple(layers)


VGG16 = register(
    ModelSpec(
        name="vgg16",
        layers=_vgg16_layers(),
        input_shape=(3, 224, 224),
        num_classes=1000,
        description="VGG-16 (VGG-Verydeep-16), 224x224x3 ImageNet input; defined, not trained here",
        source="Simonyan & Zisserman, ICLR 2015; seed 004 §15.7 table 15.2 (FC layers as convolutions)",
    )
)
