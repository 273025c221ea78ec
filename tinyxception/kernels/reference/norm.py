"""Reference kernels of chapter 3: batch normalisation, per channel of (N, C, H, W) or (N, C), and ReLU.

Over the M = N*H*W values of each channel: mean = sum(x) / M, var = sum((x - mean)^2) / M (biased),
xhat = (x - mean) / sqrt(var + eps), y = gamma * xhat + beta. The running statistics move towards the batch's
with PyTorch's convention, running = (1 - momentum) * running + momentum * batch, the variance that enters
being the unbiased one (times M / (M - 1)). Keras' momentum 0.99 is momentum=0.01 here.
"""
from tinyxception import backend


def channel_axes(x):
    """The axes that a per-channel statistic sums over: all but axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def per_channel(v, x):
    """A (C,) vector shaped (1, C, 1, 1) (or (1, C)) so that it broadcasts along x's channel axis."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm_forward(x, gamma, beta, running_mean, running_var, momentum, eps):
    """(y, mean, inv_std) of training-mode batch norm, inv_std = 1 / sqrt(var + eps); updates running_mean and
    running_var IN PLACE. mean and inv_std are what batch_norm_backward needs."""
    m = x.size // x.shape[1]
    mean, var = x.mean(axis=channel_axes(x)), x.var(axis=channel_axes(x))
    inv_std = 1 / backend.array_module(x).sqrt(var + eps)
    y = per_channel(gamma * inv_std, x) * (x - per_channel(mean, x)) + per_channel(beta, x)
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
    return y, mean, inv_std


def batch_norm_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, given grad = g = dL/dy.

    dL/dbeta = sum(g) and dL/dgamma = sum(g * xhat) per channel. The batch statistics depend on every x of the
    channel, so xhat_j depends on every x_i: with sigma = sqrt(var + eps),
      d xhat_j / d x_i = (delta_ij - 1/M - xhat_i * xhat_j / M) / sigma
    and dL/dx_i = sum over j of g_j * gamma * d xhat_j / d x_i
               = gamma / sigma * (g_i - (sum(g) + xhat_i * sum(g * xhat)) / M).
    """
    m, axes = x.size // x.shape[1], channel_axes(x)
    xhat = (x - per_channel(mean, x)) * per_channel(inv_std, x)
    grad_beta, grad_gamma = grad.sum(axis=axes), (grad * xhat).sum(axis=axes)
    mean_terms = (per_channel(grad_beta, x) + xhat * per_channel(grad_gamma, x)) / m
    grad_x = per_channel(gamma * inv_std, x) * (grad - mean_terms)
    return grad_x, grad_gamma, grad_beta


def batch_norm_inference_forward(x, gamma, beta, running_mean, running_var, eps):
    """y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta: evaluation mode, with the running
    statistics in place of the batch's."""
    inv_std = 1 / backend.array_module(x).sqrt(running_var + eps)
    return per_channel(gamma * inv_std, x) * (x - per_channel(running_mean, x)) + per_channel(beta, x)


def batch_norm_inference_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of evaluation-mode batch norm, mean and inv_std from the running statistics.

    Those statistics are constants here, so the op is a per-channel affine map: dy/dx = gamma * inv_std,
    dy/dgamma = xhat, dy/dbeta = 1.
    """
    xhat = (x - per_channel(mean, x)) * per_channel(inv_std, x)
    axes = channel_axes(x)
    return per_channel(gamma * inv_std, x) * grad, (grad * xhat).sum(axis=axes), grad.sum(axis=axes)


def relu_forward(x):
    """y = max(x, 0), element-wise."""
    return backend.array_module(x).maximum(x, 0)


def relu_backward(grad, y):
    """dL/dx of y = relu_forward(x), given grad = dL/dy and the output y: dy/dx is 1 where x > 0, which is
    exactly where y > 0, and 0 elsewhere (at x = 0 too, by convention), so no copy of x is needed."""
    return grad * (y > 0)
