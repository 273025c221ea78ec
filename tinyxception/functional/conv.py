"""Convolutions of NCHW batches with OIHW weights: depthwise, pointwise and grouped (regular ... depthwise).

Xception's separable convolution is a depthwise conv (one k x k filter per channel) followed by a
pointwise conv (1x1, mixing channels). Each has its own fastest way to compute, so each is a Function whose
forward and backward call the kernels of the same name (``tinyxception.kernels``: read them in
``kernels/reference/conv.py``). ``conv2d`` sends each call to the Function the shapes allow, so every case has
one implementation. The public functions validate their inputs once; the layers of ``nn`` validate theirs and
call the Functions directly.
"""
from .. import backend, checks
from ..autograd import Function
from ..checks import window_geometry
from ..kernels import active as kernels


class DepthwiseConv2dFunction(Function):
    """y[n, c] = sum over taps (i, j) of w[c, 0, i, j] * tap_ij(xpad)[n, c]; w: (C, 1, kh, kw)."""

    def forward(self, x, w, stride, pads):
        self.x, self.w, self.stride, self.pads = x, w, stride, pads
        return kernels.depthwise_conv2d_forward(x, w, stride, pads)

    def backward(self, grad):
        return kernels.depthwise_conv2d_backward(grad, self.x, self.w, self.stride, self.pads)


class PointwiseConv2dFunction(Function):
    """The 1x1 convolution; stride s reads x[..., ::s, ::s] (Xception's stride-2 shortcut convs)."""

    def forward(self, x, w, stride=1):
        self.x_shape, self.stride, self.w = x.shape, stride, w
        self.x = x if stride == 1 else x[..., ::stride, ::stride].copy()  # a contiguous copy of the pixels read
        return kernels.pointwise_conv2d_forward(self.x, w)

    def backward(self, grad):
        grad_read, grad_w = kernels.pointwise_conv2d_backward(grad, self.x, self.w)
        if self.stride == 1:
            return grad_read, grad_w
        grad_x = backend.array_module(grad).zeros(self.x_shape, dtype=grad.dtype)  # skipped pixels get none
        grad_x[..., ::self.stride, ::self.stride] = grad_read
        return grad_x, grad_w


class GroupedConv2dFunction(Function):
    """y[n, o] = sum over c, i, j of w[o, c, i, j] * tap_ij(xpad)[n, g*C_in/groups + c], g the group of o."""

    def forward(self, x, w, stride, pads, groups):
        self.x, self.w, self.stride, self.pads, self.groups = x, w, stride, pads, groups
        return kernels.conv2d_forward(x, w, stride, pads, groups)

    def backward(self, grad):
        return kernels.conv2d_backward(grad, self.x, self.w, self.stride, self.pads, self.groups)


def convolution(x, w, stride, pads, groups):
    """The Function for these already checked operands: depthwise, pointwise (1x1, no padding) or grouped."""
    (c_in, c_out), kernel = (x.shape[1], w.shape[0]), w.shape[2:]
    if groups == c_in == c_out:
        return DepthwiseConv2dFunction.apply(x, w, stride=stride, pads=pads)
    if groups == 1 and kernel == (1, 1) and not any(pads[0] + pads[1]):
        return PointwiseConv2dFunction.apply(x, w, stride=stride)
    return GroupedConv2dFunction.apply(x, w, stride=stride, pads=pads, groups=groups)


def _operands(op, x, w, layout):
    """x and w as float Tensors of rank 4, without empty axes, on one device with one dtype, or a clear error."""
    x, w = checks.image_batch(x, op, "x"), checks.float_tensor(w, "w", op)
    checks.expect_rank(w, 4, "w", layout, op)
    checks.expect_nonempty(w, "w", layout, op)
    checks.same_device(op, x=x, w=w)
    checks.same_dtype(op, x=x, w=w)
    return x, w


def depthwise_conv2d(x, w, stride=1, padding=0):
    """Depthwise convolution: channel c of x is filtered by w[c, 0] alone. w: (C, 1, kh, kw).

    padding: int, "valid" or "same" (TensorFlow's rule: extra pixel at the bottom/right).
    """
    x, w = _operands("depthwise_conv2d", x, w, "(C, 1, kh, kw)")
    if w.shape[:2] != (x.shape[1], 1):
        raise ValueError(f"depthwise_conv2d: w must have shape (C, 1, kh, kw) = ({x.shape[1]}, 1, kh, kw) "
                         f"for x with {x.shape[1]} channels, got {w.shape}"
                         + checks.channels_last_hint(x, w.shape[0], "x"))
    pads, _ = window_geometry(x.shape, w.shape[2:], stride, padding, "depthwise_conv2d")
    return DepthwiseConv2dFunction.apply(x, w, stride=stride, pads=pads)


def pointwise_conv2d(x, w):
    """Pointwise (1x1) convolution: every output pixel mixes the C_in channels of one input pixel.

    w: (C_out, C_in, 1, 1). Computed as one matrix product per image.
    """
    x, w = _operands("pointwise_conv2d", x, w, "(C_out, C_in, 1, 1)")
    if w.shape[1:] != (x.shape[1], 1, 1):
        raise ValueError(f"pointwise_conv2d: w must have shape (C_out, C_in, 1, 1) = (C_out, {x.shape[1]}, 1, 1) "
                         f"for x with {x.shape[1]} channels, got {w.shape}"
                         + checks.channels_last_hint(x, w.shape[1], "x"))
    return PointwiseConv2dFunction.apply(x, w)


def conv2d(x, w, stride=1, padding=0, groups=1):
    """Grouped 2-D convolution: groups=1 is a regular conv, groups=C_in=C_out a depthwise one.

    w: (C_out, C_in // groups, kh, kw); input channels g*C_in/groups ... (g+1)*C_in/groups - 1 feed only
    output channels g*C_out/groups ... (g+1)*C_out/groups - 1. padding: int, "valid" or "same" (TensorFlow).
    """
    x, w = _operands("conv2d", x, w, "(C_out, C_in // groups, kh, kw)")
    checks.check_int(groups, "conv2d: groups")
    (c_in, c_out), kernel = (x.shape[1], w.shape[0]), w.shape[2:]
    if c_out % groups:
        raise ValueError(f"conv2d: C_out = {c_out} (w of shape {w.shape}) must be divisible by groups = {groups}")
    if w.shape[1] * groups != c_in:
        raise ValueError(f"conv2d: x of shape {x.shape} has C_in = {c_in} channels but w of shape {w.shape} with "
                         f"groups = {groups} expects C_in = {w.shape[1]} * {groups} = {w.shape[1] * groups}"
                         + checks.channels_last_hint(x, w.shape[1] * groups, "x"))
    pads, _ = window_geometry(x.shape, kernel, stride, padding, "conv2d")
    return convolution(x, w, stride, pads, groups)
