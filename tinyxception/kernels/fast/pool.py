"""The fast pooling kernels. The reference is ``kernels/reference/pool.py`` (same names, same values, shapes
and dtypes); read that first. Optimisations:

Max pooling loops over kernel taps only, never over channels, and never builds a k*k copy of the
input. Padding uses -inf, which never wins a maximum.

Forward: the max over a k x k window is the max over its k rows of the max over its k columns, so it
takes two steps of k - 1 element-wise maxima each instead of k*k - 1. Both steps read long 1-D slices of
the -inf padded image laid out as one line per channel (row after row, `row` pixels per row, `row` a
multiple of the stride s):

    step 1  cols[m]          = max over j of line[s*m + j]            every s-th column's k-column max
    step 2  out[oy*row + ox] = max over i of cols[(s*oy + i)*row/s + ox]   the k-row max of those

Step 2's output is "wide" (rows of `row` >= Wo values, the extra ones are garbage and cropped), which is
what lets every tap be one slice. Channels go one cache-sized tile at a time.

Backward: a tap of a stride-2 window reads every other column, and NumPy runs such strided loops
several times slower than unit-stride ones. So the padded input xpad is split once into its
stride x stride "phase planes", plane[a, b] = xpad[..., a::s, b::s], each a contiguous array,
and tap (i, j) becomes a unit-stride slice of plane[i % s, j % s] starting at (i // s, j // s):

    xpad row i + s*r  =  row i // s + r  of the planes with a = i % s   (the same for columns).

The planes are built straight from x (the padding is their -inf border); the gradient is accumulated
in planes of the same layout, interleaved back at the end. This too goes one cache tile of channels at a
time: the 13 or so passes over the planes then stay in the cache.

Backward on maps with short output rows (at most SHORT_ROWS pixels, the small network's 8x8 and 4x4 maps): the
passes run on channels-last buffers instead, so that NumPy's innermost loop runs along the channels, not along
rows of a few pixels whose per-row cost outweighs the arithmetic. The buffers are NCHW *views* of channels-last
storage, so the routing code is the same; the result is such a view too.
"""
from ... import backend
from ..geometry import cache_tiles, output_size, pad, tap, taps, unpad

_NEG_INF = float("-inf")
SHORT_ROWS = 8
"""Max-pool backward runs channels-last when the output rows have at most this many pixels (CPU only)."""


def _axis_phase(size: int, before: int, padded: int, stride: int, phase: int):
    """One axis of one phase: the plane's length, and the slices of x and of the plane holding the same pixels."""
    first = (phase - before) % stride  # first x index whose padded index, first + before, is phase mod stride
    count = len(range(first, size, stride))
    start = (first + before) // stride
    return len(range(phase, padded, stride)), slice(first, size, stride), slice(start, start + count)


def _phase_layout(shape, pads, stride: int):
    """{(a, b): (plane shape, x slices, plane slices)} for the stride x stride phase planes of padded x."""
    (h, w), ((top, bottom), (left, right)) = shape[-2:], pads
    rows = [_axis_phase(h, top, h + top + bottom, stride, a) for a in range(stride)]
    cols = [_axis_phase(w, left, w + left + right, stride, b) for b in range(stride)]
    return {(a, b): (shape[:-2] + (rn, cn), (..., rx, cx), (..., rp, cp))
            for a, (rn, rx, rp) in enumerate(rows) for b, (cn, cx, cp) in enumerate(cols)}


def _split(x, layout, fill):
    """The phase planes of x padded with `fill`: one strided read of x, no padded copy."""
    xp = backend.array_module(x)
    planes = {}
    for key, (shape, x_part, plane_part) in layout.items():
        planes[key] = xp.full(shape, fill, dtype=x.dtype)
        planes[key][plane_part] = x[x_part]
    return planes


def _merge(planes, layout, out):
    """The inverse of _split: interleave the planes back into `out`, dropping the padding."""
    for key, (_, x_part, plane_part) in layout.items():
        out[x_part] = planes[key][plane_part]


