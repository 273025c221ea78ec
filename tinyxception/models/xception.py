"""Xception (Chollet, CVPR 2017), exactly the network of the paper's Fig. 5 and Keras' ``applications.Xception``.

    entry flow   block1   Conv 32 3x3 s2 valid, BN, ReLU; Conv 64 3x3 valid, BN, ReLU      299 -> 149 -> 147
                 block2   Sep 128, BN, ReLU, Sep 128, BN, MaxPool 3x3 s2  (+ 1x1 s2 shortcut)    -> 74
                 block3   ReLU, Sep 256, BN, ReLU, Sep 256, BN, MaxPool   (+ shortcut)           -> 37
                 block4   ReLU, Sep 728, BN, ReLU, Sep 728, BN, MaxPool   (+ shortcut)           -> 19
    middle flow  block5 ... block12: x + 3 x (ReLU, Sep 728, BN), eight distinct blocks          19
    exit flow    block13  ReLU, Sep 728, BN, ReLU, Sep 1024, BN, MaxPool  (+ shortcut)           -> 10
                 block14  Sep 1536, BN, ReLU, Sep 2048, BN, ReLU
    top          global average pool, dropout, Linear 1000 ("predictions")

"Sep" is a depthwise separable convolution (3x3 depthwise then 1x1 pointwise, no activation
between); every convolution is bias-free and followed by BatchNorm. Module names follow Keras'
layer names inside each block (``sepconv1``, ``sepconv1_bn``, ``sepconv2_act`` ...), so
``model.entry_flow.block2.sepconv1`` is Keras' ``block2_sepconv1``. The forward pass returns logits.
"""
import contextlib
import dataclasses
import itertools

from .. import backend
from ..autograd import Tensor
from ..checks import expect_channels, image_batch, window_geometry
from ..memory import check_memory
from ..nn import (BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, GlobalMaxPool2d, Linear, MaxPool2d, Module, ReLU,
                  SeparableConv2d, Sequential, init)
from .config import XceptionConfig

MIN_FINAL_SIZE = 3
"""The exit flow must end on at least a 3x3 map, so block 14's 3x3 convolutions see a full window of real
pixels. For the paper network this gives Keras' minimum input of 71x71 (71 -> 35 -> 33 -> 17 -> 9 -> 5 -> 3)."""

SMALL_BN_MOMENTUM = 0.1
"""BatchNorm momentum of ``Xception.small``, for runs of a few hundred steps. With Keras' 0.01 (the paper
network's default) the running statistics start from mean 0, variance 1 and still describe that start after
a short run, so evaluation-mode accuracy stays at chance (measured on digits: at most 18% over 10 epochs while
training accuracy reached 99.9%; see docs/training.md)."""


def separable(in_channels: int, out_channels: int, config: XceptionConfig, rng) -> tuple[Module, Module]:
    """(Sep, BN): a separable conv as `config` says (depthwise or grouped, activation inside or not), its BatchNorm."""
    return (SeparableConv2d(in_channels, out_channels, groups=config.groups, rng=rng,
                            intermediate_activation=config.intermediate_activation),
            BatchNorm2d(out_channels, momentum=config.bn_momentum))


