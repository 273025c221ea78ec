"""Chapter 3: the backward passes of pooling (notebook 04, pytest --exercises -m ch3_norm_pool)."""
from tinyxception.exercise_mode import todo


def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    """dL/dx given grad = dL/dy, where y (N, C, Ho, Wo) is the max over each kernel = (kh, kw) window of x
    padded by pads ((top, bottom), (left, right)) with -inf, windows moved by `stride`.

    Each window's gradient goes to the input that holds its maximum; with ties, to the FIRST one in row-major
    order within the window, and only once (as PyTorch does). Overlapping windows add up.
    """
    raise todo("max_pool2d_backward")


def global_avg_pool2d_backward(grad, x_shape):
    """dL/dx, of shape x_shape = (N, C, H, W), given grad = dL/dy (N, C) where y[n, c] = mean of x[n, c]."""
    raise todo("global_avg_pool2d_backward")
