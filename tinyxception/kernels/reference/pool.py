"""Reference kernels of chapter 3: max pooling and the global average pool, forward and backward.

Max pooling pads with -inf, which never wins a maximum, and reads each kernel tap (i, j) of every window as one
strided slice of the padded batch, as the convolutions do (``conv.window``).
"""
from tinyxception import backend
from tinyxception.kernels.reference.conv import output_size, pad, unpad, window


def max_pool2d_forward(x, kernel, stride, pads):
    """y[n, c, oy, ox] = max over taps (i, j) of xpad[n, c, s*oy + i, s*ox + j], xpad padded with -inf."""
    out, xpad = output_size(x.shape, kernel, stride, pads), pad(x, pads, float("-inf"))
    y = window(xpad, 0, 0, stride, out).copy()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            backend.array_module(x).maximum(y, window(xpad, i, j, stride, out), out=y)
    return y


def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    """dL/dx of y = max_pool2d_forward(x, kernel, stride, pads), given grad = dL/dy.

    dy/dx is 1 for the input that holds its window's maximum and 0 for the others, so each window's gradient
    goes to its maximum. With ties the FIRST tap in row-major order takes it all (as in PyTorch): `claimed`
    marks the windows whose maximum has been found. Overlapping windows add up in one buffer, as in a conv.
    """
    xp, out, xpad = backend.array_module(x), grad.shape[2:], pad(x, pads, float("-inf"))
    grad_xpad, claimed = xp.zeros_like(xpad), xp.zeros(grad.shape, dtype=bool)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            first = (window(xpad, i, j, stride, out) == y) & ~claimed
            tap = window(grad_xpad, i, j, stride, out)
            tap += grad * first
            claimed |= first
    return unpad(grad_xpad, pads)


def global_avg_pool2d_forward(x):
    """y[n, c] = the mean of x[n, c] over its H x W pixels: (N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(grad, x_shape):
    """dL/dx (shape x_shape = (N, C, H, W)) of y[n, c] = mean of x[n, c], given grad = dL/dy of shape (N, C).

    Each of the H*W pixels contributes 1 / (H*W) of its channel's mean, so each receives grad / (H*W).
    """
    h, w = x_shape[2:]
    return backend.array_module(grad).ones(x_shape, dtype=grad.dtype) * (grad / (h * w))[:, :, None, None]
