"""Batch normalisation of image batches, compiled with numba: one task per channel.

The mathematics is :mod:`numcnn.functional.normalization` (Ioffe & Szegedy, Algorithm 1 and its
backward pass); what changes is the number of passes over memory. NumPy needs about ten
(a mean, a centred copy, its square, a mean, a scaled copy, a product, a sum, …), each over the whole
``(N, C, H, W)`` batch, on the channel-major views the fast layers hand on, where its reductions
over axes ``(0, 2, 3)`` are strided. Here every channel's ``N`` planes are one task:

* forward (training): ``Σ x`` → ``μ``; ``Σ (x − μ)²`` → ``σ²`` (two passes, as the reference, not
  ``Σ x² − m μ²``, which cancels badly); then ``x̂ = (x − μ) s`` and ``y = γ x̂ + β`` in one pass;
* backward: ``Σ δ`` and ``Σ δ x̂`` in one pass, then ``∂ℓ/∂x = (γ s/m)(m δ − Σ δ − x̂ Σ δ x̂)`` in one;
* a following ReLU fused (training): ``max(y, 0)`` is stored instead of ``y``, and backward masks
  δ where that output is zero as it reads it -- the ReLU's own two passes (and its δ array) saved;
* evaluation: ``y = γ (x − μ̂) s + β``, one pass.

The sums are accumulated in float64 whatever the data's dtype (the reference's float32 pairwise
sums agree to rounding). Arrays are flat with the plane strides ``plane_c``/``plane_n`` of
:mod:`numcnn.kernels.numba_kernels`; outputs are flat channel-major ``(C, N, H, W)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["batch_norm_train_forward_kernel", "batch_norm_backward_kernel", "batch_norm_eval_kernel"]

# Let LLVM reorder the sums (and so vectorise them) -- but not assume that no value is NaN or
# infinite: a diverging run must still see its NaN (numcnn.train stops on it).
_REASSOCIATE = {"reassoc", "contract", "nsz", "arcp"}
# Unsigned offsets: numba checks every signed index for a negative value, which keeps LLVM from
# vectorising the loops (as in numcnn.kernels.numba_kernels).
u64 = np.uint64


@njit(parallel=True, cache=True, fastmath=_REASSOCIATE)
def batch_norm_train_forward_kernel(
    src, plane_c, plane_n, shape, weight, bias, eps, relu, out, normalized, mean, variance
):  # fmt: skip
    """Training forward: ``out`` = y (``relu``: ``max(y, 0)``, a following ReLU fused), ``normalized`` = x̂,
    the batch ``mean`` and the biased ``variance``."""
    channels, batch, height, width = shape
    plane = height * width
    count = batch * plane
    for c in prange(channels):
        total = 0.0
        for n in range(batch):
            start = u64(c * plane_c + n * plane_n)
            for k in range(u64(plane)):
                total += src[start + k]
        mu = total / count
        squares = 0.0
        for n in range(batch):
            start = u64(c * plane_c + n * plane_n)
            for k in range(u64(plane)):
                centred = src[start + k] - mu
                squares += centred * centred
        var = squares / count
        inv_std = 1.0 / np.sqrt(var + eps)
        mean[c] = mu
        variance[c] = var
        # x̂ and y in the data's dtype, as the reference computes them.
        shift = normalized.dtype.type(mu)
        scale = normalized.dtype.type(inv_std)
        gamma, beta = weight[c], bias[c]
        for n in range(batch):
            start = u64(c * plane_c + n * plane_n)
            dst = u64((c * batch + n) * plane)
            if relu:
                zero = out.dtype.type(0)  # max of two floats of the data's dtype: no float64 round trip
                for k in range(u64(plane)):
                    value = (src[start + k] - shift) * scale
                    normalized[dst + k] = value
                    out[dst + k] = max(value * gamma + beta, zero)
            else:
                for k in range(u64(plane)):
                    value = (src[start + k] - shift) * scale
                    normalized[dst + k] = value
                    out[dst + k] = value * gamma + beta


@njit(parallel=True, cache=True, fastmath=_REASSOCIATE)
def batch_norm_backward_kernel(
    grad, plane_c, plane_n, normalized, shape, weight, inv_std, batch_statistics, relu, activated,
    need_input_grad, out, grad_weight, grad_bias,
):  # fmt: skip
    """``∂ℓ/∂γ = Σ δ x̂``, ``∂ℓ/∂β = Σ δ`` and, if ``need_input_grad``, ``∂ℓ/∂x`` into ``out``.

    ``normalized`` (x̂) is flat channel-major; ``grad`` (δ) has plane strides ``plane_c``/``plane_n``.
    With ``batch_statistics`` the input gradient goes through μ and σ² (training mode); without,
    it is the affine map's ``γ s δ`` (evaluation mode). With ``relu``, ``grad`` is δ of a fused
    ReLU's output ``activated`` (flat channel-major): δ of the batch norm's own output is ``grad``
    where ``activated > 0`` and zero elsewhere, as the ReLU's backward gives it -- read in place
    in both passes, never stored.
    """
    channels, batch, height, width = shape
    plane = height * width
    count = batch * plane
    for c in prange(channels):
        sum_grad = 0.0
        sum_grad_normalized = 0.0
        for n in range(batch):
            start = u64(c * plane_c + n * plane_n)
            src = u64((c * batch + n) * plane)
            if relu:
                for k in range(u64(plane)):
                    delta = grad[start + k] if activated[src + k] > 0 else grad.dtype.type(0)
                    sum_grad += delta
                    sum_grad_normalized += delta * normalized[src + k]
            else:
                for k in range(u64(plane)):
                    delta = grad[start + k]
                    sum_grad += delta
                    sum_grad_normalized += delta * normalized[src + k]
        grad_bias[c] = sum_grad
        grad_weight[c] = sum_grad_normalized
        if not need_input_grad:
            continue
        gamma_s = weight[c] * inv_std[c]
        if batch_statistics:
            # (γ s / m)(m δ − Σ δ − x̂ Σ δ x̂) = γ s δ − γ s/m Σ δ − x̂ γ s/m Σ δ x̂
            scale = out.dtype.type(gamma_s)
            offset = out.dtype.type(gamma_s * sum_grad / count)
            slope = out.dtype.type(gamma_s * sum_grad_normalized / count)
        else:
            scale = out.dtype.type(gamma_s)
            offset = out.dtype.type(0.0)
            slope = out.dtype.type(0.0)
        for n in range(batch):
            start = u64(c * plane_c + n * plane_n)
            dst = u64((c * batch + n) * plane)
            if relu:
                for k in range(u64(plane)):
                    delta = grad[start + k] if activated[dst + k] > 0 else grad.dtype.type(0)
                    out[dst + k] = scale * delta - offset - slope * normalized[dst + k]
            else:
                for k in range(u64(plane)):
                    out[dst + k] = scale * grad[start + k] - offset - slope * normalized[dst + k]


@njit(parallel=True, cache=True)
def batch_norm_eval_kernel(src, plane_c, plane_n, shape, mean, inv_std, weight, bias, out):
    """Evaluation forward ``y = γ (x − μ̂) s + β`` with the running estimates, in the reference's order of
    operations; with ``γ = 1, β = 0`` it gives ``x̂`` (for a backward pass after evaluation mode)."""
    channels, batch, height, width = shape
    plane = height * width
    for task in prange(channels * batch):
        c = task // batch
        n = task % batch
        start = u64(c * plane_c + n * plane_n)
        dst = u64(task * plane)
        mu, s, gamma, beta = mean[c], inv_std[c], weight[c], bias[c]
        for k in range(u64(plane)):
            out[dst + k] = (src[start + k] - mu) * s * gamma + beta
