"""A learner's middle-flow block: a residual module around a list of layers."""
from tinyxception import nn


class MyMiddleBlock(nn.Module):
    def __init__(self, channels, rng):
        super().__init__()
        layers = []
        for _ in range(3):
            layers += [nn.ReLU(), nn.SeparableConv2d(channels, channels, rng=rng), nn.BatchNorm2d(channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


def middle_flow_block(channels, rng):
    return MyMiddleBlock(channels, rng)


class MyDownBlock(nn.Module):
    """Two separable convs and a "same" stride-2 pool, plus a strided 1x1 shortcut on the untouched input."""

    def __init__(self, in_channels, mid_channels, out_channels, rng, leading_relu):
        super().__init__()
        first = [nn.ReLU()] if leading_relu else []
        self.main = nn.Sequential(*first, nn.SeparableConv2d(in_channels, mid_channels, rng=rng),
                                  nn.BatchNorm2d(mid_channels), nn.ReLU(),
                                  nn.SeparableConv2d(mid_channels, out_channels, rng=rng),
                                  nn.BatchNorm2d(out_channels), nn.MaxPool2d(3, stride=2, padding="same"))
        self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, padding="same", rng=rng),
                                  nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return self.main(x) + self.skip(x)


def down_block(in_channels, mid_channels, out_channels, rng, leading_relu=True):
    return MyDownBlock(in_channels, mid_channels, out_channels, rng, leading_relu)
