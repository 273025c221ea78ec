"""Reference kernels of chapter 2: depthwise, pointwise and grouped (regular ... depthwise) convolution.

Shapes: x (N, C, H, W); pads ((top, bottom), (left, right)) of zeros around each image; a kh x kw window moved
by stride s gives Ho = (H + top + bottom - kh) // s + 1 rows (Wo likewise). Output pixel (oy, ox) of kernel tap
(i, j) reads padded pixel (s*oy + i, s*ox + j): for all output pixels at once that is ONE strided slice of the
padded batch, ``window(xpad, i, j, ...)``, so every kernel below is a loop over the kh*kw taps.
"""
from tinyxception import backend


def pad(x, pads, value=0.0):
    """x (N, C, H, W) with `value` added around every image: pads = ((top, bottom), (left, right))."""
    return backend.array_module(x).pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=value)


def unpad(xpad, pads):
    """The inverse of pad: the (N, C, H, W) interior of xpad."""
    (top, bottom), (left, right) = pads
    return xpad[:, :, top:xpad.shape[2] - bottom, left:xpad.shape[3] - right]


def output_size(x_shape, kernel, stride, pads):
    """(Ho, Wo): how many stride-s positions a kh x kw window takes in the padded image."""
    return tuple((n + before + after - k) // stride + 1 for n, (before, after), k in zip(x_shape[2:], pads, kernel))


def window(xpad, i, j, stride, out):
    """Tap (i, j) of every window: the (N, C, Ho, Wo) view xpad[:, :, s*oy + i, s*ox + j]."""
    return xpad[:, :, i:i + stride * out[0]:stride, j:j + stride * out[1]:stride]


def depthwise_conv2d_forward(x, w, stride, pads):
    """y[n, c, oy, ox] = sum over taps (i, j) of w[c, 0, i, j] * xpad[n, c, s*oy + i, s*ox + j].

    One k x k filter per channel (w: (C, 1, kh, kw)): each tap is the tap's slice times a per-channel weight.
    """
    out, xpad = output_size(x.shape, w.shape[2:], stride, pads), pad(x, pads)
    y = backend.array_module(x).zeros(x.shape[:2] + out, dtype=x.dtype)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            y += w[:, 0, i, j].reshape(1, -1, 1, 1) * window(xpad, i, j, stride, out)
    return y


def depthwise_conv2d_backward(grad, x, w, stride, pads):
    """(dL/dx, dL/dw) of depthwise_conv2d_forward, given grad = dL/dy of shape (N, C, Ho, Wo).

    y = sum over taps of w_ij * tap_ij(xpad), so dL/dw[c, 0, i, j] = sum over n, oy, ox of grad * tap_ij(xpad),
    and tap_ij(xpad) receives grad * w_ij. The taps are overlapping views of one padded image, so their
    gradients ADD UP in one zero buffer shaped like xpad, whose interior is dL/dx.
    """
    xp, out, xpad = backend.array_module(x), grad.shape[2:], pad(x, pads)
    grad_xpad, grad_w = xp.zeros_like(xpad), xp.zeros_like(w)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            grad_w[:, 0, i, j] = (grad * window(xpad, i, j, stride, out)).sum(axis=(0, 2, 3))
            tap = window(grad_xpad, i, j, stride, out)
            tap += grad * w[:, 0, i, j].reshape(1, -1, 1, 1)
    return unpad(grad_xpad, pads), grad_w


def pointwise_conv2d_forward(x, w):
    """y[n, o, h, w] = sum over c of w[o, c, 0, 0] * x[n, c, h, w]: per image the product W (C_out, C_in) @
    X (C_in, H*W), one BLAS call for the whole batch (``@`` broadcasts over n)."""
    n, c, h, width = x.shape
    return (w.reshape(-1, c) @ x.reshape(n, c, h * width)).reshape(n, -1, h, width)


def pointwise_conv2d_backward(grad, x, w):
    """(dL/dx, dL/dw) of pointwise_conv2d_forward, given grad = dL/dy of shape (N, C_out, H, W).

    Y = W X for every image, so dX = W^T dY and dW = sum over images of dY X^T.
    """
    (n, c_out, h, width), c_in = grad.shape, x.shape[1]
    g, matrix = grad.reshape(n, c_out, h * width), w.reshape(c_out, c_in)
    grad_x = (matrix.T @ g).reshape(x.shape)
    grad_w = (g @ x.reshape(n, c_in, h * width).swapaxes(1, 2)).sum(axis=0)
    return grad_x, grad_w.reshape(w.shape)


def _grouped(a, groups):
    """(N, C, Ho, Wo) as (N, groups, C / groups, Ho * Wo): the channels of each group as one matrix."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, -1)


def conv2d_forward(x, w, stride, pads, groups):
    """y[n, o, oy, ox] = sum over c, i, j of w[o, c, i, j] * xpad[n, g*C_in/groups + c, s*oy + i, s*ox + j],
    where g = o // (C_out / groups) is o's group. w: (C_out, C_in / groups, kh, kw).

    Per tap and per group that is a pointwise conv: W_gij (C_out/groups, C_in/groups) @ tap_ij(xpad)_g; all
    groups of all images in one batched product. groups=1 is the regular conv, groups=C the depthwise one.
    """
    out, xpad = output_size(x.shape, w.shape[2:], stride, pads), pad(x, pads)
    y = backend.array_module(x).zeros((x.shape[0], groups, w.shape[0] // groups, out[0] * out[1]), dtype=x.dtype)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            y += _tap_weights(w, i, j, groups) @ _grouped(window(xpad, i, j, stride, out), groups)
    return y.reshape((x.shape[0], w.shape[0]) + out)


def _tap_weights(w, i, j, groups):
    """Tap (i, j) of w as one matrix per group: (groups, C_out / groups, C_in / groups)."""
    return w[:, :, i, j].reshape(groups, -1, w.shape[1])


def conv2d_backward(grad, x, w, stride, pads, groups):
    """(dL/dx, dL/dw) of conv2d_forward, given grad = dL/dy of shape (N, C_out, Ho, Wo).

    As for the pointwise conv, per tap and group: Y += W_gij T_gij gives dW_gij = sum over n of dY_g T_gij^T and
    dT_gij = W_gij^T dY_g, and T_gij is a view of xpad, so the tap gradients add up in one buffer, as in
    depthwise_conv2d_backward.
    """
    xp, out, xpad = backend.array_module(x), grad.shape[2:], pad(x, pads)
    grad_xpad, grad_w, g = xp.zeros_like(xpad), xp.zeros_like(w), _grouped(grad, groups)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            columns = _grouped(window(xpad, i, j, stride, out), groups)
            grad_w[:, :, i, j] = (g @ columns.swapaxes(2, 3)).sum(axis=0).reshape(w.shape[:2])
            tap = window(grad_xpad, i, j, stride, out)
            tap += (_tap_weights(w, i, j, groups).swapaxes(1, 2) @ g).reshape(tap.shape)
    return unpad(grad_xpad, pads), grad_w
