"""Chapter 4: blocks of the network, assembled from the library's layers (notebook 05, pytest --exercises -m
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


def down_block(in_channels, mid_channels, out_channels, rng, leading_relu=True):
    """Return a tx.nn.Module that computes one down block (entry blocks 2-4, exit block 13) on (N, in_channels, H, W):

        main(x) = [ReLU] Sep(in -> mid), BN, ReLU, Sep(mid -> out), BN, MaxPool2d(3, stride=2, padding="same")
        out     = main(x) + BN(Conv2d(in_channels, out_channels, 1, stride=2, padding="same")(x))

    The leading ReLU only when leading_relu (block 2 has none: its input has just been through one); the shortcut
    reads x itself, before that ReLU. Create the layers in the order written (the two separable convs and their
    BatchNorm2d, then the shortcut's conv and BatchNorm2d), with the library's defaults otherwise, so that the
    parameters come in the library's order. On a 6x6 map "same" pads the pool at the bottom and right only.
    """
    raise todo("down_block")
