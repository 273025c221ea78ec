"""Chapter 2: depthwise and pointwise convolution (notebook 02, pytest --exercises -m ch2_conv).

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
