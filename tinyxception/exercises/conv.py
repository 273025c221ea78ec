"""Chapter 2: depthwise, pointwise (notebook 02) and grouped convolution (notebook 03); pytest --exercises -m ch2_conv.

Shapes: x (N, C, H, W) images; pads ((top, bottom), (left, right)) zeros added around each image;
the output of a k x k window with stride s has Ho = (H + top + bottom - kh) // s + 1 rows (Wo likewise).
"""
from tinyxception.exercise_mode import todo


def depthwise_conv2d_forward(x, w, stride, pads):
    """y[n, c, oy, ox] = sum over i < kh, j < kw of w[c, 0, i, j] * xpad[n, c, s*oy + i, s*ox + j].

    w: (C, 1, kh, kw), one filter per channel. Returns y: (N, C, Ho, Wo), same dtype as x.
    Hint: loop over the kh*kw taps (not over channels); each tap is one strided slice of xpad for all pixels.
    """
    raise todo("depthwise_conv2d_forward")


def depthwise_conv2d_backward(grad, x, w, stride, pads):
    """(dL/dx, dL/dw) given grad = dL/dy of shape (N, C, Ho, Wo); shapes of x and w.

    Hint: for each tap, dL/dw[c, 0, i, j] sums grad * (that tap of xpad) over n, oy, ox; and the tap of
    a zero "grad_xpad" buffer receives grad * w[c, 0, i, j] (+=, taps overlap). Crop the padding at the end.
    """
    raise todo("depthwise_conv2d_backward")


def pointwise_conv2d_forward(x, w):
    """y[n, o, h, w] = sum over c of w[o, c, 0, 0] * x[n, c, h, w]. w: (C_out, C_in, 1, 1). Returns (N, C_out, H, W).

    Hint: it is one matrix product per image, (C_out, C_in) @ (C_in, H*W); ``@`` broadcasts over n.
    """
    raise todo("pointwise_conv2d_forward")


def pointwise_conv2d_backward(grad, x, w):
    """(dL/dx, dL/dw) given grad = dL/dy of shape (N, C_out, H, W).

    Hint: with Y = W X per image, dX = W^T dY, and dW sums dY X^T over the images.
    """
    raise todo("pointwise_conv2d_backward")


def conv2d_forward(x, w, stride, pads, groups):
    """The grouped convolution: the C_in input channels split into `groups` blocks of C_in / groups, and output
    block g (C_out / groups channels) a regular convolution of input block g alone.

    y[n, o, oy, ox] = sum over c < C_in / groups and taps (i, j) of w[o, c, i, j] * xpad[n, g*C_in/groups + c,
    s*oy + i, s*ox + j], where g = o // (C_out / groups). w: (C_out, C_in / groups, kh, kw). Returns
    (N, C_out, Ho, Wo), same dtype as x. groups=1 is the regular conv; groups=C_in with C_out = C_in the depthwise.
    Hint: per tap and per group it is a pointwise conv (a matrix product) of that tap's slice of xpad.
    """
    raise todo("conv2d_forward")


def conv2d_backward(grad, x, w, stride, pads, groups):
    """(dL/dx, dL/dw) given grad = dL/dy of shape (N, C_out, Ho, Wo); shapes of x and w.

    Hint: per tap and group as for the pointwise backward (dW = sum over images of dY T^T, dT = W^T dY, with T
    the tap's slice of xpad), the tap gradients added (+=) into one zero buffer shaped like xpad, then cropped.
    """
    raise todo("conv2d_backward")
