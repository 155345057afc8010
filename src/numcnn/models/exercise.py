"""The MNIST networks of seed 004 exercise 15.6: BASE, BN, ±dropout, SK and SK-s.

Notation of the exercise: a convolution ``x×y×nIn×nOut`` has an ``x×y`` kernel, ``nIn`` input and
``nOut`` output channels, stride 1 and no padding; pooling is 2×2 max pooling with stride 2.

BASE is the "baseline" network of MatConvNet's MNIST example (``cnn_mnist_init.m``, version
1.0-beta20 as the exercise's footnote asks), four blocks::

    block 1   conv 5×5×1×20                → max pool        20@24×24 → 20@12×12
    block 2   conv 5×5×20×50               → max pool        50@8×8   → 50@4×4
    block 3   conv 4×4×50×500 ("FC")       → ReLU            500@1×1
    block 4   conv 1×1×500×10 (classifier) → softmax loss    10@1×1

Note there is no ReLU after blocks 1 and 2, exactly as in MatConvNet's baseline. A final ``Flatten``
turns the ``10@1×1`` maps into the ``(N, 10)`` logits numcnn's cross-entropy loss expects; the
softmax is inside the loss.

* ``bn``: a ``BatchNorm2d`` after each of the three convolutions of blocks 1–3 (before the pooling
  or ReLU, where MatConvNet's ``insertBnorm`` puts it); those convolutions lose their bias, which
  BN's mean subtraction would cancel (MatConvNet removes it too).
* ``base_dropout``, ``bn_dropout``: ``Dropout(0.5)`` after the classifier layer of block 4, as the
  exercise words it -- so dropout acts on the ten *logits*, not on a hidden layer. In training each
  logit is zeroed with probability 1/2 (the others doubled) before the softmax; a dropped logit
  reads as 0, so the loss pushes the correct class's logit up and every wrong one's *below zero*.
  At test time dropout is the identity. This regularises the classifier's scale and margins
  rather than co-adaptation of hidden units, which is what dropout is designed for.
* ``sk`` ("small kernels", based on BN): each 5×5 convolution of blocks 1–2 becomes two 3×3
  convolutions, each followed by BN + ReLU; the first of the two changes the channel count::

      block 1   3×3×1×20 + BN + ReLU + 3×3×20×20 + BN + ReLU + pool     28 → 26 → 24 → 12
      block 2   3×3×20×50 + BN + ReLU + 3×3×50×50 + BN + ReLU + pool    12 → 10 → 8 → 4
      block 3   4×4×50×500 + BN + ReLU;  block 4  1×1×500×10

  Two stacked 3×3 kernels see the same 5×5 window as one 5×5 kernel (004 §15.7.1) with fewer
  weights and one more non-linearity.
* ``sk_<s>`` for s ∈ {2, 1.5, 1, 0.5, 0.2}: SK with every convolution's channel count *except
  block 4's* multiplied by s (block 4 keeps 10 outputs and takes ``round(500·s)`` inputs). Counts
  are rounded to the nearest integer and kept ≥ 1; for these five multipliers every product
  (20s, 50s, 500s) is already a whole number, so nothing is actually rounded. ``sk_1`` is ``sk``.

Initialisation and input scale follow MatConvNet: weights ``N(0, 0.01²)``, biases 0, BN's γ = 1
and β = 0; inputs are raw grey levels 0–255 minus the mean (MatConvNet subtracts the mean *image*;
numcnn's input pipeline subtracts the scalar MNIST mean 0.1307·255 ≈ 33.3). MatConvNet's training
hyper-parameters (batch 100, learning rate 0.001, momentum 0.9, weight decay 0.0005, 20 epochs) are
every model's recommended training settings (``numcnn train --model bn`` uses them) and are spelled
out again in ``numcnn/configs/exercise_15_6.toml``.
"""

from __future__ import annotations

from numcnn.models.registry import LayerSpec, ModelSpec, register

__all__ = ["SK_MULTIPLIERS", "base_layers", "sk_layers", "scaled_channels"]

SOURCE = (
    "seed 004 (Wu, CNN chapter) exercise 15.6; MatConvNet 1.0-beta20 examples/mnist/cnn_mnist_init.m"
)
MATCONVNET_STD = 0.01  # cnn_mnist_init.m: f = 1/100; weights f*randn(...)
PIXEL_SCALE = 1.0 / 255.0  # input std: (pixel/255 − mean)/(1/255) = pixel − 255·mean, MatConvNet's 0–255 range
SK_MULTIPLIERS = ("2", "1.5", "1", "0.5", "0.2")


