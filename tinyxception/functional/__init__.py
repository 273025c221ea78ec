"""Differentiable operations on Tensors (NCHW activations, OIHW weights)."""
from .activation import elu, relu
from .basic import add, dropout, flatten, linear, mean, mul, reshape
from .conv import conv2d, depthwise_conv2d, pointwise_conv2d
from .loss import cross_entropy, log_softmax
from .norm import batch_norm
from .pool import global_avg_pool2d, max_pool2d
