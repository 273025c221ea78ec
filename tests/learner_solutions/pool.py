"""A learner's pooling: the max pool window by window, its backward with one loop over the window taps."""
import numpy as np


def max_pool2d_forward(x, kernel, stride, pads):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    ho = (xpad.shape[2] - kernel[0]) // stride + 1
    wo = (xpad.shape[3] - kernel[1]) // stride + 1
    y = np.empty(x.shape[:2] + (ho, wo), dtype=x.dtype)
    for oy in range(ho):
        for ox in range(wo):
            window = xpad[:, :, oy * stride:oy * stride + kernel[0], ox * stride:ox * stride + kernel[1]]
            y[:, :, oy, ox] = window.max(axis=(2, 3))
    return y


def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    dxpad = np.zeros(xpad.shape, dtype=x.dtype)
    done = np.zeros(y.shape, dtype=bool)
    ho, wo = y.shape[2], y.shape[3]
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            cols = slice(j, j + stride * (wo - 1) + 1, stride)
            winner = (xpad[:, :, rows, cols] == y) & ~done
            dxpad[:, :, rows, cols] += np.where(winner, grad, 0)
            done |= winner
    return dxpad[:, :, top:top + x.shape[2], left:left + x.shape[3]]


def global_avg_pool2d_forward(x):
    return x.sum(axis=(2, 3)) / (x.shape[2] * x.shape[3])


def global_avg_pool2d_backward(grad, x_shape):
    n, c, h, w = x_shape
    return np.repeat(np.repeat(grad[:, :, None, None] / (h * w), h, axis=2), w, axis=3)
