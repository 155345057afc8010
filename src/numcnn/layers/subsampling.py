"""``Subsample2d``: the trainable sub-sampling layer of Bouvrie's notes and LeNet-5's S2/S4 layers.

The mathematics is in :mod:`numcnn.functional.subsampling` (forward/backward) and
:mod:`numcnn.functional.curvature` (the SDLM curvature pass).
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError
from numcnn.functional.curvature import subsample_curvature
from numcnn.functional.subsampling import (
    subsample_backward,
    subsample_factor,
    subsample_forward,
    subsample_output_size,
)
from numcnn.layers.activation import ReLU, ScaledTanh, Sigmoid, Tanh
from numcnn.layers.base import Layer, fan_in_uniform, make_generator

__all__ = ["Subsample2d", "ACTIVATIONS"]

# Activations that ``Subsample2d(activation=...)`` accepts by name (the spec of a model is data).
ACTIVATIONS: dict[str, type[Layer]] = {cls.__name__: cls for cls in (Tanh, ScaledTanh, Sigmoid, ReLU)}


class Subsample2d(Layer):
    """``x_j = f(β_j · down(x_j) + b_j)``: one multiplicative β and one additive b per map (seed 000 §3.2,
    seed 002 "降采样层"); LeNet-5's S2 and S4 layers.

    ``down`` sums (``mode="sum"``, as in the notes and in LeNet-5) or averages (``mode="mean"``) every
    non-overlapping ``factor × factor`` block.

    Activation: ``f`` is optional. ``activation=None`` (the default) gives ``u = β·down(x) + b`` and leaves
    ``f`` to the next layer of a ``Sequential`` -- one formula per layer, the layout numcnn's models use.
    ``activation="ScaledTanh"`` (any name in :data:`ACTIVATIONS`, or a layer instance) applies ``f``
    inside, which is exactly ``Sequential(Subsample2d(...), ScaledTanh())`` written as one layer, as in
    the notes' formula.

    Shape: ``(N, C, H, W)`` → ``(N, C, ⌊H/factor⌋, ⌊W/factor⌋)``.

    Parameters: ``beta`` ``(C,)`` and ``bias`` ``(C,)``, drawn like a convolution's from
    ``U(−1/√fan_in, 1/√fan_in)`` with ``fan_in = factor²`` (one tied weight per block pixel).
    LeNet-5: S2 has 6·2 = 12 parameters, S4 16·2 = 32.

    Gradients: ``∂E/∂b = Σ_uv δ``, ``∂E/∂β = Σ_uv δ ∘ d`` with ``d = down(x)`` cached, and
    ``∂E/∂x = β · up(δ)`` with ``up(δ) = δ ⊗ 1ₙₓₙ`` (seed 000 §3.1.1, §3.2.1; ``/n²`` for the mean).
    """

    def __init__(
        self,
        channels: int,
        factor: int | tuple[int, int] = 2,
        mode: str = "sum",
        activation: str | Layer | None = None,
        *,
        rng: np.random.Generator | int | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigurationError(f"Subsample2d needs at least one channel, got {channels}")
        self.channels = int(channels)
        self.factor = subsample_factor(factor, mode)
        self.mode = mode
        self.activation = self._make_activation(activation)
        self.dtype = np.dtype(dtype)
        rng = make_generator(rng)
        fan_in = self.factor[0] * self.factor[1]
        self.add_parameter("beta", fan_in_uniform((self.channels,), fan_in, rng, self.dtype))
        self.add_parameter("bias", fan_in_uniform((self.channels,), fan_in, rng, self.dtype))

    @staticmethod
    def _make_activation(activation: str | Layer | None) -> Layer | None:
        if activation is None or isinstance(activation, Layer):
            return activation
        if activation not in ACTIVATIONS:
            raise ConfigurationError(
                f"Subsample2d: unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)} or a Layer"
            )
        return ACTIVATIONS[activation]()

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        u, self.cache = subsample_forward(x, self.params["beta"], self.params["bias"], self.factor, self.mode)
        return u if self.activation is None else self.activation.forward(u)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        cache = self.require_cache()
        delta: np.ndarray | None = grad_output
        if self.activation is not None:
            delta = self.activation.backward(grad_output)  # δ = ∂E/∂u = f′(u) ∘ ∂E/∂x_j
        assert delta is not None  # an activation always returns its input gradient when asked
        grad_input, grad_beta, grad_bias = subsample_backward(delta, cache, need_input_grad)
        self.grads["beta"] += grad_beta
        self.grads["bias"] += grad_bias
        return grad_input

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.asarray(x, dtype=self.dtype)
        beta = self.params["beta"]
        if self.activation is not None:
            u, _ = subsample_forward(x, beta, self.params["bias"], self.factor, self.mode)
            curvature_output, _ = self.activation.backward_curvature(u, curvature_output)
        curvature_input, curvature_beta, curvature_bias = subsample_curvature(
            curvature_output, x, beta, self.factor, self.mode
        )
        return curvature_input, {"beta": curvature_beta, "bias": curvature_bias}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        return (c, *subsample_output_size((h, w), self.factor))

    def named_children(self):
        # The activation is a child, so train()/eval() reach it (it has no parameters to name).
        return iter(() if self.activation is None else (("activation", self.activation),))

    def config(self) -> dict:
        """The activation, when there is one, as a nested layer description (``{"type", "config"}``)."""
        from numcnn.layers.description import describe_layer

        activation = None if self.activation is None else describe_layer(self.activation)
        return {"channels": self.channels, "factor": list(self.factor), "mode": self.mode, "activation": activation}

    @classmethod
    def from_config(cls, config: dict, rng: np.random.Generator | None = None, dtype=np.float32) -> Subsample2d:
        from numcnn.layers.description import layer_from_description

        config = dict(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = layer_from_description(config["activation"], rng, dtype)
        return cls(**config, rng=rng, dtype=dtype)

    def extra_repr(self) -> str:
        text = f"{self.channels}, factor={self.factor}, mode={self.mode!r}"
        return text if self.activation is None else f"{text}, activation={self.activation!r}"
