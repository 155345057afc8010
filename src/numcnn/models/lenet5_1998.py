"""LeNet-5 as published: LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 1998, §II.B (architecture), §II.C (loss), §III.C (results), App. A–C.

Every layer is the paper's, and seed 002 ("LeNet架构") summarises it::

    input 32×32 (MNIST's 28×28 padded by 2, background −0.1, ink 1.175)
    C1  convolution 6@28×28, 5×5 kernels                           6·25 + 6         =    156
    S2  trainable sub-sampling 6@14×14: x = f(β·Σ₂ₓ₂ + b)            6·2              =     12
    C3  convolution 16@10×10 with the connection table (Table I)   60·25 + 16       =  1,516
    S4  trainable sub-sampling 16@5×5                              16·2             =     32
    C5  convolution 120@1×1, 5×5 kernels (full connection table)   16·120·25 + 120  = 48,120
    F6  full connection 84                                         120·84 + 84      = 10,164
    output: 10 Euclidean RBF units with fixed ±1 codes (7×12 bitmaps, below)          0
                                                                                   ---------
                                                                                      60,000
    squashing function after every layer up to F6: f(a) = 1.7159·tanh(2a/3)

Loss: paper eq. 8, the correct class's RBF output (``"rbf_mse"``); the MAP criterion eq. 9 is
``"rbf_map"`` in :data:`numcnn.losses.LOSS_TYPES`. Prediction: the class with the *smallest* penalty.

Input normalisation (paper §III.A): "the values of the input pixels are normalized so that the background
level (white) corresponds to a value of −0.1 and the foreground (black) corresponds to 1.175. This
makes the mean input roughly 0, and the variance roughly 1." With numcnn's ``(pixel/255 − mean)/std``,
blank (0) ↦ −0.1 and full ink (255) ↦ 1.175 fix ``std = 1/1.275`` and ``mean = 0.1/1.275``; the padding
border gets the background value too.

Not reproduced: the paper's initialisation ``U(±2.4/F_i)`` (numcnn's ``U(±1/√F_i)`` is used; C3's kernels
take the true fan-in of each map, ``|M_j|·25``, its biases the full ``6·25``), and its online updates
(numcnn trains on mini-batches).
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.layers.connections import LENET5_C3_CONNECTIONS
from numcnn.models.registry import ModelSpec, register

__all__ = ["DIGIT_BITMAPS", "DIGIT_CODES", "LENET5_1998", "parse_bitmaps"]

# The RBF codes: stylised 7-wide, 12-high images of the digits, '#' = +1 (ink), '.' = −1 (paper Fig. 3
# draws them for the whole ASCII set; these are drawn after it). F6's 84 units are read as this
# picture row by row, so F6 learns to *draw* the digit it sees.
DIGIT_BITMAPS = """
   0        1        2        3        4        5        6        7        8        9
.......  .......  .......  .......  .......  .......  .......  .......  .......  .......
..###..  ...#...  ..###..  ######.  ....#..  #######  ....##.  #######  .#####.  .#####.
.#...#.  ..##...  .#...#.  ......#  ...##..  #......  ...#...  ......#  #.....#  #.....#
#.....#  .#.#...  #.....#  ......#  ..#.#..  #......  ..#....  .....#.  #.....#  #.....#
#.....#  ...#...  ......#  .....#.  .#..#..  ######.  .#.....  ....#..  #.....#  #.....#
#.....#  ...#...  .....#.  ..###..  #...#..  ......#  #.####.  ...#...  .#####.  #.....#
#.....#  ...#...  ....#..  .....#.  #######  ......#  ##....#  ...#...  #.....#  .######
#.....#  ...#...  ...#...  ......#  ....#..  ......#  #.....#  ..#....  #.....#  ......#
#.....#  ...#...  ..#....  ......#  ....#..  ......#  #.....#  ..#....  #.....#  ......#
.#...#.  ...#...  .#.....  ......#  ....#..  #.....#  #.....#  ..#....  #.....#  .....#.
..###..  .#####.  #######  ######.  ....#..  .#####.  .#####.  ..#....  .#####.  .####..
.......  .......  .......  .......  .......  .......  .......  .......  .......  .......
"""


def parse_bitmaps(text: str, height: int = 12, width: int = 7) -> np.ndarray:
    """Side-by-side ``#``/``.`` pictures (after a header line of labels) → ``(K, height·width)`` codes of ``±1``."""
    rows = [line.split() for line in text.strip("\n").splitlines()[1:]]
    if len(rows) != height or any(len(row) != len(rows[0]) for row in rows):
        raise ConfigurationError(f"expected {height} rows of equally many pictures")
    codes = []
    for picture in range(len(rows[0])):
        pixels = "".join(row[picture] for row in rows)
        if len(pixels) != height * width or set(pixels) - {"#", "."}:
            raise ConfigurationError(f"picture {picture} is not {height}×{width} of '#' and '.'")
        codes.append([1.0 if pixel == "#" else -1.0 for pixel in pixels])
    return np.array(codes)


DIGIT_CODES = parse_bitmaps(DIGIT_BITMAPS)  # (10, 84)
DIGIT_CODES.setflags(write=False)

# LeCun's input scaling: blank -> -0.1, ink -> 1.175 (see the module docstring).
_INK_RANGE = 1.175 - (-0.1)

LENET5_1998 = register(
    ModelSpec(
        name="lenet5_1998",
        description="LeNet-5 as published: trainable sub-sampling, C3 connection table, scaled tanh, RBF output",
        source="LeCun, Bottou, Bengio, Haffner 1998, Proc. IEEE 86(11) §II.B–C, Table I (seed 002 'LeNet架构')",
        input_shape=(1, 32, 32),
        num_classes=10,
        input_padding=2,
        input_mean=0.1 / _INK_RANGE,
        input_std=1.0 / _INK_RANGE,
        loss="rbf_mse",
        prediction="argmin",
        layers=(
            ("Conv2d", {"in_channels": 1, "out_channels": 6, "kernel_size": 5}),  # C1: 6@28×28
            ("ScaledTanh", {}),
            ("Subsample2d", {"channels": 6, "factor": 2}),  # S2: 6@14×14
            ("ScaledTanh", {}),
            # C3: 16@10×10, each map reading the S2 maps of Table I
            ("Conv2d", {"in_channels": 6, "out_channels": 16, "kernel_size": 5, "connections": LENET5_C3_CONNECTIONS}),
            ("ScaledTanh", {}),
            ("Subsample2d", {"channels": 16, "factor": 2}),  # S4: 16@5×5
            ("ScaledTanh", {}),
            ("Conv2d", {"in_channels": 16, "out_channels": 120, "kernel_size": 5}),  # C5: 120@1×1
            ("ScaledTanh", {}),
            ("Flatten", {}),  # 120
            ("Linear", {"in_features": 120, "out_features": 84}),  # F6
            ("ScaledTanh", {}),
            ("EuclideanRBF", {"in_features": 84, "out_features": 10, "prototypes": DIGIT_CODES}),
        ),
        notes=(
            "Euclidean RBF outputs are penalties: the predicted digit is the argmin.",
            "Trained by default as the paper did, with SDLM (see `training`): numcnn train --model lenet5_1998 "
            "gives 1.00% test error. Its squared-distance loss is ~84x larger than cross-entropy, so plain SGD "
            "needs a learning rate far below the one for lenet5.",
        ),
        training={"optimizer": "sdlm", "lr": 0.002, "batch_size": 32, "epochs": 20},
    )
)
