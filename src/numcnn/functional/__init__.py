"""Pure functions for the mathematics of every layer: forward passes and hand-derived backward passes.

Nothing here owns state. A ``*_forward`` function returns its output together with a declared cache
(a ``NamedTuple`` or plain arrays holding only what backward needs); the matching ``*_backward``
takes the upstream gradient and that cache and returns gradients, never modifying its inputs. The
layer classes in :mod:`numcnn.layers` own the parameters and delegate here.
"""

from numcnn.functional.activation import (
    log_softmax,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from numcnn.functional.combination import CombinationCache, combination_backward, combination_forward
from numcnn.functional.convolution import Conv2dCache, conv2d_backward, conv2d_forward
from numcnn.functional.im2col import col2im, conv_output_size, im2col, im2row_matrix, pair
from numcnn.functional.linear import linear_backward, linear_forward
from numcnn.functional.loss import (
    as_target_distribution,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
    one_hot,
)
from numcnn.functional.pooling import (
    AvgPool2dCache,
    MaxPool2dCache,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from numcnn.functional.rbf import rbf_backward, rbf_forward
from numcnn.functional.subsampling import SubsampleCache, subsample_backward, subsample_forward

__all__ = [
    "AvgPool2dCache",
    "CombinationCache",
    "Conv2dCache",
    "MaxPool2dCache",
    "SubsampleCache",
    "as_target_distribution",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "col2im",
    "combination_backward",
    "combination_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "im2col",
    "im2row_matrix",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_backward",
    "mse_forward",
    "one_hot",
    "pair",
    "rbf_backward",
    "rbf_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_backward",
    "softmax_forward",
    "subsample_backward",
    "subsample_forward",
    "tanh_backward",
    "tanh_forward",
]
