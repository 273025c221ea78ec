"""The fast batch norm kernels. The reference is ``kernels/reference/norm.py`` (same names, values, shapes and
dtypes); read that first. Optimisations: per-channel sums of products by one einsum without materialising the
product, every intermediate written in place into one buffer (centred x, then y; centred x, then dL/dx), so a
layer costs one activation-sized temporary instead of several.
"""
from ... import backend
from ..geometry import stored_channels_last


def _per_channel(v, ndim: int):
    """A (C,) vector shaped (1, C, 1, 1) (or (1, C)) so it broadcasts along the channel axis."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _rows(a, channels_last: bool):
    """a as (rows, C, M), every channel's values along axes 0 and 2: (N*H*W, C, 1) for channels_last, else
    (N, C, H*W); a view when a is stored that way, else a copy."""
    if channels_last:
        return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1], 1)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _channel_sums(a, b=None):
    """Per-channel sum of a, or of a * b without materialising the product, in a's memory layout."""
    channels_last = stored_channels_last(a)
    if b is None:
        return _rows(a, channels_last).sum(axis=(0, 2))
    return backend.array_module(a).einsum("ncm,ncm->c", _rows(a, channels_last), _rows(b, channels_last))


def _normalised(x, mean, inv_std):
    """xhat = (x - mean) / sigma per channel, as a new array."""
    xhat = x - _per_channel(mean, x.ndim)
    xhat *= _per_channel(inv_std, x.ndim)
    return xhat


def batch_norm_forward(x, gamma, beta, running_mean, running_var, momentum, eps):
    """(y, mean, inv_std) of training-mode batch norm; updates the running statistics in place."""
    xp = backend.array_module(x)
    m = x.size // x.shape[1]
    mean = _channel_sums(x) / m
    out = x - _per_channel(mean, x.ndim)  # centred x; scaled and shifted into y in place below
    var = _channel_sums(out, out) / m
    inv_std = 1 / xp.sqrt(var + eps)
    out *= _per_channel(gamma * inv_std, x.ndim)
    out += _per_channel(beta, x.ndim)
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * m / (m - 1)) * var
    return out, mean, inv_std


def batch_norm_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, given grad = dL/dy.

    x: (N, C, H, W) or (N, C); mean, inv_std = 1 / sqrt(var + eps) and gamma: (C,), the batch statistics.
    With g = dL/dy and sigma = sqrt(var + eps), xhat_j depends on every x_i of its channel (M values):
      d xhat_j / d x_i = (delta_ij - 1/M - xhat_i * xhat_j / M) / sigma
    so dL/dx_i = sum_j g_j * gamma * d xhat_j / d x_i
               = (gamma / sigma) / M * (M * g_i - sum(g) - xhat_i * sum(g * xhat)),
    where sum(g) = dL/dbeta and sum(g * xhat) = dL/dgamma. With the centred c = x - mean = xhat * sigma that is
      dL/dx_i = gamma / sigma * (g_i - (sum(g) + c_i * sum(g * c) / sigma^2) / M),  sum(g * xhat) = sum(g * c) / sigma
    so the buffer holds c, then dL/dx, and xhat is never formed (one pass fewer).
    """
    xp, ndim, m = backend.array_module(grad), grad.ndim, grad.size // grad.shape[1]
    sum_g = _channel_sums(grad)
    dx = x - _per_channel(mean, ndim)  # c
    sum_gc = _channel_sums(grad, dx)
    dx *= _per_channel(sum_gc * inv_std * inv_std / m, ndim)
    dx += _per_channel(sum_g / m, ndim)
    xp.subtract(grad, dx, out=dx)
    dx *= _per_channel(gamma * inv_std, ndim)
    return dx, sum_gc * inv_std, sum_g


def batch_norm_inference_forward(x, gamma, beta, running_mean, running_var, eps):
    """y = x * scale + shift: the whole op folded into one per-channel affine map of the running statistics."""
    scale = gamma / backend.array_module(x).sqrt(running_var + eps)
    out = x * _per_channel(scale, x.ndim)
    out += _per_channel(beta - running_mean * scale, x.ndim)
    return out


def batch_norm_inference_backward(grad, x, mean, inv_std, gamma):
    """Only the products the gradients need, as in the reference."""
    dx = grad * _per_channel(gamma * inv_std, grad.ndim)
    return dx, _channel_sums(grad, _normalised(x, mean, inv_std)), _channel_sums(grad)
