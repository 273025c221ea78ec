"""Chapter 4: one block of the network, assembled from the library's layers (notebook 05, pytest --exercises -m
ch4_xception)."""
from tinyxception.exercise_mode import todo


def middle_flow_block(channels, rng):
    """Return a tx.nn.Module that computes one block of Xception's middle flow on (N, channels, H, W) Tensors:

        out = x + f(x),   f = three times (ReLU, SeparableConv2d, BatchNorm2d), channels and size unchanged

    Use the layers of tinyxception.nn with their defaults (SeparableConv2d(channels, channels, rng=rng): 3x3
    depthwise then 1x1 pointwise, "same" padding, no bias; BatchNorm2d(channels): Keras' eps and momentum), and
    create them in that order, so that the parameters come in the library's order. A Module subclass whose
    forward adds x to a Sequential's output is one way; any Module that computes the same values is right.
    """
    raise todo("middle_flow_block")
