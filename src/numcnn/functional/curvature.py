"""The curvature pass of LeCun's stochastic diagonal Levenberg–Marquardt method: layer by layer.

LeCun, Bottou, Bengio, Haffner 1998, Appendix C, and LeCun et al., "Efficient BackProp" (1998) §9.1,
estimate the diagonal ``h_kk`` of the Hessian of ``E`` by back-propagating *second* derivatives with
two approximations:

* Gauss–Newton: for ``x = f(a)``, ``∂²E/∂a² ≈ f′(a)² · ∂²E/∂x²`` -- the term ``f″(a) · ∂E/∂x``
  is dropped, which keeps every estimate ``≥ 0``;
* diagonal: ``∂²E/∂x_j² ≈ Σ_i w_ij² · ∂²E/∂a_i²`` for ``a_i = Σ_j w_ij x_j`` -- the cross terms
  ``∂²E/∂a_i∂a_k`` are dropped, so only one number per unit travels backwards.

A parameter's curvature then is ``h_k = Σ_{(i,j)∈V_k} ∂²E/∂a_i² · x_j²`` summed over the set ``V_k`` of
connections that share it (a convolution kernel entry is shared by every output position).

Both approximations together make each rule below *the first-order backward formula of the layer with
every factor squared*: ``δ → D = ∂²E/∂(output)²``, ``x → x²``, ``w → w²``, ``f′ → f′²``. The code says
so literally where it can (convolution and linear layers call their own backward with squared inputs).

For one layer with a diagonal ``D`` at its output the results are exact: ``diag(Jᵀ D J)`` for ``J`` the
layer's Jacobian with respect to its parameters or its input (tested against explicit Jacobians). For a
whole network they equal the diagonal of the Gauss–Newton matrix ``Jᵀ H J`` whenever the dropped cross
terms vanish (tested on such a network), and approximate it otherwise -- LeCun's trade-off: one
backward-like pass instead of one per output.

Every function takes the layer's *input* ``x`` (not a forward cache), so the curvature pass works
whatever a forward pass kept, and all shapes follow the first-order functions they mirror.

The layers of modern networks (issue 8) follow the same rule:

* max pooling: ``y = S x`` with a selection matrix ``S`` of 0/1 entries, so ``S² = S`` and the curvature
  is *routed exactly like the gradient* (exact for one layer; a pixel that is the maximum of several
  overlapping windows receives the sum);
* average pooling ``1/(KH·KW)`` and global average pooling ``1/(H·W)``: the weights squared;
* ReLU: ``f′² = f′``, a mask; dropout ``y = m ∘ x`` with ``m = keep/(1 − p)``: ``m² ∘ D`` (the mask of
  the forward pass, so the estimate belongs to one random sub-network, as a gradient does);
* batch normalisation *approximated* with the batch statistics held constant: ``y = γ (x − μ)/σ + β``
  gives ``∂²E/∂x² ≈ (γ/σ)² D``, ``h_γ = Σ D x̂²``, ``h_β = Σ D``. The dropped terms come from ``μ`` and
  ``σ`` depending on ``x``; they are ``O(1/m)`` for ``m`` values per channel (tested: a few percent at
  ``m = 512``). In evaluation mode the statistics are constants and the rule is exact;
* softmax (as a layer): its Jacobian ``J = diag(y) − y yᵀ`` is dense, ``diag(Jᵀ D J)_j =
  y_j² (Σ_i y_i² D_i + (1 − 2 y_j) D_j)`` -- exact;
* a sum ``y = a + b`` (residual ``Add``) passes ``D`` to each summand, and where one tensor feeds
  several branches (a :class:`~numcnn.layers.Graph` fork) their curvatures add up: the cross term
  ``2 J₁ᵀ D J₂`` between branches is dropped -- the diagonal approximation once more.
"""

from __future__ import annotations

import numpy as np

