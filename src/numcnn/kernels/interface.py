"""The declared backend interface: everything a layer may ask of a compute backend.

A backend is any object with the attributes and methods of :class:`Backend`. The layers call only
these (through :func:`numcnn.kernels.active`), so a new backend -- e.g. a CuPy one -- is a new file
defining a class with these methods, registered with :func:`numcnn.kernels.register_backend`; no
layer changes. ``tests/kernels/test_backend_interface.py`` checks every registered backend against
this Protocol, member by member and signature by signature, and every fast backend's numbers
against the reference backend (``tests/kernels/test_kernels_agree.py``).

Conventions shared by all methods:

* Arrays are in the public ``(N, C, H, W)`` convention (any memory layout may come in, and a
  backend may return views of its own layout); ``stride``, ``padding`` and ``kernel`` are
  ``(height, width)`` pairs.
* A ``*_forward`` method returns ``(y, cache)``. The cache is opaque to the layers: they keep it
  together with the backend that made it and hand it back to the same backend's ``*_backward``.
  Each backend declares its own typed cache classes (one meaning per field).
* ``record=False`` (eval mode) tells a backend that backward is unlikely, so it may defer the work
  of recording; a backward pass that follows anyway must still be exact.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend", "BACKEND_MEMBERS"]

Pair = tuple[int, int]


@runtime_checkable
class Backend(Protocol):
    """What a compute backend implements (seed 004's forward maps and their δ / weight gradients).

    Capability flags, read by :class:`~numcnn.layers.Sequential` when it plans fused steps:

    * ``fuses_relu_pool``: ReLU → MaxPool2d may run as ``max_pool2d_forward(..., relu=True)``;
    * ``fuses_conv_pool``: Conv2d → ReLU → MaxPool2d may run through :meth:`conv2d_max_pool2d_forward`;
    * ``fuses_conv_relu``: Conv2d → ReLU may run through :meth:`conv2d_relu_forward`;
    * ``fuses_batch_norm_relu``: BatchNorm2d → ReLU (training) may run through
      :meth:`batch_norm_relu_train_forward`;
    * ``fuses_add_relu``: Add → ReLU (a residual block's end) may run through :meth:`add_relu_forward`.
    """

    name: str
    fuses_relu_pool: bool
    fuses_conv_pool: bool
    fuses_conv_relu: bool
    fuses_batch_norm_relu: bool
    fuses_add_relu: bool

    # -- convolution (eqs. 15.25, 15.38, 15.49) -------------------------------------------------
    def conv2d_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair, padding: Pair
    ) -> tuple[np.ndarray, Any]:
        """``y = W ⋆ x + b``. Shape: x ``(N, C, H, W)``, weight ``(F, C, KH, KW)`` → y ``(N, F, OH, OW)``."""
        ...

    def conv2d_backward(
        self, grad_output: np.ndarray, cache: Any, need_input_grad: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(∂E/∂x or None, ∂E/∂W, ∂E/∂b)`` from δ = ``∂E/∂y`` ``(N, F, OH, OW)``."""
        ...

    def conv2d_relu_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair, padding: Pair
    ) -> tuple[np.ndarray, Any]:
        """``relu(W ⋆ x + b)`` in one pass, as ``(y, cache)``; :meth:`conv2d_backward` of the cache takes δ
        of the ReLU's output (the ReLU's derivative included). Shapes as :meth:`conv2d_forward`."""
        ...

    def conv2d_max_pool2d_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        stride: Pair,
        padding: Pair,
        pool_kernel: Pair,
        pool_stride: Pair,
        pool_padding: Pair,
        record: bool = True,
    ) -> tuple[np.ndarray, Any, Any] | None:
        """``max_pool(relu(conv(x)))`` in one pass, as ``(y, conv_cache, pool_cache)``; ``None`` declines.

        The caches are those :meth:`conv2d_backward` and :meth:`max_pool2d_backward` (with the ReLU
        fused) would get had the layers run one after the other.
        """
        ...

    # -- pooling (eqs. 15.51, 15.52, 15.59) -----------------------------------------------------
    def max_pool2d_forward(
        self, x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, relu: bool = False, record: bool = True
    ) -> tuple[np.ndarray, Any]:
        """``max_pool(x)``, or ``max_pool(relu(x))`` when ``relu``. Shape: ``(N, C, H, W)`` → ``(N, C, OH, OW)``."""
        ...

    def max_pool2d_backward(self, grad_output: np.ndarray, cache: Any) -> np.ndarray:
        """``∂E/∂x``: each window's δ to its first maximum (zero where a fused ReLU cut it)."""
        ...

    def avg_pool2d_forward(
        self, x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair
    ) -> tuple[np.ndarray, Any]:
        """Window means, padding counted as zeros. Shape: ``(N, C, H, W)`` → ``(N, C, OH, OW)``."""
        ...

    def avg_pool2d_backward(self, grad_output: np.ndarray, cache: Any) -> np.ndarray:
        """``∂E/∂x``: every pixel of a window gets ``δ / (KH·KW)``."""
        ...

    # -- element-wise and fully connected ---------------------------------------------------------
    def relu_forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """``y = max(x, 0)``. Shape: any → same."""
        ...

    def relu_backward(self, grad_output: np.ndarray, cache: Any) -> np.ndarray:
        """``∂E/∂x = δ ∘ [x > 0]``."""
        ...

    def add_relu_forward(self, inputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, Any]:
        """``y = max(Σ_k x_k, 0)`` for inputs of one shape; the cache is what :meth:`relu_backward`
        takes for ``y``. Shape: each input any (the same) → same."""
        ...

    def linear_forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """``y = x Wᵀ + b``. Shape: x ``(N, in)``, weight ``(out, in)`` → ``(N, out)``."""
        ...

    def linear_backward(
        self, grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray, need_input_grad: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(∂E/∂x = δ W or None, ∂E/∂W = δᵀ x, ∂E/∂b = Σ_n δ)``."""
        ...

    # -- batch normalisation (Ioffe & Szegedy, Algorithm 1; numcnn.functional.normalization) ----
    def batch_norm_train_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, reduce: Any = None
    ) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray, int]:
        """``y = γ x̂ + β`` with the batch statistics, as ``(y, cache, μ, biased σ², m)``; with ``reduce``
        the statistics are summed over processes (synchronised BN). Shape: ``(N, C, ...)`` → same."""
        ...

    def batch_norm_relu_train_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, reduce: Any = None
    ) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray, int]:
        """``relu(γ x̂ + β)`` with the batch statistics, as :meth:`batch_norm_train_forward` returns its
        result; :meth:`batch_norm_backward` of the cache takes δ of the ReLU's output (the ReLU's
        derivative included). Shape: ``(N, C, ...)`` → same."""
        ...

    def batch_norm_eval_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        running_mean: np.ndarray,
        running_var: np.ndarray,
        eps: float,
    ) -> tuple[np.ndarray, Any]:
        """``y = γ (x − μ̂) s + β`` with the running estimates, as ``(y, cache)``. Shape: ``(N, C, ...)`` → same."""
        ...

    def batch_norm_backward(
        self, grad_output: np.ndarray, cache: Any, need_input_grad: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(∂ℓ/∂x or None, ∂ℓ/∂γ = Σ δ x̂, ∂ℓ/∂β = Σ δ)``."""
        ...

    # -- the optimiser's update (numcnn.optim.SGD) -----------------------------------------------
    def sgd_update(
        self,
        param: np.ndarray,
        grad: np.ndarray,
        velocity: np.ndarray | None,
        lr: float,
        momentum: float,
        weight_decay: float,
    ) -> None:
        """In place, PyTorch's SGD rule: ``d = g + λ·p`` (``λ`` the weight decay), with ``velocity``
        ``v ← μ·v + d`` and ``d = v``, then ``p ← p − η·d``. Each product and sum is rounded to the
        parameters' dtype, in this order (no fused multiply-add), so every backend gives the same
        bits. Shape: ``param``, ``grad`` and ``velocity`` any, the same."""
        ...


def _members() -> tuple[str, ...]:
    annotated = tuple(Backend.__annotations__)
    methods = tuple(name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_"))
    return annotated + methods


# Every attribute and method a backend must provide, in declaration order.
BACKEND_MEMBERS: tuple[str, ...] = _members()
