"""The paper's Xception in plain PyTorch eager mode: the baseline that bench_xception.py times against.

Same layers and channel counts as tinyxception.Xception (bias-free convs, BN eps 1e-3). Max pools use
PyTorch's symmetric padding=1; at these sizes that costs the same time as TensorFlow's "same" rule.
"""
from torch import nn


def separable(c_in, c_out):
    """Depthwise 3x3 then pointwise 1x1, no activation between, then BN."""
    return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, eps=1e-3)]


class Down(nn.Module):
    """Entry/exit block: [ReLU] Sep, BN, ReLU, Sep, BN, MaxPool, plus a 1x1 stride-2 shortcut."""

    def __init__(self, c_in, c_mid, c_out, leading_relu=True):
        super().__init__()
        layers = [nn.ReLU()] if leading_relu else []
        layers += separable(c_in, c_mid) + [nn.ReLU()] + separable(c_mid, c_out) + [nn.MaxPool2d(3, 2, 1)]
        self.main = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out, eps=1e-3))

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


class Middle(nn.Module):
    """x + 3 x (ReLU, Sep 728, BN)."""

    def __init__(self, c=728):
        super().__init__()
        self.main = nn.Sequential(*[layer for _ in range(3) for layer in [nn.ReLU()] + separable(c, c)])

    def forward(self, x):
        return x + self.main(x)


def xception(num_classes=1000):
    """Entry flow, 8 middle blocks, exit flow, global average pool, linear."""
    stem = [nn.Conv2d(3, 32, 3, stride=2, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU()]
    blocks = [Down(64, 128, 128, leading_relu=False), Down(128, 256, 256), Down(256, 728, 728)]
    blocks += [Middle() for _ in range(8)] + [Down(728, 728, 1024)]
    head = separable(1024, 1536) + [nn.ReLU()] + separable(1536, 2048) + [nn.ReLU()]
    return nn.Sequential(*stem, *blocks, *head, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes))


if __name__ == "__main__":
    print(sum(p.numel() for p in xception().parameters()))
