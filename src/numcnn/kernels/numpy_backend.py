"""The ``"numpy"`` backend: the reference mathematics arranged for speed, with NumPy alone.

What changes compared to :mod:`numcnn.functional` (the numbers do not, up to rounding):

* **Batch-last memory** ``(C, H, W, N)`` between the fast layers (:mod:`numcnn.kernels.batch_last`):
  NumPy pays per innermost contiguous run, and with the batch last every pooling view and every
  stride-1 unfolding copies runs ``N`` or ``OW·N`` long instead of one pixel or one output row.
  Layers still see NCHW arrays (views of that memory).
* **Convolution as cache-blocked products** (:mod:`numcnn.kernels.batch_last_conv`): a band of the
  unfolding at a time in a reused buffer, the bias as a row of ones in the product (its gradient
  comes out of the weight gradient's product), the unfolding recomputed for the weight gradient
  instead of stored, the input gradient by kernel rows.
* **Max pooling over strided views** with the ReLU fused in when :class:`~numcnn.layers.Sequential`
  asks for it (:mod:`numcnn.kernels.batch_last_pool`).
* **Fully connected layers** keep the reference's products; the bias gradient is a GEMV ``1ᵀ δ``
  and ``∂E/∂x`` is produced in the memory order of ``x`` (batch-last when ``x`` came flattened from
  a batch-last layer), so no layer has to transpose a gradient back.
* **Threads**: OpenBLAS's only (NumPy's element-wise loops run on one core). Splitting batches over
  Python threads was probed and dropped: on two cores the GIL hand-overs (and waking an idle
  virtual CPU) cost more than the second core gained.
"""

from __future__ import annotations

import numpy as np

from numcnn.kernels import batch_last_conv, batch_last_pool
from numcnn.kernels.batch_last import Workspace
from numcnn.kernels.common import check_conv_input, ones_vector
from numcnn.kernels.reference import ReferenceBackend

__all__ = ["NumpyBackend"]


class NumpyBackend(ReferenceBackend):
    """Fast kernels in pure NumPy; see the module docstring for what is done differently."""

    name = "numpy"
    fuses_relu_pool = True

    # Bytes of unfolded columns per band (see batch_last_conv): small enough to stay in the L2
    # cache between the copy and the product. Probed on LeNet-5 at batch 64 and 256.
    block_bytes = 2**19

    def __init__(self) -> None:
        self.workspace = Workspace()

    # -- fully connected ---------------------------------------------------------------------
    def linear_backward(self, grad_output, x, weight, need_input_grad=True):
        """``∂E/∂W = δᵀ x``, ``∂E/∂b = 1ᵀ δ``, ``∂E/∂x = δ W`` -- the last in ``x``'s memory order."""
        grad_weight = grad_output.T @ x  # (out, in)
        grad_bias = ones_vector(grad_output.shape[0], grad_output.dtype) @ grad_output  # Σ_n δ_n
        grad_input = None
        if need_input_grad and x.strides[0] < x.strides[1]:  # x is (in, N) memory, e.g. flattened batch-last maps
            grad_input = (weight.T @ grad_output.T).T
        elif need_input_grad:
            grad_input = grad_output @ weight
        return grad_input, grad_weight, grad_bias

    # -- convolution -------------------------------------------------------------------------
    def conv2d_forward(self, x, weight, bias, stride, padding):
        check_conv_input(x, weight)
        return batch_last_conv.conv2d_forward(x, weight, bias, stride, padding, self.block_bytes, self.workspace)

    def conv2d_backward(self, grad_output, cache, need_input_grad=True):
        grad_output, cache = self.through_fused_relu(grad_output, cache)
        return batch_last_conv.conv2d_backward(grad_output, cache, need_input_grad, self.block_bytes, self.workspace)

    # -- pooling -------------------------------------------------------------------------------
    def max_pool2d_forward(self, x, kernel, stride, padding, relu=False, record=True):
        """Max pooling (of ``relu(x)`` when ``relu``); ``record=False`` (inference) skips recording the maxima."""
        return batch_last_pool.max_pool2d_forward(x, kernel, stride, padding, relu, record)

    def max_pool2d_backward(self, grad_output, cache):
        return batch_last_pool.max_pool2d_backward(grad_output, cache)

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        return batch_last_pool.avg_pool2d_forward(x, kernel, stride, padding)

    def avg_pool2d_backward(self, grad_output, cache):
        return batch_last_pool.avg_pool2d_backward(grad_output, cache)

    # -- ReLU ------------------------------------------------------------------------------------
    def relu_forward(self, x):
        """``y = max(x, 0)``; the cache is ``y`` itself, since ``y > 0`` exactly where ``x > 0``."""
        y = np.maximum(x, 0)
        return y, y

    def relu_backward(self, grad_output, cache):
        return grad_output * (cache > 0)
