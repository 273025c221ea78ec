"""The fast depthwise convolution. The reference is ``depthwise_conv2d_forward``/``_backward`` in
``kernels/reference/conv.py`` (same values, shapes and dtypes); read that first. Optimisations:

- the taps are read as long 1-D slices of the padded image laid out as one line per channel
  (``geometry.Lines``), a cache-sized tile of channels at a time, in the forward and in the weight gradient;
- on the CPU, maps with fewer pixels than channels are computed channels-last as ONE einsum over a strided view
  of all taps of a group of images (``_ChannelsLast``), and the result is returned as an NCHW *view* of that
  channels-last array (the pointwise conv reads it without a copy);
- the backward at stride 1 is the forward of the gradient with the flipped kernel.
No other kernel depends on how these store their results. Measured effects are in docs/benchmarks.md.
"""
from ... import backend
from ..geometry import Lines, cache_tiles, image_groups, output_size, taps


class _ChannelsLast:
    """Images zero-padded and channels-last, pixel after pixel, for maps with fewer pixels than channels.

    ``Lines`` multiplies each channel by its own weight, so NumPy walks one row per channel; at Xception's
    19x19 those rows are only ~400 numbers long and NumPy's cost per row outweighs the arithmetic.
    Channels-last, the weights of a tap are one vector of C numbers, and at stride 1 output pixel (y, x) of tap
    (i, j) reads padded pixel (y + i, x + j), i.e. pixel (i*row + j) + (y*row + x): tap (i, j) is a block of
    (pixels, C) values starting at pixel i*row + j, read as a "wide" output of `row` >= Wo pixels per row. All
    the taps of a group of images are ONE strided view (N, kh, kw, pixels, C) of the padded images, and one
    einsum sums them times their weight vectors: per output pixel, k*k fused multiply-adds over C contiguous
    numbers, in one pass and without a temporary. Images go a cache-sized group at a time.
    """

    def __init__(self, x_shape, pads, kernel):
        (top, bottom), (left, right) = pads
        h, w = x_shape[2:]
        self.kernel, self.out, self.corner = kernel, output_size(x_shape, kernel, 1, pads), (top, left)
        self.row = w + left + right
        self.pixels = self.out[0] * self.row  # of the wide output
        self.rows = max(h + top + bottom, self.out[0] + kernel[0])  # room for the last tap's block, as in Lines

    def groups(self, x):
        """Slices of the batch axis, each a group of images whose padded copy fits the cache tile."""
        return image_groups(x, self.rows * self.row * x.shape[1] * x.itemsize)

    def padded(self, images):
        """images (N, C, H, W) zero-padded channels-last: (N, rows, row, C)."""
        xp, (n, c, h, w), (top, left) = backend.array_module(images), images.shape, self.corner
        padded = xp.zeros((n, self.rows, self.row, c), dtype=images.dtype)
        padded[:, top:top + h, left:left + w] = images.transpose(0, 2, 3, 1)
        return padded

    def taps(self, images):
        """images (N, C, H, W) padded channels-last, as the view (N, kh, kw, pixels, C): [:, i, j] is tap (i, j)."""
        padded = self.padded(images)
        image_step, row_step, pixel_step, channel_step = padded.strides
        return backend.array_module(images).lib.stride_tricks.as_strided(
            padded, shape=(padded.shape[0],) + self.kernel + (self.pixels, padded.shape[3]),
            strides=(image_step, row_step, pixel_step, pixel_step, channel_step))

    def wide(self, grad):
        """grad (N, C, Ho, Wo) channels-last in the wide layout (N, pixels, C), zero in the extra columns."""
        (ho, wo), (n, c) = self.out, grad.shape[:2]
        wide = backend.array_module(grad).zeros((n, ho, self.row, c), dtype=grad.dtype)
        wide[:, :, :wo] = grad.transpose(0, 2, 3, 1)
        return wide.reshape(n, self.pixels, c)

    def crop(self, wide):
        """The (N, Ho, Wo, C) view of the output pixels in the wide output (N, pixels, C)."""
        (ho, wo), (n, _, c) = self.out, wide.shape
        return wide.reshape(n, ho, self.row, c)[:, :, :wo]


def _weighted_sum(pairs, out):
    """out = the sum of a * b over the (a, b) pairs: the first product is written straight into out,
    the others go through one temporary (NumPy has no fused multiply-add)."""
    xp, product = backend.array_module(out), None
    for k, (a, b) in enumerate(pairs):
        if k == 0:
            xp.multiply(a, b, out=out)
        else:
            product = xp.multiply(a, b, out=product)
            out += product
    return out


def depthwise_conv2d_forward(x, w, stride, pads):
    """y[n, c, oy, ox] = sum over taps (i, j) of w[c, 0, i, j] * xpad[n, c, s*oy + i, s*ox + j].

    x: (N, C, H, W); w: (C, 1, kh, kw); xpad is x with pads ((top, bottom), (left, right)) of zeros.
    On the CPU, maps with fewer pixels than channels are computed channels-last (``_ChannelsLast``): the result
    has the same values and shape, stored channels-last, which pointwise_conv2d_forward reads without a copy.
    """
    if _runs_channels_last(x, stride):
        return _depthwise_channels_last(x, w, pads)
    xp, lines = backend.array_module(x), Lines(x.shape, pads, w.shape[2:], stride)
    out = xp.empty(x.shape[:2] + lines.out, dtype=x.dtype)
    for tile in cache_tiles(x, x.shape[0] * lines.length * x.itemsize):  # pad, sum and crop in cache
        x_tile = x[:, tile]
        weighted_taps = ((line_tap, w[tile, 0, i, j, None]) for i, j, line_tap in lines.taps(lines.lay_out(x_tile)))
        wide = xp.empty(x_tile.shape[:2] + (lines.length,), dtype=x.dtype)
        out[:, tile] = lines.crop(_weighted_sum(weighted_taps, wide))
    return out


