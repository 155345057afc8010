"""Batch normalisation (Ioffe & Szegedy, ICML 2015) with its hand-derived backward pass.

Seed 004 mentions BN only in its exercises (15.3, 15.6 (c)); the maths is Ioffe & Szegedy's
Algorithm 1. For every channel ``c`` the statistics are taken over all ``m`` values that share it --
the batch and, for images, every spatial position (their §3.2: "we jointly normalize all the
activations in a mini-batch, over all locations"), so ``m = N·H·W`` for ``(N, C, H, W)``:

* ``μ = (1/m) Σ x``,  ``σ² = (1/m) Σ (x − μ)²``      (biased variance: it is what normalises)
* ``x̂ = (x − μ) / √(σ² + ε)``,  ``y = γ x̂ + β``

Backward (the chain rule through ``μ`` and ``σ²``, which depend on every ``x`` of the channel; the
paper's §3 lists the intermediate terms ``∂ℓ/∂x̂``, ``∂ℓ/∂σ²``, ``∂ℓ/∂μ``). Collected into one line with
``g = ∂ℓ/∂x̂ = γ ∂ℓ/∂y`` and ``s = 1/√(σ² + ε)``:

* ``∂ℓ/∂x = (s/m) (m g − Σ g − x̂ Σ (g x̂))``
* ``∂ℓ/∂γ = Σ ∂ℓ/∂y · x̂``,  ``∂ℓ/∂β = Σ ∂ℓ/∂y``      (sums over the ``m`` values of a channel)

In inference the running estimates replace the batch statistics, so BN is a fixed per-channel
affine map ``y = γ (x − μ̂) s + β`` whose input gradient is just ``γ s ∂ℓ/∂y``.

Running estimates follow PyTorch's rule with momentum ``α`` (PyTorch's ``momentum``, not the
optimiser's): ``μ̂ ← (1 − α) μ̂ + α μ`` and ``σ̂² ← (1 − α) σ̂² + α σ² m/(m − 1)`` -- the *unbiased*
batch variance, as the paper's Algorithm 2 prescribes for inference (``Var[x] = m/(m−1) E_B[σ²_B]``).

Synchronised batch norm (data-parallel training, :mod:`numcnn.distributed`): when a batch is split
over processes, ``reduce`` -- a function that sums a per-channel array over the processes -- makes
every sum above a sum over the whole batch: ``Σ x`` and ``m`` (then ``Σ (x − μ)²``) in forward, and
``Σ g`` and ``Σ g x̂`` in the input gradient. The statistics, the output and ``∂ℓ/∂x`` are then those of
one process holding the whole batch; ``∂ℓ/∂γ`` and ``∂ℓ/∂β`` stay this process's share (the trainer
sums all parameter gradients afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from numcnn.errors import ShapeError

__all__ = [
    "BatchNormCache",
    "batch_norm_train_forward",
    "batch_norm_eval_forward",
    "batch_norm_backward",
    "update_running_stats",
    "Reduce",
]

# Sums a per-channel array over the processes of a data-parallel run (synchronised batch norm).
Reduce = Callable[[np.ndarray], np.ndarray]


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs, and nothing more."""

    normalized: np.ndarray  # x̂, shape of x (for ∂ℓ/∂γ and, in training mode, ∂ℓ/∂x)
    inv_std: np.ndarray  # (C,): s = 1/√(σ² + ε), of the batch or of the running variance
    weight: np.ndarray  # (C,): γ
    batch_statistics: bool  # True in training mode: μ and σ² depend on x
    synchronised_count: int = 0  # synchronised: m over all processes (0: this input's own N·H·W)
    reduce: Reduce | None = None  # synchronised: the sum over processes, for backward's two sums


