"""Pooling: max pooling over k x k windows, and the global average pool before the classifier.

Max pooling pads with -inf, which never wins a maximum; the gradient of each window goes to its first
maximum. The kernels are ``max_pool2d_forward``/``max_pool2d_backward`` and ``global_avg_pool2d_backward``
(``tinyxception.kernels``: read them in ``kernels/reference/pool.py``).
"""
from ..autograd import Function, Tensor
from ..checks import image_batch, int_pair, is_int, window_geometry
from ..kernels import active as kernels


class MaxPool2dFunction(Function):
    """y = max over each k x k window of the -inf padded input."""

    def forward(self, x, kernel, stride, pads):
        out = kernels.max_pool2d_forward(x, kernel, stride, pads)
        self.x, self.out, self.kernel, self.stride, self.pads = x, out, kernel, stride, pads
        return out

    def backward(self, grad):
        return kernels.max_pool2d_backward(grad, self.x, self.out, self.kernel, self.stride, self.pads)


class GlobalAvgPool2dFunction(Function):
    """y[n, c] = mean of x[n, c] over H and W."""

    def forward(self, x):
        self.shape = x.shape
        return kernels.global_avg_pool2d_forward(x)

    def backward(self, grad):
        return kernels.global_avg_pool2d_backward(grad, self.shape)


def max_pool2d(x, kernel_size=3, stride: int = 2, padding="same") -> Tensor:
    """Max over k x k windows of x (N, C, H, W), moved by `stride`.

    `padding` is an int (at most half the kernel, as in PyTorch), "valid" (none) or "same"
    (TensorFlow's rule: output ceil(H / stride), the odd extra pixel at the bottom/right; Xception's
    3x3 stride-2 pools take 74 -> 37 this way). The gradient goes to the first maximum of each window.
    """
    op = "max_pool2d"
    x = image_batch(x, op)
    kernel = int_pair(kernel_size, f"{op}: kernel_size")
    if is_int(padding, minimum=0) and padding > min(kernel) // 2:
        raise ValueError(f"{op}: int padding must be at most half the kernel ({min(kernel) // 2} for "
                         f"kernel {kernel[0]}x{kernel[1]}), got {padding}")
    pads, _ = window_geometry(x.shape, kernel, stride, padding, op)
    return MaxPool2dFunction.apply(x, kernel=kernel, stride=stride, pads=pads)


def global_avg_pool2d(x) -> Tensor:
    """The mean of every channel of x (N, C, H, W) over its H x W pixels: an (N, C) result."""
    return GlobalAvgPool2dFunction.apply(image_batch(x, "global_avg_pool2d"))
