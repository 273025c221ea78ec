"""The fast pointwise and grouped convolutions. The reference is ``kernels/reference/conv.py`` (same names,
values, shapes and dtypes); read that first. Optimisations:

- pointwise: per image one product W X on NCHW maps, or for small maps (and channels-last input) one product
  over the pixels of all images, whose result is stored channels-last; the weight gradient takes whichever of
  two products has the smaller temporary;
- grouped: im2col (all k*k taps gathered into columns once, each tap one long slice of the padded image laid
  out in lines, ``geometry.Lines``), then one batched matrix product for all groups; its gradient scatters back
  the same way.
No other kernel depends on how these store their results: every result is an (N, C, H, W) array of the right
values. Measured effects of each optimisation are in docs/benchmarks.md.
"""
from ... import backend
from ..geometry import Lines, image_groups, stored_channels_last


def _sum_over_images(grad, columns):
    """sum over n of grad[n] @ columns[n]^T for grad (N, G, A, P), columns (N, G, B, P): shape (G, A, B).

    Two ways to compute it: per-image products then a sum (a temporary of N*G*A*B numbers), or, for G = 1,
    one product over all images and pixels (tensordot, which copies both operands to (A, N*P) layouts
    unless N = 1). We take the smaller temporary, which is also the faster way on Xception's shapes.
    """
    n, groups, a, p = grad.shape
    b = columns.shape[2]
    if groups == 1 and (n == 1 or p * (a + b) <= a * b):
        return backend.array_module(grad).tensordot(grad[:, 0], columns[:, 0], axes=([0, 2], [0, 2]))[None]
    return (grad @ columns.swapaxes(-1, -2)).sum(axis=0)


PIXEL_ROWS_BELOW = 256
"""Maps with fewer pixels than this go through the pointwise conv as one matrix of all images' pixels."""


def _pixel_rows(a):
    """a (N, C, H, W) as the (N*H*W, C) matrix of all its pixels: a view when stored channels-last, else a copy."""
    n, c, h, w = a.shape
    return a.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def _image(rows, shape):
    """The inverse of _pixel_rows: (N*H*W, C) as an (N, C, H, W) view stored channels-last."""
    n, _, h, w = shape
    return rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def _as_one_product(x):
    """Whether the pointwise conv of x is one matrix product over all images' pixels (small maps, or input
    already channels-last) rather than one product per image (large maps: no copy of x needed)."""
    return x.shape[2] * x.shape[3] < PIXEL_ROWS_BELOW or stored_channels_last(x)


def pointwise_conv2d_forward(x, w):
    """Y = W X: either per image, W (C_out, C_in) @ x[n] as (C_in, H*W), or for small maps one product of all
    pixels (N*H*W, C_in) @ W^T, whose result is stored channels-last."""
    (n, c, h, width), matrix = x.shape, w.reshape(w.shape[0], x.shape[1])
    if _as_one_product(x):
        return _image(_pixel_rows(x) @ matrix.T, (n, w.shape[0], h, width))
    return (matrix @ x.reshape(n, c, h * width)).reshape(n, w.shape[0], h, width)


def pointwise_conv2d_backward(grad, x, w):
    """(dL/dx, dL/dw) of pointwise_conv2d_forward, given grad = dL/dy.

    Y = W X for every image, so dX = W^T dY and dW = sum over images and pixels of dY X^T (for small maps one
    product each over the pixel rows: dX = dY W, dW = dY^T X).
    """
    (n, c_out, h, width), c_in = grad.shape, x.shape[1]
    matrix = w.reshape(c_out, c_in)
    if _as_one_product(x):
        grad_rows = _pixel_rows(grad)
        return _image(grad_rows @ matrix, x.shape), (grad_rows.T @ _pixel_rows(x)).reshape(w.shape)
    grad = grad.reshape(n, c_out, h * width)
    grad_x = (matrix.T @ grad).reshape(x.shape)
    grad_w = _sum_over_images(grad[:, None], x.reshape(n, c_in, 1, h * width).swapaxes(1, 2)).reshape(w.shape)
    return grad_x, grad_w


def _columns(x, lines, groups):
    """im2col in the wide layout of ``Lines``: columns[n, g, (c, i, j), l] = line l of tap (i, j) of channel
    g*C_in/groups + c, every tap one long slice of the padded lines (no 2-D windows).

    Rebuilt in backward rather than kept: k*k times the input is too much memory to hold until then.
    """
    xp, (n, c), kernel = backend.array_module(x), x.shape[:2], lines.kernel
    columns = xp.empty((n, c, kernel[0] * kernel[1], lines.length), dtype=x.dtype)
    for k, (_, _, line_tap) in enumerate(lines.taps(lines.lay_out(x))):
        columns[:, :, k] = line_tap
    return columns.reshape(n, groups, -1, columns.shape[-1])


def _weight_matrices(w, groups):
    """w as (groups, C_out/groups, C_in/groups * kh * kw): a view, rows match the column order."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def conv2d_forward(x, w, stride, pads, groups):
    """y[n, g] = w_g @ columns(x)[n, g]: one batched product over the groups, in the wide layout, then cropped;
    a cache-sized group of images at a time (``_image_groups``)."""
    lines, matrices, c_out = Lines(x.shape, pads, w.shape[2:], stride), _weight_matrices(w, groups), w.shape[0]
    out = backend.array_module(x).empty((x.shape[0], c_out) + lines.out, dtype=x.dtype)
    for images in _image_groups(x, lines):
        out[images] = lines.crop((matrices @ _columns(x[images], lines, groups)).reshape(-1, c_out, lines.length))
    return out


def conv2d_backward(grad, x, w, stride, pads, groups):
    """Y_g = W_g C_g per image: dW_g = sum_n dY_g C_g^T, dC_g = W_g^T dY_g; every column entry is a copy of one
    xpad pixel, so dC scatters back (col2im) by adding tap by tap into the padded lines. The gradient goes in
    the wide layout, zero in its extra columns, so those add nothing to dW nor to the padding they land on.
    A cache-sized group of images at a time; dW is the sum of the groups' parts, in order."""
    xp, lines = backend.array_module(grad), Lines(x.shape, pads, w.shape[2:], stride)
    c_out, c_in = w.shape[0], x.shape[1]
    transposed, grad_x, grad_w = _weight_matrices(w, groups).swapaxes(-1, -2), xp.empty_like(x), 0
    for images in _image_groups(x, lines):
        wide_grad = lines.widen(grad[images]).reshape(-1, groups, c_out // groups, lines.length)
        grad_columns = (transposed @ wide_grad).reshape(-1, c_in, w.shape[2] * w.shape[3], lines.length)
        grad_lines = xp.zeros(grad_columns.shape[:2] + (lines.rows * lines.row,), dtype=grad.dtype)
        for k, (_, _, window) in enumerate(lines.taps(grad_lines)):
            window += grad_columns[:, :, k]
        grad_x[images] = lines.image(grad_lines)
        grad_w = grad_w + _sum_over_images(wide_grad, _columns(x[images], lines, groups))
    return grad_x, grad_w.reshape(w.shape)


def _image_groups(x, lines):
    """Slices of the batch axis, each a group of images whose columns (k*k copies of each) fit the cache tile:
    the columns, their product and the scatter of their gradient then stay in the cache."""
    kernel = lines.kernel
    return image_groups(x, x.shape[1] * kernel[0] * kernel[1] * lines.length * x.itemsize)
