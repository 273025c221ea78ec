"""Window geometry shared by the fast kernels: padding, output sizes, strided taps, cache tiles.

A k x k window with stride s slides over a padded input. With ``out`` output
positions, tap (i, j) of every window reads the strided view
``xpad[..., i : i + s*(out_h-1) + 1 : s, j : j + s*(out_w-1) + 1 : s]``,
so an op can loop over the k*k taps (never over channels) and do whole-array work per tap.
"""
from .. import backend


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" rule: out = ceil(size / stride), extra pixel at the end (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_size(x_shape, kernel: tuple[int, int], stride: int, pads) -> tuple[int, int]:
    """(Ho, Wo): how many stride-s positions a k x k window takes in the padded input."""
    padded = (x_shape[-2] + sum(pads[0]), x_shape[-1] + sum(pads[1]))
    return tuple((p - k) // stride + 1 for p, k in zip(padded, kernel))


def pad(x, pads, value=0.0):
    """x (..., H, W) padded with `value` by pads ((top, bottom), (left, right)); no copy when pads are zero."""
    if not any(pads[0] + pads[1]):
        return x
    xp = backend.array_module(x)
    (top, bottom), (left, right) = pads
    out = xp.full(x.shape[:-2] + (x.shape[-2] + top + bottom, x.shape[-1] + left + right), value, dtype=x.dtype)
    out[..., top:top + x.shape[-2], left:left + x.shape[-1]] = x
    return out


def unpad(x, pads):
    """The inverse of pad: the interior view of x."""
    (top, bottom), (left, right) = pads
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def tap(xpad, i: int, j: int, stride: int, out: tuple[int, int]):
    """The strided view read by kernel tap (i, j) of every output window."""
    return xpad[..., i:i + stride * (out[0] - 1) + 1:stride, j:j + stride * (out[1] - 1) + 1:stride]


def taps(kernel: tuple[int, int]):
    """All (i, j) kernel positions, row by row."""
    return [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]


def cache_tiles(x, bytes_per_channel):
    """Slices of x's channel axis, each covering about backend.cache_tile_bytes(x) of work.

    Window ops (depthwise conv, max pool) make several passes over a padded copy of their input; done one
    cache-sized tile of channels at a time, the copy and the passes stay in the CPU cache instead of main
    memory (measured in docs/benchmarks.md). A tile spans many channels (a 728x37x37 layer is a handful of tiles),
    so this is cache blocking, not a per-channel loop; on the GPU the whole array is one tile.
    """
    return _tiles(x, 1, bytes_per_channel)


def image_groups(x, bytes_per_image):
    """Slices of x's batch axis, each a group of images covering about backend.cache_tile_bytes(x) of work
    (at least one image; on the GPU the whole batch is one group)."""
    return _tiles(x, 0, bytes_per_image)


def _tiles(x, axis: int, bytes_per_item):
    """Slices of x's `axis`, each about backend.cache_tile_bytes(x) of work at bytes_per_item per index."""
    tile_bytes, count = backend.cache_tile_bytes(x), x.shape[axis]
    step = count if tile_bytes is None else max(1, tile_bytes // max(1, bytes_per_item))
    return [slice(start, start + step) for start in range(0, count, step)]


def stored_channels_last(a) -> bool:
    """True when a (N, C, H, W) is stored channels-last and not NCHW, as the depthwise conv leaves small maps
    (and the pointwise conv its small outputs)."""
    return a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous and not a.flags.c_contiguous


class Lines:
    """One long line per channel: the zero-padded image, row after row (`row` = padded width).

    Output pixel (y, x) of tap (i, j) reads padded pixel (s*y + i, s*x + j), which is line index
    (i*row + j) + s*(y*row + x). So for all output pixels at once, tap (i, j) is ONE slice of the line,
    line[i*row + j :: s], read as a "wide" output of Ho rows of `row` >= Wo pixels; the extra pixels of each
    row are garbage that `crop` drops (k - 1 per row at stride 1). NumPy runs these long 1-D slices much
    faster than 2-D tap windows whose rows are only Wo pixels long (docs/benchmarks.md). The depthwise conv
    sums the taps in this layout, the grouped conv gathers them into its columns and scatters their gradients.
    """

    def __init__(self, x_shape, pads, kernel, stride):
        (top, bottom), (left, right) = pads
        self.kernel, self.stride, self.x_shape, self.corner = kernel, stride, x_shape, (top, left)
        self.out = out = output_size(x_shape, kernel, stride, pads)
        self.row = x_shape[3] + left + right
        self.rows = max(x_shape[2] + top + bottom, stride * out[0] + kernel[0])  # room for the last tap's slice
        self.wide = (out[0], self.row)
        self.length = out[0] * self.row  # pixels of the wide output

    def lay_out(self, x):
        """x zero-padded into lines: (N, C, rows * row)."""
        (h, w), (top, left) = x.shape[2:], self.corner
        lines = backend.array_module(x).zeros(x.shape[:2] + (self.rows, self.row), dtype=x.dtype)
        lines[..., top:top + h, left:left + w] = x
        return lines.reshape(x.shape[:2] + (-1,))

    def image(self, lines):
        """The inverse of lay_out: the (N, C, H, W) view of the unpadded pixels."""
        (h, w), (top, left) = self.x_shape[2:], self.corner
        return lines.reshape(lines.shape[:2] + (self.rows, self.row))[..., top:top + h, left:left + w]

    def taps(self, lines):
        """(i, j, slice of the line read by tap (i, j) for the wide output, flattened)."""
        length = self.length * self.stride
        for i, j in taps(self.kernel):
            start = i * self.row + j
            yield i, j, lines[..., start:start + length:self.stride]

    def crop(self, wide):
        """The (N, C, Ho, Wo) output from its wide layout (N, C, Ho * row)."""
        return wide.reshape(wide.shape[:2] + self.wide)[..., :self.out[1]]

    def widen(self, grad):
        """The gradient (N, C, Ho, Wo) in the wide layout, zero in the garbage columns."""
        wide = backend.array_module(grad).zeros(grad.shape[:2] + self.wide, dtype=grad.dtype)
        wide[..., :self.out[1]] = grad
        return wide.reshape(grad.shape[:2] + (-1,))