class EntryStem(Sequential):
    """Block 1: two plain 3x3 convolutions (32 then 64 channels), each with BN and ReLU."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 config: XceptionConfig = XceptionConfig(), rng=None):
        padding, momentum = config.stem_padding, config.bn_momentum
        super().__init__(
            conv1=Conv2d(in_channels, mid_channels, 3, stride=config.stem_stride, padding=padding, rng=rng),
            conv1_bn=BatchNorm2d(mid_channels, momentum=momentum), conv1_act=ReLU(),
            conv2=Conv2d(mid_channels, out_channels, 3, padding=padding, rng=rng),
            conv2_bn=BatchNorm2d(out_channels, momentum=momentum), conv2_act=ReLU())


class DownBlock(Module):
    """Entry blocks 2-4 and exit block 13: two separable convs and a stride-2 max pool, plus a shortcut.

        main(x) = [ReLU] Sep, BN, ReLU, Sep, BN, MaxPool 3x3 s2 "same"
        out     = main(x) + BN(Conv 1x1 s2 (x))          (just main(x) when config.residual is False)

    Block 2 has no leading ReLU (its input has just been through one). The shortcut reads the
    block's input x before any ReLU, which is why ReLU returns a new tensor instead of editing x.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 config: XceptionConfig = XceptionConfig(), rng=None, leading_relu: bool = True, stride: int = 2):
        super().__init__()
        self.leading_relu, self.residual = leading_relu, config.residual
        if leading_relu:
            self.sepconv1_act = ReLU()
        self.sepconv1, self.sepconv1_bn = separable(in_channels, mid_channels, config, rng)
        self.sepconv2_act = ReLU()
        self.sepconv2, self.sepconv2_bn = separable(mid_channels, out_channels, config, rng)
        self.pool = MaxPool2d(3, stride=stride, padding="same")
        if self.residual:
            self.shortcut = Conv2d(in_channels, out_channels, 1, stride=stride, padding="same", rng=rng)
            self.shortcut_bn = BatchNorm2d(out_channels, momentum=config.bn_momentum)

    def forward(self, x):
        y = self.sepconv1_act(x) if self.leading_relu else x
        y = self.sepconv1_bn(self.sepconv1(y))
        y = self.sepconv2_bn(self.sepconv2(self.sepconv2_act(y)))
        y = self.pool(y)
        return y + self.shortcut_bn(self.shortcut(x)) if self.residual else y

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class MiddleBlock(Sequential):
    """One of the middle flow's blocks: out = x + 3 x (ReLU, Sep, BN), channels and size unchanged.

    Each block is a new object with its own weights: reusing one block object eight times would
    silently share its weights (a trap seen in public implementations).
    """

    def __init__(self, channels: int, config: XceptionConfig = XceptionConfig(), rng=None):
        layers = {}
        for i in (1, 2, 3):
            sep, bn = separable(channels, channels, config, rng)
            layers |= {f"sepconv{i}_act": ReLU(), f"sepconv{i}": sep, f"sepconv{i}_bn": bn}
        super().__init__(**layers)
        self.residual = config.residual

    def forward(self, x):
        y = super().forward(x)  # the three (ReLU, Sep, BN) in order
        return x + y if self.residual else y

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class ExitTail(Sequential):
    """Block 14: Sep 1536, BN, ReLU, Sep 2048, BN, ReLU (no shortcut, no pool)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 config: XceptionConfig = XceptionConfig(), rng=None):
        sep1, bn1 = separable(in_channels, mid_channels, config, rng)
        sep2, bn2 = separable(mid_channels, out_channels, config, rng)
        super().__init__(sepconv1=sep1, sepconv1_bn=bn1, sepconv1_act=ReLU(),
                         sepconv2=sep2, sepconv2_bn=bn2, sepconv2_act=ReLU())


class Xception(Module):
    """The Xception network; the defaults build the paper's (22,855,952 trainable parameters).

    Knobs for the paper's experiments and beyond:

    - ``num_classes``, ``in_channels``: the classifier's outputs and the input's channels;
    - ``middle_blocks``: how many middle-flow blocks (8 in the paper);
    - ``width``: multiplies every channel count (rounded to the nearest int, at least 1);
    - ``residual=False``: drop every shortcut (Fig. 9);
    - ``intermediate_activation=None | "relu" | "elu"``: inside every separable conv (Fig. 10);
    - ``groups``: None for depthwise separable convs; g for a grouped spatial conv with g groups
      (g=1 is a regular conv): the spectrum between Inception-style and Xception convs (Fig. 2-4);
    - ``dropout``: before the classifier, training only (0.5 in the paper);
    - ``include_top=False``: stop before the classifier and return features, pooled by
      ``pooling="avg"`` or ``"max"``, or the (N, C, H, W) map with ``pooling=None``;
    - ``stem_stride``, ``stem_padding``: block 1's stride (2) and padding ("valid"), and
      ``exit_stride``: block 13's stride (2); see ``Xception.small`` for small images;
    - ``bn_momentum``: weight of each new batch in BatchNorm's running statistics (0.01, i.e. Keras' 0.99);
    - ``seed``: an int (or NumPy Generator) for reproducible weights and dropout masks;
    - ``weights``: None (random), ``"imagenet"`` (Keras' ImageNet weights, fetched once and cached, see
      ``tinyxception.pretrained``) or the path of a Keras weight file (``tx.load_keras_weights``).

    Inputs are float32 (or float64) arrays or Tensors of shape (N, in_channels, H, W) with H and W
    at least ``min_input_size`` (71 for the paper network). The forward pass returns logits.
    """

    def __init__(self, num_classes: int = 1000, *, seed=None, weights=None, **options):
        super().__init__()
        self.config = config = XceptionConfig(num_classes, **options)
        c, rng = config.channels(), init.default_rng(seed)
        self.entry_flow = Sequential(
            block1=EntryStem(config.in_channels, c["conv1"], c["conv2"], config, rng),
            block2=DownBlock(c["conv2"], c["block2"], c["block2"], config, rng, leading_relu=False),
            block3=DownBlock(c["block2"], c["block3"], c["block3"], config, rng),
            block4=DownBlock(c["block3"], c["block4"], c["block4"], config, rng))
        self.middle_flow = Sequential(**{f"block{5 + i}": MiddleBlock(c["block4"], config, rng)
                                         for i in range(config.middle_blocks)})
        last = 5 + config.middle_blocks
        self.exit_flow = Sequential(**{
            f"block{last}": DownBlock(c["block4"], c["block4"], c["block13"], config, rng, stride=config.exit_stride),
            f"block{last + 1}": ExitTail(c["block13"], c["block14_1"], c["block14_2"], config, rng)})
        if config.pooling is not None:
            self.global_pool = {"avg": GlobalAvgPool2d, "max": GlobalMaxPool2d}[config.pooling]()
        if config.include_top:
            self.dropout = Dropout(config.dropout, rng=rng)
            self.predictions = Linear(c["block14_2"], config.num_classes, rng=rng)
        self.min_input_size = self._smallest_input()
        if weights is not None:
            from ..pretrained import load_weights  # imported here: pretrained.py sits above the models
            load_weights(self, weights)

    @classmethod
    def small(cls, num_classes: int = 10, in_channels: int = 3, **overrides) -> "Xception":
        """A preset for 32x32 images (digits, CIFAR) that trains in minutes on a laptop CPU.

        The paper shrinks its input 32-fold (stem stride 2, four stride-2 pools: 299 -> 10); a
        32x32 image would end as a single pixel. So the stem keeps the resolution (stride 1,
        "same" padding) and block 13 keeps it too (``exit_stride=1``: its max pool and shortcut move by
        1 pixel): 32 -> 32 -> 16 -> 8 -> 4, and the middle and exit flows work on 4x4 maps (the exit flow
        must end on at least 3x3, see ``MIN_FINAL_SIZE``). ``width=1/8`` (channels 4, 8, 16, 32, 91,
        128, 192, 256) and ``middle_blocks=2`` leave about 0.19 M parameters and 5 M multiply-adds
        per image, yet the full structure: entry/middle/exit flows, separable convs, residuals.
        ``dropout=0``: a model this small underfits before it overfits. ``bn_momentum=0.1``
        (PyTorch's default) instead of Keras' 0.01: the running variances start at 1 while the real
        ones are a few hundredths here, and with 0.01 the start is forgotten only after ~600 steps,
        far more than a few epochs of digits (~25 steps each), so evaluation would use stale
        statistics; 0.1 forgets it in ~50 steps. Any argument of ``Xception`` can be overridden,
        e.g. ``Xception.small(residual=False)`` for Fig. 9.
        """
        options = {"num_classes": num_classes, "in_channels": in_channels, "width": 1 / 8, "middle_blocks": 2,
                   "stem_stride": 1, "stem_padding": "same", "exit_stride": 1, "dropout": 0.0,
                   "bn_momentum": SMALL_BN_MOMENTUM}
        return cls(**{**options, **overrides})

    # --- geometry -------------------------------------------------------------
    def feature_sizes(self, size: int) -> dict[str, int]:
        """Side length of the feature maps for a size x size input, from the layers' geometry alone.

        Keys are module names: block 1's two convs, then every down block (blocks 2-4 and 13):
        ``entry_flow.block1.conv1`` 149, ``entry_flow.block1.conv2`` 147, ``entry_flow.block2`` 74,
        ``entry_flow.block3`` 37, ``entry_flow.block4`` 19, ``exit_flow.block13`` 10 for the paper
        network at 299. Raises ValueError when a kernel does not fit.
        """
        stem = self.entry_flow.block1
        layers = [("entry_flow.block1.conv1", stem.conv1), ("entry_flow.block1.conv2", stem.conv2)]
        layers += [(path, block.pool) for path, block in self.blocks() if isinstance(block, DownBlock)]
        sizes, n = {}, size
        for path, layer in layers:  # every one of them is 3x3
            n = sizes[path] = window_geometry((n, n), (3, 3), layer.stride, layer.padding, path)[1][0]
        return sizes

    def _smallest_input(self) -> int:
        """The smallest side for which every layer fits and the exit flow ends at least MIN_FINAL_SIZE wide."""
        for size in itertools.count(1):
            with contextlib.suppress(ValueError):  # a kernel does not fit yet
                if list(self.feature_sizes(size).values())[-1] >= MIN_FINAL_SIZE:
                    return size

    def blocks(self) -> list[tuple[str, Module]]:
        """("entry_flow.block1", module), ... for the paper's modules block1 ... block14, in order."""
        return [(f"{flow}.{name}", block) for flow in ("entry_flow", "middle_flow", "exit_flow")
                for name, block in getattr(self, flow).named_children()]

    # --- forward ---------------------------------------------------------------
    def check_input(self, x) -> None:
        """Raise a clear TypeError/ValueError unless x is a float (N, in_channels, H, W) batch this model can take,
        and a MemoryError when its activations clearly cannot fit in memory (``tinyxception.memory``)."""
        if not isinstance(x, Tensor) and not backend.is_array(x):
            raise TypeError(f"Xception: input must be a numpy/cupy array or a Tensor, got {type(x).__name__}")
        x = image_batch(x, "Xception")
        expect_channels(x, self.config.in_channels, "x", "Xception")
        if min(x.shape[2:]) < self.min_input_size:
            smallest = self.min_input_size
            chain = " -> ".join(str(n) for n in [smallest, *self.feature_sizes(smallest).values()])
            raise ValueError(f"Xception: input height and width must be at least {smallest} for this "
                             f"configuration (the exit flow must end on at least {MIN_FINAL_SIZE}x{MIN_FINAL_SIZE}: "
                             f"{chain}), got {x.shape[2]}x{x.shape[3]}; upsample the images, or use a configuration "
                             "that downsamples less (Xception.small takes 32x32)")
        weight = self.entry_flow.block1.conv1.weight
        if x.dtype != weight.dtype:
            raise TypeError(f"Xception: input dtype {x.dtype} differs from the weights' {weight.dtype}; "
                            f"convert the input, or the model with model.astype('{x.dtype}')")
        if x.device != weight.device:
            raise ValueError(f"Xception: input is on {x.device} but the model is on {weight.device}; "
                             f"move the input with tx.tensor(x, device='{weight.device}')")
        check_memory(self, x)  # last: the estimate needs a valid geometry

    def forward(self, x):
        """Logits (N, num_classes); without the top, pooled features (N, C) or the feature map (N, C, H, W)."""
        self.check_input(x)
        x = self.exit_flow(self.middle_flow(self.entry_flow(x)))
        if self.config.pooling is not None:
            x = self.global_pool(x)
        if self.config.include_top:
            x = self.predictions(self.dropout(x))
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in dataclasses.asdict(self.config).items())
