"""The paper's Xception (and Xception.small) in plain PyTorch eager mode: the baseline that bench_xception.py
times against.

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

    def __init__(self, c_in, c_mid, c_out, leading_relu=True, stride=2):
        super().__init__()
        layers = [nn.ReLU()] if leading_relu else []
        layers += separable(c_in, c_mid) + [nn.ReLU()] + separable(c_mid, c_out) + [nn.MaxPool2d(3, stride, 1)]
        self.main = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(c_out, eps=1e-3))

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


class Middle(nn.Module):
    """x + 3 x (ReLU, Sep 728, BN)."""

    def __init__(self, c=728):
        super().__init__()
        self.main = nn.Sequential(*[layer for _ in range(3) for layer in [nn.ReLU()] + separable(c, c)])

    def forward(self, x):
        return x + self.main(x)


PAPER = {"conv1": 32, "conv2": 64, "block2": 128, "block3": 256, "block4": 728, "block13": 1024,
         "block14_1": 1536, "block14_2": 2048}


def xception(num_classes=1000, in_channels=3, channels=PAPER, middle_blocks=8, stem_stride=2, stem_padding=0,
             exit_stride=2):
    """Entry flow, the middle blocks, exit flow, global average pool, linear. The defaults are the paper's;
    ``small()`` gives tinyxception's Xception.small."""
    c = channels
    stem = [nn.Conv2d(in_channels, c["conv1"], 3, stride=stem_stride, padding=stem_padding, bias=False),
            nn.BatchNorm2d(c["conv1"], eps=1e-3), nn.ReLU(),
            nn.Conv2d(c["conv1"], c["conv2"], 3, padding=stem_padding, bias=False),
            nn.BatchNorm2d(c["conv2"], eps=1e-3), nn.ReLU()]
    blocks = [Down(c["conv2"], c["block2"], c["block2"], leading_relu=False), Down(c["block2"], c["block3"],
              c["block3"]), Down(c["block3"], c["block4"], c["block4"])]
    blocks += [Middle(c["block4"]) for _ in range(middle_blocks)]
    blocks += [Down(c["block4"], c["block4"], c["block13"], stride=exit_stride)]
    head = separable(c["block13"], c["block14_1"]) + [nn.ReLU()] + separable(c["block14_1"], c["block14_2"])
    return nn.Sequential(*stem, *blocks, *head, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c["block14_2"], num_classes))


def small(num_classes=10, in_channels=3):
    """Xception.small: width 1/8, two middle blocks, stem stride 1 with "same" (1) padding, block 13 stride 1."""
    channels = {name: max(1, round(n / 8)) for name, n in PAPER.items()}
    return xception(num_classes, in_channels, channels, middle_blocks=2, stem_stride=1, stem_padding=1,
                    exit_stride=1)


if __name__ == "__main__":
    print(sum(p.numel() for p in xception().parameters()))
