"""``Dropout``: holds the drop probability, its random generator and the current mask; the maths
is in :mod:`numcnn.functional.dropout`."""

from __future__ import annotations

import numpy as np

from numcnn.errors import NumcnnError
from numcnn.functional.curvature import dropout_curvature
from numcnn.functional.dropout import check_drop_probability, dropout_backward, dropout_forward, dropout_mask
from numcnn.layers.base import Layer, make_generator

__all__ = ["Dropout"]

# The cache in evaluation mode (or with p = 0): the layer was the identity, backward passes δ through.
IDENTITY = "identity"


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the kept
    ones by ``1/(1 − p)``; in evaluation mode, the identity. Shape: any → same.

    Randomness is explicit: masks come from ``rng`` (a generator or a seed; models built by
    :func:`numcnn.models.build` share the build generator, so a training seed fixes every mask).
    A fresh mask is drawn at every training-mode forward pass, unless one is frozen with
    :meth:`freeze_mask` -- then the layer is a fixed linear map, which gradient checks need.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        self.p = check_drop_probability(p)
        self.rng = make_generator(rng)
        self.frozen_mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self.cache = IDENTITY
            return x
        mask = self.frozen_mask
        if mask is None:
            mask = dropout_mask(x.shape, self.p, self.rng, x.dtype)
        elif mask.shape != x.shape:
            raise NumcnnError(f"Dropout: the frozen mask has shape {mask.shape}, the input {x.shape}")
        self.cache = mask
        return dropout_forward(x, mask)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        mask = self.require_cache()
        if not need_input_grad:
            return None
        return grad_output if mask is IDENTITY else dropout_backward(grad_output, mask)

    def backward_curvature(self, x, curvature_output, grad_output=None):
        """``m² ∘ D`` with the mask of the last forward pass (the curvature pass runs one on ``x`` first)."""
        mask = self.require_cache()
        return dropout_curvature(curvature_output, None if mask is IDENTITY else mask), {}

    def freeze_mask(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Reuse ``mask`` (default: the one drawn by the last training forward pass) from now on."""
        if mask is None:
            if self.cache is None or self.cache is IDENTITY:
                raise NumcnnError("Dropout.freeze_mask() needs a training-mode forward pass first, or a mask")
            mask = self.cache
        self.frozen_mask = np.array(mask, copy=True)
        return self.frozen_mask

    def unfreeze_mask(self) -> None:
        """Draw a fresh mask at every forward pass again."""
        self.frozen_mask = None

    def config(self) -> dict:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p:g}"
