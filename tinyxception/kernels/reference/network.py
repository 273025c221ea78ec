"""The assembly exercise's solution: one block of the middle flow is the library's own ``MiddleBlock``.

Read it in ``tinyxception/models/xception.py``: three times (ReLU, SeparableConv2d, BatchNorm2d) in a Sequential,
whose forward adds the block's input (the residual). Not a kernel: it builds a module from the library's layers.
"""
from tinyxception.models.xception import MiddleBlock


def middle_flow_block(channels, rng):
    """One middle-flow block of `channels` channels, as Xception builds it (paper's Fig. 5)."""
    return MiddleBlock(channels, rng=rng)
