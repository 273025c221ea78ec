"""Convolution layers: regular, grouped, depthwise, pointwise, and the depthwise separable convolution.

The paper's spectrum (Fig. 2-4) in parameters for a k x k kernel, C_in -> C_out channels:

    regular convolution      k^2 C_in C_out          Conv2d(C_in, C_out, k)
    grouped, g groups        k^2 C_in C_out / g      Conv2d(C_in, C_out, k, groups=g)
    depthwise separable      k^2 C_in + C_in C_out   SeparableConv2d(C_in, C_out, k)

e.g. k=3, C_in=32, C_out=64: 18,432 versus 2,336. No layer has a bias by default: in
Xception every convolution is followed by BatchNorm, whose beta already is a bias.
"""
import math

from ..checks import check_int, check_padding, int_pair, layer_input, window_geometry
from ..functional.conv import convolution
from . import init
from .layers import make_activation
from .module import Module, Parameter


class Conv2d(Module):
    """A (grouped) 2-D convolution: weight (C_out, C_in / groups, kh, kw), input (N, C_in, H, W).

    ``groups=1`` is the regular convolution; ``groups=g`` splits the channels into g independent
    convolutions (k^2 C_in C_out / g weights); ``groups=C_in=C_out`` is the depthwise extreme.
    ``padding`` is an int, "valid" or "same" (TensorFlow's rule).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding=0,
                 groups: int = 1, bias: bool = False, rng=None):
        super().__init__()
        name = type(self).__name__
        for option, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups),
                              ("stride", stride)):
            check_int(value, f"{name}: {option}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        check_padding(padding, f"{name}: padding")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = int_pair(kernel_size, f"{name}: kernel_size"), stride, padding
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(init.glorot_uniform(shape, self.keras_kernel_shape(), init.default_rng(rng)))
        self.bias = Parameter(init.zeros(out_channels)) if bias else None
        self._pads = {}  # input (H, W) -> pads: the geometry is worked out once per input size

    def keras_kernel_shape(self) -> tuple:
        """The same kernel in Keras' layout (kh, kw, C_in / groups, C_out): it fixes the Glorot fans."""
        return self.kernel_size + (self.in_channels // self.groups, self.out_channels)

    def forward(self, x):
        x = layer_input(x, self.in_channels, self.weight, type(self).__name__)
        size = x.shape[2:]
        if size not in self._pads:
            self._pads[size] = window_geometry(x.shape, self.kernel_size, self.stride, self.padding,
                                               type(self).__name__)[0]
        y = convolution(x, self.weight, self.stride, self._pads[size], self.groups)
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1)

    def multiply_adds(self, output_shape) -> int:
        """Every output value is a dot product over (C_in / groups) * kh * kw inputs."""
        return math.prod(output_shape) * (self.in_channels // self.groups) * math.prod(self.kernel_size)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, " \
               f"padding={self.padding!r}"
        text += f", groups={self.groups}" if self.groups != 1 else ""
        return text + (", bias=True" if self.bias is not None else "")


class DepthwiseConv2d(Conv2d):
    """One k x k filter per channel, no mixing across channels: weight (C, 1, kh, kw), k^2 C parameters.

    The same as ``Conv2d(C, C, k, groups=C)``, computed by the depthwise kernels (``F.depthwise_conv2d``).
    """

    def __init__(self, channels: int, kernel_size, stride: int = 1, padding=0, bias: bool = False, rng=None):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=bias, rng=rng)

    def keras_kernel_shape(self) -> tuple:
        """Keras' depthwise kernel layout (kh, kw, C, 1)."""
        return self.kernel_size + (self.in_channels, 1)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"
        return text + (", bias=True" if self.bias is not None else "")


class PointwiseConv2d(Conv2d):
    """A 1x1 convolution: mixes channels at every pixel, weight (C_out, C_in, 1, 1), C_in C_out parameters."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False, rng=None):
        super().__init__(in_channels, out_channels, 1, bias=bias, rng=rng)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}" + (", bias=True" if self.bias is not None else "")


class SeparableConv2d(Module):
    """Depthwise separable convolution: a k x k spatial conv per channel, then a 1x1 conv across channels.

    Xception puts NO activation between the two steps (Keras' SeparableConv2D does the same);
    ``intermediate_activation="relu"`` or ``"elu"`` inserts one, for the paper's Fig. 10 ablation.
    ``groups=None`` makes the spatial step depthwise (one filter per channel); ``groups=g`` makes it a
    grouped C_in -> C_in convolution with g groups, walking the paper's spectrum from the regular
    convolution (g=1) to depthwise (g=C_in). Parameters: k^2 C_in^2 / g + C_in C_out (k^2 C_in + C_in C_out
    when depthwise). The submodules are named ``depthwise`` and ``pointwise`` like Keras' kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride: int = 1, padding="same",
                 groups: int | None = None, intermediate_activation: str | None = None, bias: bool = False,
                 rng=None):
        super().__init__()
        rng = init.default_rng(rng)
        if groups is None:
            self.depthwise = DepthwiseConv2d(in_channels, kernel_size, stride, padding, rng=rng)
        else:
            self.depthwise = Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=groups, rng=rng)
        self.activation = make_activation(intermediate_activation)
        self.pointwise = PointwiseConv2d(in_channels, out_channels, bias=bias, rng=rng)

    def forward(self, x):
        y = self.depthwise(x)
        if self.activation is not None:
            y = self.activation(y)
        return self.pointwise(y)
