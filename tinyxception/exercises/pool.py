"""Chapter 3: max pooling and the global average pool (notebook 04, pytest --exercises -m ch3_norm_pool)."""
from tinyxception.exercise_mode import todo


def max_pool2d_forward(x, kernel, stride, pads):
    """y[n, c, oy, ox] = max over i < kh, j < kw of xpad[n, c, s*oy + i, s*ox + j], where xpad is x (N, C, H, W)
    padded by pads ((top, bottom), (left, right)) with -inf (which never wins a maximum; 0 would win over
    negative inputs) and kernel = (kh, kw). Returns (N, C, Ho, Wo), Ho = (H + top + bottom - kh) // s + 1.

    TensorFlow's "same" padding, which Xception uses, puts the odd extra pixel at the bottom/right: 6 -> 3 with a
    3x3 stride-2 pool is pads ((0, 1), (0, 1)). Hint: loop over the kh*kw taps, taking element-wise maxima.
    """
    raise todo("max_pool2d_forward")


def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    """dL/dx given grad = dL/dy, where y (N, C, Ho, Wo) is the max over each kernel = (kh, kw) window of x
    padded by pads ((top, bottom), (left, right)) with -inf, windows moved by `stride`.

    Each window's gradient goes to the input that holds its maximum; with ties, to the FIRST one in row-major
    order within the window, and only once (as PyTorch does). Overlapping windows add up.
    """
    raise todo("max_pool2d_backward")


def global_avg_pool2d_forward(x):
    """y[n, c] = the mean of x[n, c] over its H x W pixels: (N, C, H, W) -> (N, C), same dtype as x."""
    raise todo("global_avg_pool2d_forward")


def global_avg_pool2d_backward(grad, x_shape):
    """dL/dx, of shape x_shape = (N, C, H, W), given grad = dL/dy (N, C) where y[n, c] = mean of x[n, c]."""
    raise todo("global_avg_pool2d_backward")
