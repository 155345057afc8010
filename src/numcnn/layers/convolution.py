"""``Conv2d``: owns a PyTorch-layout kernel and bias and delegates the mathematics to the active
backend (:mod:`numcnn.kernels`), whose reference is :mod:`numcnn.functional.convolution`
(seed 004 eqs. 15.25, 15.38, 15.49)."""

from __future__ import annotations

from typing import Any

import numpy as np

from numcnn import kernels
from numcnn.functional.curvature import conv2d_curvature
from numcnn.layers.base import WindowLayer, fan_in_uniform, make_generator
from numcnn.layers.connections import check_connections

__all__ = ["Conv2d"]


class Conv2d(WindowLayer):
    """2-D convolution (cross-correlation, like PyTorch) over a batch of multi-channel images.

    ``y[n, f] = b[f] + Σ_c weight[f, c] ⋆ x[n, c]`` -- seed 000's ``x_j = f(Σ_{i∈M_j} x_i * k_ij + b_j)``
    before the activation, with every input map connected to every output map.

    Shape:
        - input: ``(N, C_in, H, W)``
        - output: ``(N, C_out, OH, OW)`` with ``OH = ⌊(H + 2·PH − KH) / SH⌋ + 1`` (likewise OW)

    Parameters:
        - ``weight``: ``(C_out, C_in, KH, KW)``; ``bias``: ``(C_out,)`` -- PyTorch's layouts, initialised
          like PyTorch from ``U(−1/√fan_in, 1/√fan_in)`` with ``fan_in = C_in·KH·KW``.

    Gradients:
        ``∂E/∂W = φ(x)ᵀ δ`` (004 eq. 15.38), ``∂E/∂b = Σ δ``, ``∂E/∂x = col2im(δ Wᵀ)`` (004 eq. 15.49).

    Connection table: with ``connections`` (boolean ``(C_in, C_out)``, e.g.
    :data:`~numcnn.layers.connections.LENET5_C3_CONNECTIONS`) output map ``j`` sums only over its input
    maps ``M_j = {i : connections[i, j]}`` -- seed 000's ``x_j = f(Σ_{i∈M_j} x_i * k_ij + b_j)``. The kernels
    ``weight[j, i]`` of absent connections are held at exactly zero: masked in the forward pass and in
    their gradient, so no optimiser step moves them; ``num_parameters()`` counts only the connected
    kernels (LeNet-5's C3: 60·25 + 16 = 1,516). The kernels' initial range uses each map's true fan-in
    ``|M_j|·KH·KW``; the biases keep the full ``C_in·KH·KW``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        *,
        connections=None,
        rng: np.random.Generator | int | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        self._set_window(in_channels, out_channels, kernel_size, stride, padding)
        self.dtype = np.dtype(dtype)
        rng = make_generator(rng)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        weight_shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.add_parameter("weight", fan_in_uniform(weight_shape, fan_in, rng, self.dtype))
        if bias:
            self.add_parameter("bias", fan_in_uniform((self.out_channels,), fan_in, rng, self.dtype))
        self.connections = None
        self.connection_mask = None  # (F, C, 1, 1): 1 where input map c feeds output map f
        if connections is not None:
            self.connections = check_connections(connections, self.in_channels, self.out_channels)
            self.connection_mask = self.connections.T[:, :, None, None].astype(self.dtype)
            inputs_per_map = self.connections.sum(axis=0).reshape(-1, 1, 1, 1)
            # U(−1/√fan_in, 1/√fan_in) with the connected fan-in, zero for absent connections.
            self.params["weight"] *= self.connection_mask * np.sqrt(self.in_channels / inputs_per_map)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        backend = kernels.active()
        y, cache = backend.conv2d_forward(x, *self.backend_arguments())
        self.cache = (backend, cache)  # backward runs on the backend that made the cache
        return y

    def forward_relu(self, x: np.ndarray) -> np.ndarray:
        """``relu(conv(x))`` in one backend pass (used by :class:`~numcnn.layers.Sequential` and
        :class:`~numcnn.layers.Graph` for Conv2d → ReLU where the backend fuses it); :meth:`backward`
        then takes δ of the ReLU's output and includes the ReLU's derivative."""
        x = np.asarray(x, dtype=self.dtype)
        backend = kernels.active()
        y, cache = backend.conv2d_relu_forward(x, *self.backend_arguments())
        self.cache = (backend, cache)
        return y

    def backend_arguments(self) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], tuple[int, int]]:
        """``(weight, bias, stride, padding)`` as a backend's convolution takes them (the kernels in use:
        absent connections zeroed)."""
        return self.connected_weight(), self.params.get("bias"), self.stride, self.padding

    def forward_pooled(self, x: np.ndarray, pool_window: tuple, record: bool) -> tuple[np.ndarray, Any] | None:
        """``max_pool(relu(conv(x)))`` in one backend pass, for :meth:`MaxPool2d.forward_after_conv`.

        ``pool_window`` is the pooling's ``(kernel_size, stride, padding)``. This layer keeps the same
        cache as :meth:`forward` would (so :meth:`backward` is unchanged) and returns the pooled output
        with the pooling's cache, for the pooling layer to keep; ``None`` (nothing changed) when the
        active backend does not fuse these shapes.
        """
        x = np.asarray(x, dtype=self.dtype)
        backend = kernels.active()
        weight, bias, stride, padding = self.backend_arguments()
        pool_kernel, pool_stride, pool_padding = pool_window
        fused = backend.conv2d_max_pool2d_forward(
            x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding, record=record
        )
        if fused is None:
            return None
        y, conv_cache, pool_cache = fused
        self.cache = (backend, conv_cache)
        return y, (backend, pool_cache)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, cache = self.require_cache()
        grad_input, grad_weight, grad_bias = backend.conv2d_backward(grad_output, cache, need_input_grad)
        if self.connection_mask is not None:
            grad_weight = grad_weight * self.connection_mask  # absent connections get exactly zero gradient
        self.grads["weight"] += grad_weight
        if "bias" in self.grads:
            self.grads["bias"] += grad_bias
        return grad_input

    def connected_weight(self) -> np.ndarray:
        """The kernels in use: ``weight``, with absent connections zeroed when there is a table."""
        weight = self.params["weight"]
        return weight if self.connection_mask is None else weight * self.connection_mask

    def num_parameters(self) -> int:
        if self.connections is None:
            return super().num_parameters()
        kernels = int(self.connections.sum()) * self.kernel_size[0] * self.kernel_size[1]
        return kernels + (self.out_channels if "bias" in self.params else 0)

    def backward_curvature(
        self, x: np.ndarray, curvature_output: np.ndarray, grad_output: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.asarray(x, dtype=self.dtype)
        curvature_input, curvature_weight, curvature_bias = conv2d_curvature(
            curvature_output, x, self.connected_weight(), self.stride, self.padding
        )
        if self.connection_mask is not None:
            curvature_weight = curvature_weight * self.connection_mask
        curvatures = {"weight": curvature_weight}
        if "bias" in self.params:
            curvatures["bias"] = curvature_bias
        return curvature_input, curvatures

    def config(self) -> dict:
        config = super().config()
        config["bias"] = "bias" in self.params
        if self.connections is not None:
            config["connections"] = self.connections.tolist()
        return config

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if "bias" not in self.params:
            text += ", bias=False"
        if self.connections is not None:
            text += f", connections={int(self.connections.sum())} of {self.connections.size}"
        return text
