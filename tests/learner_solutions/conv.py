"""A learner's convolutions: loops over the taps, np.pad, einsum."""
import numpy as np


def _out(size, before, after, k, s):
    return (size + before + after - k) // s + 1


def depthwise_conv2d_forward(x, w, stride, pads):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = _out(h, top, bottom, kh, stride), _out(wd, left, right, kw, stride)
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            y += patch * w[:, 0, i, j][None, :, None, None]
    return y


def depthwise_conv2d_backward(grad, x, w, stride, pads):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    ho, wo = grad.shape[2], grad.shape[3]
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            cols = slice(j, j + stride * (wo - 1) + 1, stride)
            dw[:, 0, i, j] = np.einsum("nchw,nchw->c", grad, xpad[:, :, rows, cols])
            dxpad[:, :, rows, cols] += grad * w[:, 0, i, j][None, :, None, None]
    h, wd = x.shape[2], x.shape[3]
    return dxpad[:, :, top:top + h, left:left + wd], dw


def pointwise_conv2d_forward(x, w):
    return np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)


def pointwise_conv2d_backward(grad, x, w):
    dx = np.einsum("oc,nohw->nchw", w[:, :, 0, 0], grad)
    dw = np.einsum("nohw,nchw->oc", grad, x)[:, :, None, None]
    return dx, dw.astype(w.dtype)


def conv2d_forward(x, w, stride, pads, groups):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, wd = x.shape
    c_out, c_group, kh, kw = w.shape
    ho, wo = _out(h, top, bottom, kh, stride), _out(wd, left, right, kw, stride)
    o_group = c_out // groups
    y = np.zeros((n, c_out, ho, wo), dtype=x.dtype)
    for g in range(groups):
        xg = xpad[:, g * c_group:(g + 1) * c_group]
        wg = w[g * o_group:(g + 1) * o_group]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
                y[:, g * o_group:(g + 1) * o_group] += np.einsum("oc,nchw->nohw", wg[:, :, i, j], patch)
    return y


def conv2d_backward(grad, x, w, stride, pads, groups):
    (top, bottom), (left, right) = pads
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    c_out, c_group, kh, kw = w.shape
    o_group, (ho, wo) = c_out // groups, grad.shape[2:]
    for g in range(groups):
        ins, outs = slice(g * c_group, (g + 1) * c_group), slice(g * o_group, (g + 1) * o_group)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + stride * (ho - 1) + 1, stride)
                cols = slice(j, j + stride * (wo - 1) + 1, stride)
                dw[outs, :, i, j] = np.einsum("nohw,nchw->oc", grad[:, outs], xpad[:, ins, rows, cols])
                dxpad[:, ins, rows, cols] += np.einsum("oc,nohw->nchw", w[outs, :, i, j], grad[:, outs])
    return dxpad[:, :, top:top + x.shape[2], left:left + x.shape[3]], dw
