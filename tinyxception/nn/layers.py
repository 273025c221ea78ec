"""The layers around the convolutions: BatchNorm, activations, pooling, the classifier and dropout."""
import math

from .. import functional as F
from ..checks import check_int, check_number, check_padding, image_batch, int_pair, layer_input
from ..functional.norm import normalize
from . import init
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Per-channel batch normalisation with learned gamma (scale) and beta (shift).

    Training mode normalises with the batch's statistics and updates the running mean and
    variance (buffers, saved in ``state_dict`` but not trained); evaluation mode uses them.
    The defaults are Keras': eps = 1e-3 and momentum 0.99 for the running averages, which is
    ``momentum=0.01`` in the convention of ``F.batch_norm`` (the weight of the new batch).
    """

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.01):
        super().__init__()
        check_int(num_features, "BatchNorm2d: num_features")
        check_number(eps, "BatchNorm2d: eps", 0, math.inf, "()")
        check_number(momentum, "BatchNorm2d: momentum", 0, 1)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = Parameter(init.ones(num_features))
        self.beta = Parameter(init.zeros(num_features))
        self.register_buffer("running_mean", init.zeros(num_features))
        self.register_buffer("running_var", init.ones(num_features))

    def forward(self, x):
        x = layer_input(x, self.num_features, self.gamma, "BatchNorm2d", ranks=(4, 2))
        return normalize(x, self.gamma, self.beta, self.running_mean, self.running_var, self.training,
                         self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    """max(x, 0); returns a new tensor, so a residual branch can still use the input."""

    def forward(self, x):
        return F.relu(x)


class ELU(Module):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = check_number(alpha, "ELU: alpha", -math.inf, math.inf, "()")

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def make_activation(name: str | None) -> Module | None:
    """ReLU() for "relu", ELU() for "elu", None for None (no activation)."""
    if name not in (None, "relu", "elu"):
        raise ValueError(f"activation must be None, 'relu' or 'elu', got {name!r}")
    return None if name is None else {"relu": ReLU, "elu": ELU}[name]()


class MaxPool2d(Module):
    """Max over k x k windows moved by `stride`; Xception uses 3x3, stride 2, TensorFlow "same" padding."""

    def __init__(self, kernel_size=3, stride: int = 2, padding="same"):
        super().__init__()
        int_pair(kernel_size, "MaxPool2d: kernel_size")
        check_int(stride, "MaxPool2d: stride")
        check_padding(padding, "MaxPool2d: padding")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean of each channel over all pixels."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class GlobalMaxPool2d(Module):
    """(N, C, H, W) -> (N, C): the maximum of each channel over all pixels."""

    def forward(self, x):
        x = image_batch(x, "GlobalMaxPool2d")
        return F.flatten(F.max_pool2d(x, kernel_size=x.shape[2:], stride=1, padding="valid"))


class Linear(Module):
    """The fully connected layer y = x W^T + b with W (out, in) and b (out,); Keras' "Dense"."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        check_int(in_features, "Linear: in_features")
        check_int(out_features, "Linear: out_features")
        self.in_features, self.out_features = in_features, out_features
        rng = init.default_rng(rng)
        self.weight = Parameter(init.glorot_uniform((out_features, in_features), (in_features, out_features), rng))
        self.bias = Parameter(init.zeros(out_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def multiply_adds(self, output_shape) -> int:
        """Every output value is a dot product over in_features inputs."""
        return math.prod(output_shape) * self.in_features

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")


class Dropout(Module):
    """In training, zero each value with probability p and scale the others by 1 / (1 - p); identity in eval.

    `rng` (a NumPy Generator) makes the masks reproducible; None draws them from the array module.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        check_number(p, "Dropout: p", 0, 1, "[)")
        self.p, self.rng = p, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"