def _reduction_axes(x: np.ndarray, num_features: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1: ``(0,)`` for ``(N, C)``, ``(0, 2, 3)`` for ``(N, C, H, W)``."""
    if x.ndim < 2 or x.shape[1] != num_features:
        raise ShapeError(f"batch norm expects input (N, {num_features}, ...), got shape {x.shape}")
    return (0, *range(2, x.ndim))


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """View a ``(C,)`` vector so that it broadcasts along the channel axis of an ``ndim``-D input."""
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_train_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, reduce: Reduce | None = None
) -> tuple[np.ndarray, BatchNormCache, np.ndarray, np.ndarray, int]:
    """Normalise with the statistics of this batch (Algorithm 1 of Ioffe & Szegedy); with ``reduce``,
    of the whole batch that this input is one process's part of (synchronised batch norm).

    Shape:
        - x: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``; weight γ, bias β: ``(C,)``
        - returns y (shape of x), the cache, the batch mean ``(C,)``, the *biased* batch variance
          ``(C,)`` and ``m``, the number of values per channel (for the unbiased running variance)
    """
    axes = _reduction_axes(x, weight.shape[0])
    count = x.size // x.shape[1]
    if reduce is not None:
        totals = reduce(np.append(x.sum(axis=axes), count).astype(x.dtype))  # Σ x and m over all processes
        count = round(float(totals[-1]))
    if count < 2:
        raise ShapeError(
            f"batch norm in training mode needs more than one value per channel, got input shape {x.shape}"
        )
    if reduce is None:
        mean = x.mean(axis=axes)
        centred = x - _per_channel(mean, x.ndim)
        variance = np.mean(centred * centred, axis=axes)
    else:
        # Two passes, as above (Σ (x − μ)² after μ), rather than Σ x² − m μ², which cancels badly.
        mean = (totals[:-1] / count).astype(x.dtype)
        centred = x - _per_channel(mean, x.ndim)
        variance = (reduce(np.sum(centred * centred, axis=axes)) / count).astype(x.dtype)
    inv_std = 1.0 / np.sqrt(variance + eps)
    normalized = centred * _per_channel(inv_std, x.ndim)
    y = normalized * _per_channel(weight, x.ndim) + _per_channel(bias, x.ndim)
    cache = BatchNormCache(normalized, inv_std, weight, True, count if reduce is not None else 0, reduce)
    return y, cache, mean, variance, count


def batch_norm_eval_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, BatchNormCache]:
    """Normalise with the running estimates: a fixed affine map per channel (Algorithm 2, step 11).

    ``x̂ = (x − μ̂) s`` is still cached, because ``∂ℓ/∂γ = Σ ∂ℓ/∂y · x̂`` in this mode too.

    Shape: as :func:`batch_norm_train_forward`; returns y and the cache.
    """
    _reduction_axes(x, weight.shape[0])
    inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
    normalized = (x - _per_channel(running_mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    y = normalized * _per_channel(weight, x.ndim) + _per_channel(bias, x.ndim)
    return y, BatchNormCache(normalized, inv_std, weight, False)


def batch_norm_backward(
    grad_output: np.ndarray, cache: BatchNormCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients ``(∂ℓ/∂x or None, ∂ℓ/∂γ, ∂ℓ/∂β)`` of either forward function (see module docstring).

    Shape: grad_output like x; returns arrays of shapes x, ``(C,)``, ``(C,)``.
    """
    ndim = grad_output.ndim
    axes = (0, *range(2, ndim))
    normalized = cache.normalized
    grad_bias = grad_output.sum(axis=axes)  # Σ ∂ℓ/∂y
    grad_weight = np.sum(grad_output * normalized, axis=axes)  # Σ ∂ℓ/∂y · x̂
    if not need_input_grad:
        return None, grad_weight, grad_bias
    if not cache.batch_statistics:
        # Running estimates are constants: the map is affine and ∂ℓ/∂x = γ s ∂ℓ/∂y.
        return grad_output * _per_channel(cache.weight * cache.inv_std, ndim), grad_weight, grad_bias
    count = cache.synchronised_count or grad_output.size // grad_output.shape[1]
    # With g = γ ∂ℓ/∂y:  Σ g = γ Σ ∂ℓ/∂y  and  Σ g x̂ = γ Σ ∂ℓ/∂y x̂ -- the two sums above, reused
    # (synchronised: summed over the processes first).
    sum_grad, sum_grad_normalized = grad_bias, grad_weight
    if cache.reduce is not None:
        both = cache.reduce(np.concatenate([grad_bias, grad_weight]))
        sum_grad, sum_grad_normalized = both[: grad_bias.shape[0]], both[grad_bias.shape[0] :]
    scale = _per_channel(cache.weight * cache.inv_std / count, ndim)  # γ s / m
    correction = _per_channel(sum_grad, ndim) + normalized * _per_channel(sum_grad_normalized, ndim)
    return scale * (count * grad_output - correction), grad_weight, grad_bias


def update_running_stats(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    batch_mean: np.ndarray,
    batch_var: np.ndarray,
    count: int,
    momentum: float,
) -> None:
    """PyTorch's exponential moving averages, updated in place (``batch_var`` is the biased one).

    ``μ̂ ← (1 − α) μ̂ + α μ_B``;  ``σ̂² ← (1 − α) σ̂² + α σ²_B · m/(m − 1)``.
    """
    unbiased = batch_var * (count / (count - 1))
    running_mean *= 1.0 - momentum
    running_mean += momentum * batch_mean
    running_var *= 1.0 - momentum
    running_var += momentum * unbiased