from numcnn.functional.activation import (
    sigmoid_backward,
    sigmoid_forward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from numcnn.functional.convolution import conv2d_backward, conv2d_forward
from numcnn.functional.global_pooling import global_avg_pool2d_backward
from numcnn.functional.im2col import pair
from numcnn.functional.linear import linear_backward
from numcnn.functional.loss import reduction_scale
from numcnn.functional.normalization import _per_channel, _reduction_axes
from numcnn.functional.pooling import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from numcnn.functional.subsampling import down, up

__all__ = [
    "conv2d_curvature",
    "linear_curvature",
    "subsample_curvature",
    "tanh_curvature",
    "sigmoid_curvature",
    "relu_curvature",
    "max_pool2d_curvature",
    "avg_pool2d_curvature",
    "global_avg_pool2d_curvature",
    "dropout_curvature",
    "batch_norm_curvature",
    "softmax_curvature",
    "rbf_curvature",
    "mse_curvature",
    "cross_entropy_curvature",
    "rbf_mse_curvature",
    "rbf_map_curvature",
]


# -- layers: D = ∂²E/∂(output)² in, ∂²E/∂(input)² and the parameters' h out ------------------------


def conv2d_curvature(
    curvature_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∂²E/∂x², h_W, h_b)`` of a convolution: its backward pass run on ``x²`` and ``W²``.

    ``h_W[f, c, i, j] = Σ_{n,p,q} D[n, f, p, q] · x[n, c, p·SH + i, q·SW + j]²`` (a shared weight sums over
    all its connections), ``h_b = Σ D``, ``∂²E/∂x² = col2im(W² · D)`` -- the input gradient with ``W²``.
    Zero padding stays zero when squared, so padding needs no special case.

    Shape: D ``(N, F, OH, OW)``, x ``(N, C, H, W)``, weight ``(F, C, KH, KW)`` →
    ``(N, C, H, W)``, ``(F, C, KH, KW)``, ``(F,)``.
    """
    _, squared_cache = conv2d_forward(x * x, weight * weight, None, stride, padding)
    curvature_input, curvature_weight, curvature_bias = conv2d_backward(
        curvature_output, squared_cache, need_input_grad=True
    )
    assert curvature_input is not None  # asked for with need_input_grad=True
    return curvature_input, curvature_weight, curvature_bias


def linear_curvature(
    curvature_output: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∂²E/∂x², h_W, h_b) = (D W², Dᵀ x², Σ_n D)``: the linear backward pass with squared factors.

    Shape: D ``(N, out)``, x ``(N, in)``, weight ``(out, in)`` → ``(N, in)``, ``(out, in)``, ``(out,)``.
    """
    curvature_input, curvature_weight, curvature_bias = linear_backward(
        curvature_output, x * x, weight * weight, need_input_grad=True
    )
    assert curvature_input is not None  # asked for with need_input_grad=True
    return curvature_input, curvature_weight, curvature_bias


def subsample_curvature(
    curvature_output: np.ndarray,
    x: np.ndarray,
    beta: np.ndarray,
    factor: int | tuple[int, int],
    mode: str = "sum",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∂²E/∂x², h_β, h_b)`` of ``u = β·down(x) + b``: ``β² up(D)`` (``/(FH·FW)²`` for the mean),
    ``Σ D ∘ d²`` with ``d = down(x)``, and ``Σ D``.

    Shape: D ``(N, C, OH, OW)``, x ``(N, C, H, W)``, beta ``(C,)`` → ``(N, C, H, W)``, ``(C,)``, ``(C,)``.
    """
    factor = pair(factor, "factor")
    downsampled = down(x, factor, mode)
    curvature_bias = curvature_output.sum(axis=(0, 2, 3))
    curvature_beta = (curvature_output * downsampled * downsampled).sum(axis=(0, 2, 3))
    scale = beta.reshape(1, -1, 1, 1) ** 2
    if mode == "mean":
        scale = scale / (factor[0] * factor[1]) ** 2
    curvature_input = up(curvature_output * scale, factor, (x.shape[2], x.shape[3]))
    return curvature_input, curvature_beta, curvature_bias


def tanh_curvature(
    curvature_output: np.ndarray, x: np.ndarray, amplitude: float = 1.0, scale: float = 1.0
) -> np.ndarray:
    """``∂²E/∂x² ≈ f′(x)² · D`` for ``f = A·tanh(S·x)`` (Gauss–Newton: no ``f″`` term)."""
    derivative = tanh_backward(1.0, tanh_forward(x, amplitude, scale), amplitude, scale)
    return curvature_output * derivative * derivative


def sigmoid_curvature(curvature_output: np.ndarray, x: np.ndarray, slope: float = 1.0) -> np.ndarray:
    """``∂²E/∂x² ≈ f′(x)² · D`` for the logistic with slope β, ``f′ = β f (1 − f)``."""
    derivative = sigmoid_backward(1.0, sigmoid_forward(x, slope), slope)
    return curvature_output * derivative * derivative


def relu_curvature(curvature_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``∂²E/∂x² = 1[x > 0] · D`` (ReLU's ``f′² = f′``; its ``f″`` is zero anyway)."""
    return curvature_output * (x > 0)


def max_pool2d_curvature(
    curvature_output: np.ndarray,
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """``∂²E/∂x² = Sᵀ D``: each window's ``D`` goes to its maximum, like δ (``S`` has 0/1 entries, ``S² = S``).

    Shape: D ``(N, C, OH, OW)``, x ``(N, C, H, W)`` → ``(N, C, H, W)``.
    """
    _, cache = max_pool2d_forward(x, kernel_size, stride, padding)
    return max_pool2d_backward(curvature_output, cache)


def avg_pool2d_curvature(
    curvature_output: np.ndarray,
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """``∂²E/∂x_j² = Σ_{windows ∋ j} D / (KH·KW)²``: the average's weight ``1/(KH·KW)`` squared.

    Shape: D ``(N, C, OH, OW)``, x ``(N, C, H, W)`` → ``(N, C, H, W)``.
    """
    _, cache = avg_pool2d_forward(x, kernel_size, stride, padding)
    return avg_pool2d_backward(curvature_output, cache) / (cache.kernel_size[0] * cache.kernel_size[1])


def global_avg_pool2d_curvature(curvature_output: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``∂²E/∂x[n, c, i, j]² = D[n, c] / (H·W)²``. Shape: D ``(N, C)``, x ``(N, C, H, W)`` → x's shape."""
    height, width = x.shape[2], x.shape[3]
    return global_avg_pool2d_backward(curvature_output, (height, width)) / (height * width)


def dropout_curvature(curvature_output: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``∂²E/∂x² = m² ∘ D`` for ``y = m ∘ x`` (``m = keep/(1 − p)``); ``D`` itself when ``mask`` is ``None``
    (evaluation mode, the identity). Shape: any, ``mask`` like D."""
    return curvature_output if mask is None else curvature_output * mask * mask


def batch_norm_curvature(
    curvature_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    eps: float,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∂²E/∂x², h_γ, h_β) ≈ ((γ/σ)² D, Σ D x̂², Σ D)`` with the statistics held constant (module docstring).

    The statistics are those of the batch ``x``, or ``running_mean``/``running_var`` when given (evaluation
    mode, where the rule is exact). Shape: D and x ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, weight
    ``(C,)`` → x's shape, ``(C,)``, ``(C,)``.
    """
    axes = _reduction_axes(x, weight.shape[0])
    if running_mean is None or running_var is None:
        mean, variance = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, variance = running_mean, running_var
    inv_std = 1.0 / np.sqrt(variance + eps)
    normalized = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    curvature_weight = np.sum(curvature_output * normalized * normalized, axis=axes)
    curvature_bias = curvature_output.sum(axis=axes)
    curvature_input = curvature_output * _per_channel((weight * inv_std) ** 2, x.ndim)
    return curvature_input, curvature_weight, curvature_bias


def softmax_curvature(curvature_output: np.ndarray, x: np.ndarray, axis: int = 1) -> np.ndarray:
    """``diag(Jᵀ D J)_j = y_j² (Σ_i y_i² D_i + (1 − 2 y_j) D_j)`` for ``y = softmax(x)``, ``J = diag(y) − y yᵀ``.

    Shape: any, D like x.
    """
    y = softmax_forward(x, axis)
    weighted = np.sum(y * y * curvature_output, axis=axis, keepdims=True)
    return y * y * (weighted + (1.0 - 2.0 * y) * curvature_output)


def rbf_curvature(
    curvature_output: np.ndarray, grad_output: np.ndarray, x: np.ndarray, prototypes: np.ndarray
) -> np.ndarray:
    """``∂²E/∂x_j² ≈ Σ_i D_i (2 (x_j − w_ij))² + 2 Σ_i ∂E/∂y_i`` for Euclidean RBF units ``y_i = ‖x − w_i‖²``.

    The first term is the Gauss–Newton rule. The second is the RBF's own second derivative
    ``∂²y_i/∂x_j² = 2`` weighted by the first derivative ``g_i = ∂E/∂y_i`` -- kept, not dropped: it is
    exact, the whole curvature of LeNet-5's criterion (eq. 8, ``E = ‖x − w_D‖²``, whose
    ``D = 0`` and ``Σ_i g_i = 1/N``), and never negative for eq. 9 either (there
    ``Σ_i g_i = (1 − Σ_i p_i)/N > 0``), so ``h_kk ≥ 0`` still holds.

    Shape: D and grad_output ``(N, K)``, x ``(N, F)``, prototypes ``(K, F)`` → ``(N, F)``.
    """
    difference = x[:, None, :] - prototypes[None, :, :]  # (N, K, F)
    gauss_newton = (curvature_output[:, :, None] * 4.0 * difference * difference).sum(axis=1)
    return gauss_newton + 2.0 * grad_output.sum(axis=1, keepdims=True)


# -- losses: the curvature that starts the pass, ∂²E/∂(network output)² ----------------------------


def mse_curvature(outputs: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """``∂²E/∂y² = 1/N`` for ``E = (1/N) Σ_n ½‖yⁿ − tⁿ‖²`` (exact)."""
    return np.full_like(outputs, reduction_scale(outputs.shape[0], reduction))


def cross_entropy_curvature(probabilities: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """``∂²E/∂u_k² = p_k (1 − p_k) / N``: the diagonal of the cross-entropy Hessian ``diag(p) − p pᵀ``."""
    return probabilities * (1.0 - probabilities) * reduction_scale(probabilities.shape[0], reduction)


def rbf_mse_curvature(targets: np.ndarray) -> np.ndarray:
    """Paper eq. 8 is linear in the RBF outputs: ``∂²E/∂y² = 0``; its curvature enters in :func:`rbf_curvature`."""
    return np.zeros_like(targets)


def rbf_map_curvature(probabilities: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """``∂²E/∂y_i² = p_i (1 − p_i) / N`` for paper eq. 9: the diagonal of its log-sum-exp's Hessian.

    Eq. 9 is a cross-entropy over the scores ``−y`` (plus the rubbish class): its Hessian diagonal is
    that of :func:`cross_entropy_curvature` (here the rows of ``p`` sum to less than 1: the rubbish
    class takes the rest).
    """
    return cross_entropy_curvature(probabilities, reduction)
