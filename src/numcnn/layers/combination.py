"""``LearnedCombination2d``: a convolution layer that learns which input maps each output map uses
(seed 000 §3.3, seed 002 "学习特征图的组合"); the mathematics is in :mod:`numcnn.functional.combination`."""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.functional.combination import (
    combination_backward,
    combination_forward,
    combination_weights,
    sparsity_penalty,
    sparsity_penalty_gradient,
)
from numcnn.layers.base import WindowLayer, fan_in_uniform, make_generator

__all__ = ["LearnedCombination2d"]


class LearnedCombination2d(WindowLayer):
    """``u_j = Σ_i α_ij (x_i * k_i) + b_j`` with ``α_·j = softmax(c_·j)`` -- a connection table learned
    by gradient descent instead of drawn by hand (seed 000 §3.3).

    Shape: ``(N, C_in, H, W)`` → ``(N, C_out, OH, OW)``, sizes as for :class:`~numcnn.layers.Conv2d`.

    Parameters:
        - ``kernel`` ``(C_in, KH, KW)``: one kernel ``k_i`` per input map, ``U(±1/√(KH·KW))``;
        - ``logits`` ``(C_in, C_out)``: the unconstrained ``c_ij``, ``U(±1/√C_in)``;
        - ``bias`` ``(C_out,)``.

    Sparsity: ``sparsity=λ > 0`` adds ``Ω = λ Σ_ij |α_ij|^p`` (``p = sparsity_power``) to the objective:
    :meth:`penalty` reports ``Ω`` and each ``backward`` adds ``∂Ω/∂c`` (000 eq. 13 for ``p = 1``) to the
    gradient of ``logits``. With the notes' ``p = 1`` the penalty is the constant ``λ·C_out`` and its
    gradient zero (see :mod:`numcnn.functional.combination`); choose ``p < 1`` for sparse combinations.

    Inspection: :meth:`combination_weights` returns ``α`` and :meth:`combination_table` prints it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        sparsity: float = 0.0,
        sparsity_power: float = 1.0,
        *,
        rng: np.random.Generator | int | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self._set_window(in_channels, out_channels, kernel_size, stride, padding, what="map")
        if sparsity < 0 or not 0 < sparsity_power <= 1:
            raise ConfigurationError(
                "LearnedCombination2d: sparsity must be >= 0 and sparsity_power in (0, 1], "
                f"got {sparsity} and {sparsity_power}"
            )
        self.sparsity, self.sparsity_power = float(sparsity), float(sparsity_power)
        self.dtype = np.dtype(dtype)
        rng = make_generator(rng)
        kernel_fan_in = self.kernel_size[0] * self.kernel_size[1]
        kernel_shape, logits_shape = (self.in_channels, *self.kernel_size), (self.in_channels, self.out_channels)
        self.add_parameter("kernel", fan_in_uniform(kernel_shape, kernel_fan_in, rng, self.dtype))
        self.add_parameter("logits", fan_in_uniform(logits_shape, self.in_channels, rng, self.dtype))
        self.add_parameter("bias", fan_in_uniform((self.out_channels,), kernel_fan_in, rng, self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        u, self.cache = combination_forward(
            x, self.params["kernel"], self.params["logits"], self.params["bias"], self.stride, self.padding
        )
        return u

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        cache = self.require_cache()
        grad_input, grad_kernel, grad_logits, grad_bias = combination_backward(grad_output, cache, need_input_grad)
        if self.sparsity:
            # Ẽ = E + Ω (000 eq. 11): ∂Ẽ/∂c = ∂E/∂c + ∂Ω/∂c, added once per backward pass.
            grad_logits = grad_logits + sparsity_penalty_gradient(cache.alpha, self.sparsity, self.sparsity_power)
        self.grads["kernel"] += grad_kernel
        self.grads["logits"] += grad_logits
        self.grads["bias"] += grad_bias
        return grad_input

    def penalty(self) -> float:
        if not self.sparsity:
            return 0.0
        return sparsity_penalty(self.combination_weights(), self.sparsity, self.sparsity_power)

    def combination_weights(self) -> np.ndarray:
        """``α`` of shape ``(C_in, C_out)``: column ``j`` says how much each input map feeds output map ``j``."""
        return combination_weights(self.params["logits"])

    def combination_table(self, threshold: float = 0.1) -> str:
        """``α`` in percent, one row per input map and one column per output map; ``X`` marks ``α ≥ threshold``
        -- the learned counterpart of a connection table such as LeNet-5's Table I."""
        alpha = self.combination_weights()
        lines = [f"α_ij in % (rows: input maps i, columns: output maps j); X: α_ij >= {threshold:g}"]
        lines.append("    " + "".join(f"{j:>6}" for j in range(self.out_channels)))
        for i, row in enumerate(alpha):
            cells = "".join(f"{100 * a:>5.0f}{'X' if a >= threshold else ' '}" for a in row)
            lines.append(f"{i:<4}{cells}")
        return "\n".join(lines)

    def config(self) -> dict:
        return {**super().config(), "sparsity": self.sparsity, "sparsity_power": self.sparsity_power}

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.sparsity:
            text += f", sparsity={self.sparsity}, sparsity_power={self.sparsity_power}"
        return text
