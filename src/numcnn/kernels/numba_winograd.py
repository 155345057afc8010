"""Winograd F(2×2, 3×3): 3×3 stride-1 convolutions with 2.25× fewer multiplications, compiled with numba.

Lavin & Gray (2016), *Fast Algorithms for Convolutional Neural Networks*. Cut each output plane into
2×2 tiles; the 4×4 input patch ``d`` under a tile and a 3×3 kernel ``g`` give the tile as

    ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``                                         (Lavin eq. 8)

with the constant matrices below. Summed over the input channels, the element-wise product becomes,
for each of the 16 positions ``ξ`` of the 4×4 transformed tile, one matrix product

    ``M[ξ] (F × T) = U[ξ] (F × C) · V[ξ] (C × T)``,   ``U = G g Gᵀ``,  ``V = Bᵀ d B``  (T: tiles)

that is 16·F·C multiply-adds per tile of four outputs instead of the 36·F·C of seed 004 eq. 15.25.
The identity is exact in exact arithmetic, so the backward passes are its chain rule, and equal the
gradients of eqs. 15.38 and 15.49 (up to rounding):

* ``∂E/∂M = A δ Aᵀ`` (δ's 2×2 tile lifted to 4×4), ``∂E/∂U[ξ] = Σ_T ∂E/∂M[ξ] · V[ξ]ᵀ`` and
  ``∂E/∂g = Gᵀ (∂E/∂U) G`` (eq. 15.38);
* ``∂E/∂V[ξ] = U[ξ]ᵀ · ∂E/∂M[ξ]`` and ``∂E/∂d = B (∂E/∂V) Bᵀ``, the 4×4 patches of neighbouring
  tiles overlapping by two rows or columns and added up (eq. 15.49).

F(2×2, 3×3)'s matrices hold only 0, ±1 and ±½, so in float32 its results differ from the direct
sums by a few units in the last place (Lavin §5; the tests bound it against the reference).

This module holds the constant matrices and the kernel transforms (plain NumPy); the passes over
the images are :mod:`numcnn.kernels.numba_winograd_lanes` (forward, and both gradients).
"""

from __future__ import annotations

import numpy as np

__all__ = ["B_T", "G", "A_T", "weight_transform", "weight_grad_transform"]

# Lavin eq. 8 for m = 2, r = 3 (rows of Bᵀ, G and Aᵀ).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def weight_transform(weight: np.ndarray) -> np.ndarray:
    """``U[ξ, f, c] = (G g[f, c] Gᵀ)[ξ]`` for a ``(F, C, 3, 3)`` weight: ``(16, F, C)``, C-contiguous.

    As one product: ``vec(G g Gᵀ) = (G ⊗ G) vec(g)`` for every kernel at once (an einsum over the
    six indices took milliseconds for 64 channels).
    """
    filters, channels = weight.shape[:2]
    kron = np.kron(G, G).astype(weight.dtype)  # (16, 9): [(a, b), (i, j)] = G[a, i] · G[b, j]
    return np.ascontiguousarray((kron @ weight.reshape(filters * channels, 9).T).reshape(16, filters, channels))


def weight_grad_transform(grad_u: np.ndarray) -> np.ndarray:
    """``∂E/∂g[f, c] = Gᵀ (∂E/∂U[·, f, c]) G``: ``(16, F, C)`` → ``(F, C, 3, 3)`` (the adjoint of the above)."""
    _, filters, channels = grad_u.shape
    kron = np.kron(G, G).astype(grad_u.dtype)
    return (grad_u.reshape(16, filters * channels).T @ kron).reshape(filters, channels, 3, 3)
