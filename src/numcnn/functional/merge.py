"""Merging several tensors into one, the operation that turns a chain of layers into a DAG.

A residual connection (He et al., CVPR 2016; seed 004 exercise 15.4) adds a block's input to its
output: ``y = F(x) + x``. As a node of a graph, the sum ``y = Σ_k x_k`` has ``∂y/∂x_k = I`` for every
input, so backward hands the *same* upstream gradient to each input; where a tensor fed several
consumers, the graph then adds their gradients up (the multivariate chain rule).
"""

from __future__ import annotations

import numpy as np

from numcnn.errors import ShapeError

__all__ = ["add_forward", "add_backward"]


def add_forward(*inputs: np.ndarray) -> np.ndarray:
    """Element-wise sum of two or more arrays of one shape (no broadcasting: a shape slip is an error)."""
    first = inputs[0]
    for index, other in enumerate(inputs[1:], start=1):
        if other.shape != first.shape:
            raise ShapeError(f"Add: input {index} has shape {other.shape}, input 0 has {first.shape}")
    total = first + inputs[1]
    for other in inputs[2:]:
        total += other  # total is a fresh array: adding in place modifies no input
    return total


def add_backward(grad_output: np.ndarray, num_inputs: int) -> tuple[np.ndarray, ...]:
    """``∂E/∂x_k = ∂E/∂y`` for each of the ``num_inputs`` inputs (the same array, not copies)."""
    return (grad_output,) * num_inputs
