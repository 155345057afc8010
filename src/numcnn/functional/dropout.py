"""Inverted dropout (Srivastava et al., JMLR 2014; seed 004 exercise 15.1 and table 15.2's "Drop").

In training every unit is kept with probability ``1 − p`` and *scaled up* by ``1/(1 − p)``:
``y = x ∘ r / (1 − p)`` with ``r ~ Bernoulli(1 − p)``. The paper instead scales the weights by
``1 − p`` at test time; scaling during training ("inverted" dropout, as in PyTorch and MatConvNet)
gives the same expected activation ``E[y] = x`` and leaves the test-time network untouched, so in
evaluation mode dropout is the identity.

The mask ``m = r / (1 − p)`` is drawn once per forward pass and is all that backward needs:
``∂E/∂x = ∂E/∂y ∘ m`` (the map is linear in ``x`` for a fixed mask, which is also why a frozen
mask makes dropout gradient-checkable).
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ConfigurationError

__all__ = ["check_drop_probability", "dropout_mask", "dropout_forward", "dropout_backward"]


def check_drop_probability(p: float) -> float:
    """``p`` as a float in ``[0, 1)``; ``p = 1`` would drop everything and divide by zero."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p < 1.0:
        raise ConfigurationError(f"dropout probability must be a number in [0, 1), got {p!r}")
    return float(p)


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """``r / (1 − p)`` with ``r ~ Bernoulli(1 − p)`` i.i.d.: entries are 0 or ``1/(1 − p)``.

    Shape: ``shape`` (that of the input), dtype ``dtype``.
    """
    dtype = np.dtype(dtype)
    keep = rng.random(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``y = x ∘ m``. Shape: any, ``mask`` of the same shape."""
    return x * mask


def dropout_backward(grad_output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``∂E/∂x = ∂E/∂y ∘ m``."""
    return grad_output * mask
