"""Batch normalisation layers: own γ, β and the running statistics; the maths is in
:mod:`numcnn.functional.normalization` (Ioffe & Szegedy 2015)."""

from __future__ import annotations

import numpy as np

from numcnn import kernels
from numcnn.errors import ConfigurationError, ShapeError
from numcnn.functional.curvature import batch_norm_curvature
from numcnn.functional.normalization import Reduce, update_running_stats
from numcnn.layers.base import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Layer):
    """Shared body of :class:`BatchNorm1d` and :class:`BatchNorm2d`; they differ in accepted shapes."""

    accepted_ndims: tuple[int, ...] = ()
    shape_text = ""
    # Synchronised batch norm: sums per-channel statistics over the processes of a data-parallel
    # run (numcnn.distributed sets it for --sync-bn); None: the statistics of this input alone.
    reduce: Reduce | None = None

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype=np.float32
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ConfigurationError(f"{type(self).__name__}: num_features must be an int >= 1, got {num_features!r}")
        if not eps > 0 or not 0 < momentum <= 1:
            raise ConfigurationError(
                f"{type(self).__name__}: eps must be > 0 and momentum in (0, 1], got eps={eps!r}, momentum={momentum!r}"
            )
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.dtype = np.dtype(dtype)
        self.add_parameter("weight", np.ones(self.num_features, dtype=self.dtype))  # γ
        self.add_parameter("bias", np.zeros(self.num_features, dtype=self.dtype))  # β
        # PyTorch's buffer names and initial values, so state dicts line up key for key.
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=self.dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim not in self.accepted_ndims or x.shape[1] != self.num_features:
            raise ShapeError(
                f"{type(self).__name__}({self.num_features}) expects input {self.shape_text} with "
                f"C = {self.num_features}, got shape {x.shape}"
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        self._check_input(x)
        weight, bias = self.params["weight"], self.params["bias"]
        backend = kernels.active()
        if not self.training:
            y, cache = backend.batch_norm_eval_forward(
                x, weight, bias, self.buffers["running_mean"], self.buffers["running_var"], self.eps
            )
            self.cache = (backend, cache)  # backward runs on the backend that made the cache
            return y
        return self._train_forward(backend, backend.batch_norm_train_forward, x)

    def forward_relu(self, x: np.ndarray) -> np.ndarray:
        """``relu(BN(x))`` in training mode, one backend pass (used by :class:`~numcnn.layers.Sequential`
        and :class:`~numcnn.layers.Graph` for BatchNorm2d → ReLU where the backend fuses it);
        :meth:`backward` then takes δ of the ReLU's output and includes the ReLU's derivative."""
        x = np.asarray(x, dtype=self.dtype)
        self._check_input(x)
        backend = kernels.active()
        return self._train_forward(backend, backend.batch_norm_relu_train_forward, x)

    def _train_forward(self, backend, forward, x: np.ndarray) -> np.ndarray:
        """Normalise with the batch statistics by ``forward`` (a backend method) and update the running ones."""
        y, cache, mean, variance, count = forward(x, self.params["weight"], self.params["bias"], self.eps, self.reduce)
        self.cache = (backend, cache)
        update_running_stats(
            self.buffers["running_mean"], self.buffers["running_var"], mean, variance, count, self.momentum
        )
        self.buffers["num_batches_tracked"] += 1
        return y

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        backend, cache = self.require_cache()
        grad_input, grad_weight, grad_bias = backend.batch_norm_backward(grad_output, cache, need_input_grad)
        self.grads["weight"] += grad_weight
        self.grads["bias"] += grad_bias
        return grad_input

    def backward_curvature(self, x, curvature_output, grad_output=None):
        """``((γ/σ)² D, Σ D x̂², Σ D)``, the batch statistics (running ones in evaluation mode) held constant:
        an approximation in training mode, see :func:`~numcnn.functional.curvature.batch_norm_curvature`."""
        x = np.asarray(x, dtype=self.dtype)
        running = (None, None) if self.training else (self.buffers["running_mean"], self.buffers["running_var"])
        curvature_input, curvature_weight, curvature_bias = batch_norm_curvature(
            curvature_output, x, self.params["weight"], self.eps, *running
        )
        return curvature_input, {"weight": curvature_weight, "bias": curvature_bias}

    def config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of image batches, one (μ, σ²) per channel over ``N·H·W`` values.

    Shape: ``(N, C, H, W)`` → same.

    Parameters: ``weight`` γ ``(C,)`` (ones), ``bias`` β ``(C,)`` (zeros).
    Buffers: ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` -- PyTorch's
    names. Training mode normalises with the batch statistics and updates the running estimates
    with ``momentum`` (PyTorch's rule, unbiased variance); evaluation mode uses the estimates.

    A convolution followed by BN needs no bias: BN subtracts the channel mean, bias included.
    """

    accepted_ndims = (4,)
    shape_text = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of feature vectors ``(N, C)`` (over ``N`` values per feature) or of
    sequences ``(N, C, L)`` (over ``N·L``), as in PyTorch. Otherwise as :class:`BatchNorm2d`."""

    accepted_ndims = (2, 3)
    shape_text = "(N, C) or (N, C, L)"
