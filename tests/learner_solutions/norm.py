"""A learner's batch-norm backward, from the computational graph step by step."""
import numpy as np


def batch_norm_backward(grad, x, mean, inv_std, gamma):
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    m = x.size // x.shape[1]
    xc = x - mean.reshape(shape)
    xhat = xc * inv_std.reshape(shape)
    dbeta = np.sum(grad, axis=axes)
    dgamma = np.sum(grad * xhat, axis=axes)
    dxhat = grad * gamma.reshape(shape)
    dvar = np.sum(dxhat * xc, axis=axes) * -0.5 * inv_std ** 3
    dmean = np.sum(-dxhat * inv_std.reshape(shape), axis=axes) + dvar * np.sum(-2 * xc, axis=axes) / m
    dx = dxhat * inv_std.reshape(shape) + dvar.reshape(shape) * 2 * xc / m + dmean.reshape(shape) / m
    return dx.astype(x.dtype), dgamma, dbeta
