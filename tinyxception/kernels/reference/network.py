"""The assembly exercises' solutions: each block is the library's own, in ``tinyxception/models/xception.py``.

Read them there: ``MiddleBlock``, three times (ReLU, SeparableConv2d, BatchNorm2d) in a Sequential whose forward
adds the block's input (the residual); ``DownBlock``, two separable convs and a "same" max pool of stride 2 plus a
1x1 stride-2 convolution on the shortcut. Not kernels: they build modules from the library's layers.
"""
from tinyxception.models.xception import DownBlock, MiddleBlock


def middle_flow_block(channels, rng):
    """One middle-flow block of `channels` channels, as Xception builds it (paper's Fig. 5)."""
    return MiddleBlock(channels, rng=rng)


def down_block(in_channels, mid_channels, out_channels, rng, leading_relu=True):
    """One down block (entry blocks 2-4 and exit block 13 of the paper's Fig. 5), with its defaults: stride 2,
    residual."""
    return DownBlock(in_channels, mid_channels, out_channels, rng=rng, leading_relu=leading_relu)
