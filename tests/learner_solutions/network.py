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
