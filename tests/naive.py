"""Plain loop references for the tests: the definitions written out, for clarity, never for speed.

The fast ops are checked against these on tiny shapes. Each reference is a direct transcription of the
textbook formula, so a reader can verify it by eye.
"""
import numpy as np


def same_padding(size, kernel, stride):
    """TensorFlow's "same" padding along one axis as (before, after).

    The output has ceil(size / stride) positions; the padding needed to reach them is split in two,
    and when it is odd the extra pixel goes after (bottom/right).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride=1, pads=((0, 0), (0, 0)), groups=1):
    """Grouped convolution by the definition, accumulated in float64 and returned in x's dtype.

    y[n, o, r, c] = sum over ci, i, j of w[o, ci, i, j] * xpad[n, g * C_in/groups + ci, r*stride + i, c*stride + j]
    where g = o // (C_out/groups) is the group of output channel o and pads = ((top, bottom), (left, right)).
    """
    xpad = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    n, _, h, width = xpad.shape
    c_out, c_in_per_group, kh, kw = w.shape
    c_out_per_group = c_out // groups
    out_h, out_w = (h - kh) // stride + 1, (width - kw) // stride + 1
    y = np.zeros((n, c_out, out_h, out_w))
    for b in range(n):
        for o in range(c_out):
            first = (o // c_out_per_group) * c_in_per_group
            for r in range(out_h):
                for c in range(out_w):
                    top, left = r * stride, c * stride
                    patch = xpad[b, first:first + c_in_per_group, top:top + kh, left:left + kw]
                    y[b, o, r, c] = np.sum(patch.astype(np.float64) * w[o])
    return y.astype(x.dtype)