def scaled_channels(channels: int, multiplier: float) -> int:
    """``round(channels · multiplier)``, halves rounded up, at least 1."""
    return max(1, int(channels * multiplier + 0.5))


def _conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> LayerSpec:
    arguments = {"in_channels": in_channels, "out_channels": out_channels, "kernel_size": kernel}
    if not bias:
        arguments["bias"] = False
    return ("Conv2d", arguments)


def _bn(channels: int) -> LayerSpec:
    return ("BatchNorm2d", {"num_features": channels})


POOL: LayerSpec = ("MaxPool2d", {"kernel_size": 2})
RELU: LayerSpec = ("ReLU", {})


def base_layers(batch_norm: bool = False, dropout: bool = False) -> tuple[LayerSpec, ...]:
    """BASE (optionally with BN after the convolutions of blocks 1–3 and dropout after block 4)."""

    def conv_block(in_channels: int, out_channels: int, kernel: int) -> list[LayerSpec]:
        if batch_norm:
            return [_conv(in_channels, out_channels, kernel, bias=False), _bn(out_channels)]
        return [_conv(in_channels, out_channels, kernel)]

    layers = [
        *conv_block(1, 20, 5), POOL,  # block 1: 20@24×24 → 20@12×12
        *conv_block(20, 50, 5), POOL,  # block 2: 50@8×8 → 50@4×4
        *conv_block(50, 500, 4), RELU,  # block 3: 500@1×1
        _conv(500, 10, 1),  # block 4: the classifier, 10@1×1
    ]  # fmt: skip
    if dropout:
        layers.append(("Dropout", {"p": 0.5}))
    layers.append(("Flatten", {}))
    return tuple(layers)


def sk_layers(multiplier: float = 1.0) -> tuple[LayerSpec, ...]:
    """SK-s: small 3×3 kernels with BN + ReLU, channels of blocks 1–3 scaled by ``multiplier``."""
    c1, c2, c3 = (scaled_channels(c, multiplier) for c in (20, 50, 500))

    def conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> list[LayerSpec]:
        return [_conv(in_channels, out_channels, kernel, bias=False), _bn(out_channels), RELU]

    return (
        *conv_bn_relu(1, c1, 3), *conv_bn_relu(c1, c1, 3), POOL,  # block 1: 28 → 26 → 24 → 12
        *conv_bn_relu(c1, c2, 3), *conv_bn_relu(c2, c2, 3), POOL,  # block 2: 12 → 10 → 8 → 4
        *conv_bn_relu(c2, c3, 4),  # block 3: 4 → 1
        _conv(c3, 10, 1),  # block 4: classifier
        ("Flatten", {}),
    )  # fmt: skip


# MatConvNet's recipe (cnn_mnist.m, cnn_train.m): what 'numcnn train --model base' uses unless told otherwise.
MATCONVNET_TRAINING = {"epochs": 20, "batch_size": 100, "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005}


def _register(name: str, layers: tuple[LayerSpec, ...], description: str) -> ModelSpec:
    return register(
        ModelSpec(
            name=name,
            layers=layers,
            input_shape=(1, 28, 28),
            num_classes=10,
            description=description,
            source=SOURCE,
            input_std=PIXEL_SCALE,
            weight_std=MATCONVNET_STD,
            training=MATCONVNET_TRAINING,
        )
    )


BASE = _register("base", base_layers(), "exercise 15.6 BASE: MatConvNet's MNIST baseline, 4 blocks")
BN = _register("bn", base_layers(batch_norm=True), "exercise 15.6 BN: BASE with batch norm after convs 1-3")
BASE_DROPOUT = _register(
    "base_dropout", base_layers(dropout=True), "exercise 15.6 (d): BASE + dropout(0.5) on the logits"
)
BN_DROPOUT = _register(
    "bn_dropout", base_layers(batch_norm=True, dropout=True), "exercise 15.6 (d): BN + dropout(0.5) on the logits"
)
SK = _register("sk", sk_layers(1.0), "exercise 15.6 SK: BN with each 5x5 conv as two 3x3 conv+BN+ReLU")
SK_S = {
    text: _register(f"sk_{text}", sk_layers(float(text)), f"exercise 15.6 SK-{text}: SK with channels x{text}")
    for text in SK_MULTIPLIERS
}