def _runs_channels_last(x, stride):
    """Whether the depthwise conv of x runs channels-last: at stride 1, on the CPU (GPU kernels pay nothing per
    row), for maps with fewer pixels than channels."""
    return stride == 1 and x.shape[2] * x.shape[3] <= x.shape[1] and not backend.is_cuda_array(x)


def _depthwise_channels_last(x, w, pads):
    """depthwise_conv2d_forward at stride 1 on the channels-last layout of _ChannelsLast, one einsum per group
    of images; the result is stored (N, Ho, Wo, C)."""
    xp, rows = backend.array_module(x), _ChannelsLast(x.shape, pads, w.shape[2:])
    out = xp.empty((x.shape[0],) + rows.out + (x.shape[1],), dtype=x.dtype)
    weights = xp.ascontiguousarray(w[:, 0].transpose(1, 2, 0))  # (kh, kw, C): each tap's weights, contiguous
    for images in rows.groups(x):
        out[images] = rows.crop(xp.einsum("nijpc,ijc->npc", rows.taps(x[images]), weights))
    return out.transpose(0, 3, 1, 2)


def _depthwise_weight_grad_channels_last(grad, x, w, pads):
    """dL/dw of the channels-last depthwise conv: sum over images and wide pixels of grad times each tap, one
    einsum per group of images (grad is zero in the wide layout's extra columns)."""
    xp, rows = backend.array_module(x), _ChannelsLast(x.shape, pads, w.shape[2:])
    grad_w = xp.zeros(w.shape[2:] + (w.shape[0],), dtype=w.dtype)
    for images in rows.groups(x):
        grad_w += xp.einsum("nijpc,npc->ijc", rows.taps(x[images]), rows.wide(grad[images]))
    return grad_w.transpose(2, 0, 1)[:, None]


def depthwise_conv2d_backward(grad, x, w, stride, pads):
    """(dL/dx, dL/dw) of depthwise_conv2d_forward, given grad = dL/dy.

    Each tap is a product tap_ij(xpad) * w[c, 0, i, j], so dL/dw[c, 0, i, j] = sum over n, oy, ox of
    grad * tap_ij(xpad), and tap_ij(xpad) receives grad * w[c, 0, i, j]; the taps are overlapping views
    of the same padded image, so their gradients add up in one zero buffer, whose interior is dL/dx.
    At stride 1 (all of Xception's depthwise convs) that sum is itself a depthwise conv, of grad with the
    flipped kernel (``_flipped_kernel_pads``), and the forward computes it.
    """
    flipped_pads = _flipped_kernel_pads(pads, w.shape[2:]) if stride == 1 else None
    grad_x = None if flipped_pads is None else depthwise_conv2d_forward(grad, w[:, :, ::-1, ::-1], 1, flipped_pads)
    if grad_x is not None and _runs_channels_last(x, stride):
        return grad_x, _depthwise_weight_grad_channels_last(grad, x, w, pads)
    xp, lines = backend.array_module(grad), Lines(x.shape, pads, w.shape[2:], stride)
    if grad_x is None:
        grad_x = _add_tap_gradients(lines.widen(grad), w, lines)
    grad_w = xp.empty_like(w)
    for tile in cache_tiles(x, 2 * x.shape[0] * lines.rows * lines.row * x.itemsize):  # widened, laid out in cache
        wide_grad = lines.widen(grad[:, tile])
        for i, j, line_tap in lines.taps(lines.lay_out(x[:, tile])):
            grad_w[tile, 0, i, j] = xp.einsum("ncl,ncl->c", wide_grad, line_tap)
    return grad_x, grad_w


def _flipped_kernel_pads(pads, kernel):
    """At stride 1, dL/dx[y, x] = sum over taps of w[i, j] * grad[y + top - i, x + left - j]; with i' = k-1-i
    that is a conv of grad, padded by k-1-top above and k-1-bottom below (the same for columns), with the
    flipped kernel w[k-1-i', k-1-j']. Returns those pads, or None when a pad exceeds k - 1 (the conv would
    have to crop grad instead)."""
    flipped = tuple((k - 1 - before, k - 1 - after) for (before, after), k in zip(pads, kernel))
    return flipped if min(min(pair) for pair in flipped) >= 0 else None


def _add_tap_gradients(wide_grad, w, lines):
    """dL/dx by adding grad * w[c, 0, i, j] into each tap's view of one zero buffer, a cache tile at a time."""
    xp = backend.array_module(wide_grad)
    grad_lines = xp.zeros(wide_grad.shape[:2] + (lines.rows * lines.row,), dtype=wide_grad.dtype)
    for tile in cache_tiles(grad_lines, grad_lines.nbytes // grad_lines.shape[1]):
        grad_tile, tmp = wide_grad[:, tile], xp.empty_like(wide_grad[:, tile])
        for i, j, line_tap in lines.taps(grad_lines[:, tile]):
            line_tap += xp.multiply(grad_tile, w[tile, 0, i, j, None], out=tmp)
    return lines.image(grad_lines)