def _plane_tap(planes, i: int, j: int, stride: int, out_size):
    """Tap (i, j) of every window, as a unit-stride slice of its phase plane."""
    plane = planes[i % stride, j % stride]
    return plane[..., i // stride:i // stride + out_size[0], j // stride:j // stride + out_size[1]]


def _running_max(views):
    """The element-wise max of the views, in a new array (a copy of the first, maxed with the others)."""
    views = iter(views)
    out = next(views).copy()
    for view in views:
        backend.array_module(out).maximum(out, view, out=out)
    return out


def max_pool2d_forward(x, kernel, stride, pads):
    """y = max over every k x k window of the -inf padded x, in two separable steps (module docstring)."""
    xp, (n, c, h, w), (kh, kw), s = backend.array_module(x), x.shape, kernel, stride
    ho, wo = output_size(x.shape, kernel, stride, pads)
    (top, bottom), (left, right) = pads
    row = -(-max(w + left + right, s * (wo - 1) + kw) // s) * s  # the padded width, whole groups of s
    rows = max(h + top + bottom, s * ho + kh - 1)  # room for every row tap of step 2
    maxima = rows * row // s  # step 1's column maxima per channel, s-th columns of `rows` rows
    out = xp.empty((n, c, ho, wo), dtype=x.dtype)
    room = ((top, rows + 1 - h - top), (left, row - w - left))  # pads grown to `rows` + 1 rows (step 1's last taps)
    for tile in cache_tiles(x, n * (rows + 1) * row * x.itemsize):
        x_tile = x[:, tile]
        line = pad(x_tile, room, _NEG_INF).reshape(x_tile.shape[:2] + (-1,))
        cols = _running_max(line[..., j:j + s * maxima:s] for j in range(kw))
        wide = _running_max(cols[..., i * row // s:i * row // s + ho * row] for i in range(kh))
        out[:, tile] = wide.reshape(x_tile.shape[:2] + (ho, row))[..., :wo]
    return out


def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    """dL/dx of y = max pooling of x (k x k windows, `stride`, -inf pads ((top, bottom), (left, right))).

    dy/dx is 1 for the input that holds the window's maximum and 0 for the others. With ties the first
    tap (row-major order) takes the whole gradient, as in PyTorch: `unrouted` keeps each window's
    gradient until a tap claims it, so a later tie finds nothing left to add. The planes of x are
    rebuilt here rather than kept from the forward pass: that would hold a padded copy of x per pool.
    """
    if grad.shape[3] <= SHORT_ROWS and not backend.is_cuda_array(grad):
        return _route_channels_last(grad, x, y, kernel, stride, pads)
    grad_x = backend.array_module(grad).empty_like(x)
    # a cache tile of windows at a time; the planes of x and of its gradient take about 4x grad's bytes
    for tile in cache_tiles(grad, 4 * grad.nbytes // grad.shape[1]):
        _route_to_maxima(grad[:, tile], x[:, tile], y[:, tile], kernel, stride, pads, out=grad_x[:, tile])
    return grad_x


def _route(x_tap, grad_tap, unrouted, y, kernel):
    """Add each window's gradient into the grad_tap(i, j) view of the tap that holds its first maximum.

    `unrouted` starts as a copy of dL/dy, which this consumes; the temporaries take its memory layout.
    """
    xp = backend.array_module(unrouted)
    hit, routed = xp.empty_like(unrouted, dtype=bool), xp.empty_like(unrouted)
    for i, j in taps(kernel):
        xp.equal(x_tap(i, j), y, out=hit)
        xp.multiply(unrouted, hit, out=routed)
        window = grad_tap(i, j)
        window += routed
        unrouted -= routed  # exactly 0 where routed, unchanged elsewhere


def _route_to_maxima(grad, x, y, kernel, stride, pads, out):
    """max_pool2d_backward of one tile of channels, written into `out`, through the phase planes."""
    xp, layout = backend.array_module(grad), _phase_layout(x.shape, pads, stride)
    planes, out_size = _split(x, layout, _NEG_INF), grad.shape[-2:]
    grad_planes = {key: xp.zeros_like(plane) for key, plane in planes.items()}
    _route(lambda i, j: _plane_tap(planes, i, j, stride, out_size),
           lambda i, j: _plane_tap(grad_planes, i, j, stride, out_size), grad.copy(), y, kernel)
    _merge(grad_planes, layout, out)


def _channels_last(like, shape, fill=None):
    """A (N, C, H, W) view of a new channels-last (N, H, W, C) array of like's dtype, filled with `fill` (or
    uninitialised)."""
    xp, (n, c, h, w) = backend.array_module(like), shape
    storage = xp.empty((n, h, w, c), like.dtype) if fill is None else xp.full((n, h, w, c), fill, like.dtype)
    return storage.transpose(0, 3, 1, 2)


def _route_channels_last(grad, x, y, kernel, stride, pads):
    """max_pool2d_backward on channels-last buffers (short rows): the reference's taps of the padded x."""
    (top, bottom), (left, right), (n, c, h, w) = *pads, x.shape
    xpad = _channels_last(x, (n, c, h + top + bottom, w + left + right), _NEG_INF)
    xpad[..., top:top + h, left:left + w] = x
    grad_pad, out = _channels_last(grad, xpad.shape, 0), grad.shape[2:]
    unrouted, y_cl = _channels_last(grad, grad.shape), _channels_last(y, y.shape)
    unrouted[...] = grad
    y_cl[...] = y
    _route(lambda i, j: tap(xpad, i, j, stride, out), lambda i, j: tap(grad_pad, i, j, stride, out),
           unrouted, y_cl, kernel)
    return unpad(grad_pad, pads)


def global_avg_pool2d_backward(grad, x_shape):
    """dL/dx (shape x_shape = (N, C, H, W)) of y[n, c] = mean of x[n, c], given grad = dL/dy of shape (N, C).

    Each of the H*W pixels contributes 1 / (H*W) of its channel's mean, so each receives grad / (H*W).
    """
    xp = backend.array_module(grad)
    h, w = x_shape[2:]
    return xp.broadcast_to((grad * (1.0 / (h * w)))[:, :, None, None], tuple(x_shape))
