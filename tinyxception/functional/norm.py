"""Batch normalisation (Ioffe & Szegedy, 2015), per channel of an (N, C, H, W) or (N, C) batch.

Training normalises every channel with the statistics of the batch itself, over its M = N*H*W values:

    mean = sum(x) / M,   var = sum((x - mean)^2) / M   (biased),   xhat = (x - mean) / sqrt(var + eps)
    y = gamma * xhat + beta

and moves the running statistics towards the batch statistics, in place, with PyTorch's convention:

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased variance)

Keras writes the same update as ``running = decay * running + (1 - decay) * batch``, so Keras'
momentum 0.99 is ``momentum=0.01`` here. Evaluation uses the running statistics, which are
constants, so the whole op folds into one per-channel affine map:

    y = x * scale + shift,   scale = gamma / sqrt(running_var + eps),   shift = beta - running_mean * scale
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, Tensor
from ..exercise_mode import exercise
from ._checks import check_number, expect_nonempty, expect_shape, float_tensor, same_device, same_dtype


def _per_channel(v, ndim: int):
    """A (C,) vector shaped (1, C, 1, 1) (or (1, C)) so it broadcasts along the channel axis."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _rows(x):
    """x seen as (N, C, M/N): every channel's values along the last axis (a view for contiguous x)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_sums(a, b=None):
    """Per-channel sum of a, or of a * b without materialising the product."""
    xp = backend.array_module(a)
    if b is None:
        return _rows(a).sum(axis=(0, 2))
    return xp.einsum("ncm,ncm->c", _rows(a), _rows(b))


def _normalised(x, mean, inv_std):
    """xhat = (x - mean) / sigma per channel, as a new array."""
    xhat = x - _per_channel(mean, x.ndim)
    xhat *= _per_channel(inv_std, x.ndim)
    return xhat


class _BatchNormTraining(Function):
    """y = gamma * xhat + beta with the batch's own mean and variance."""

    def forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
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
        # x stays alive in the graph anyway; keeping xhat too would cost one more activation per layer
        self.x, self.mean, self.inv_std, self.gamma = x, mean, inv_std, gamma
        return out

    def backward(self, grad):
        return batch_norm_backward(grad, self.x, self.mean, self.inv_std, self.gamma)


@exercise("norm", chapter="ch3_norm_pool", notebook="04_batchnorm_relu_pooling")
def batch_norm_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, given grad = dL/dy.

    x: (N, C, H, W) or (N, C); mean, inv_std = 1 / sqrt(var + eps) and gamma: (C,), the batch statistics.
    With g = dL/dy and sigma = sqrt(var + eps), xhat_j depends on every x_i of its channel (M values):
      d xhat_j / d x_i = (delta_ij - 1/M - xhat_i * xhat_j / M) / sigma
    so dL/dx_i = sum_j g_j * gamma * d xhat_j / d x_i
               = (gamma / sigma) / M * (M * g_i - sum(g) - xhat_i * sum(g * xhat)),
    where sum(g) = dL/dbeta and sum(g * xhat) = dL/dgamma.
    """
    xp, ndim, m = backend.array_module(grad), grad.ndim, grad.size // grad.shape[1]
    sum_g = _channel_sums(grad)
    xhat = _normalised(x, mean, inv_std)
    sum_gx = _channel_sums(grad, xhat)
    dx = xhat  # the buffer is reused: dx = (g - (sum(g) + xhat * sum(g * xhat)) / M) * gamma / sigma
    dx *= _per_channel(sum_gx / m, ndim)
    dx += _per_channel(sum_g / m, ndim)
    xp.subtract(grad, dx, out=dx)
    dx *= _per_channel(gamma * inv_std, ndim)
    return dx, sum_gx, sum_g


class _BatchNormInference(Function):
    """y = x * scale + shift with scale and shift folded from the running statistics."""

    def forward(self, x, gamma, beta, running_mean, running_var, eps):
        xp = backend.array_module(x)
        inv_std = 1 / xp.sqrt(running_var + eps)
        scale = gamma * inv_std
        out = xp.multiply(x, _per_channel(scale, x.ndim))
        out += _per_channel(beta - running_mean * scale, x.ndim)
        self.x, self.mean, self.inv_std, self.scale = x, running_mean.copy(), inv_std, scale  # copy: updated in place
        return out

    def backward(self, grad):
        # The statistics are constants: dy/dx = scale, dy/dgamma = xhat, dy/dbeta = 1.
        need_x, need_gamma, need_beta = self.needs_input_grad
        dx = grad * _per_channel(self.scale, grad.ndim) if need_x else None
        dgamma = _channel_sums(grad, _normalised(self.x, self.mean, self.inv_std)) if need_gamma else None
        return dx, dgamma, _channel_sums(grad) if need_beta else None


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool,
               momentum: float = 0.1, eps: float = 1e-3) -> Tensor:
    """Batch normalisation of x (N, C, H, W) or (N, C) with per-channel gamma and beta of shape (C,).

    ``training=True`` normalises with the batch's mean and biased variance and updates
    ``running_mean`` and ``running_var`` (arrays, or Tensors whose ``.data`` is used) IN PLACE:
    ``running = (1 - momentum) * running + momentum * batch_stat``, where the variance that enters
    the running average is the unbiased one (times M / (M - 1), M = N*H*W), as in PyTorch.
    ``training=False`` uses the running statistics, folded into ``y = x * scale + shift``. Training refuses
    float16 (TypeError): its sums overflow and would write NaN into the running statistics.
    Gradients flow to x, gamma and beta in both modes; the running statistics get none.
    """
    op = "batch_norm"
    x = float_tensor(x, "x", op)
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: x must have 4 dimensions (N, C, H, W) or 2 (N, C), got shape {x.shape}")
    expect_nonempty(x, "x", "(N, C, ...)", op)
    params = {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}
    for name in ("running_mean", "running_var"):
        if training and not (isinstance(params[name], Tensor) or backend.is_array(params[name])):
            raise TypeError(f"{op}: training updates {name} in place, so it must be an array or a Tensor, "
                            f"got a {type(params[name]).__name__}")
    params = {name: float_tensor(p, name, op) for name, p in params.items()}
    for name, p in params.items():
        expect_shape(p, (x.shape[1],), name, op, channels_of=x)
    same_dtype(op, x=x, **params)
    same_device(op, x=x, **params)
    momentum = check_number(momentum, f"{op}: momentum", 0, 1)
    eps = check_number(eps, f"{op}: eps", 0, math.inf, "()")
    stats = {"running_mean": params["running_mean"].data, "running_var": params["running_var"].data}
    if not training:
        return _BatchNormInference.apply(x, params["gamma"], params["beta"], **stats, eps=eps)
    if x.dtype.itemsize < 4:  # float16 sums of M values (and of their squares) overflow at 65504
        raise TypeError(f"{op}: training in {x.dtype} would overflow the per-channel sums of the batch "
                        "statistics; train in float32 (model.astype('float32')), evaluation in float16 works")
    if x.size < 2 * x.shape[1]:
        raise ValueError(f"{op}: training needs more than one value per channel, got x of shape {x.shape}")
    return _BatchNormTraining.apply(x, params["gamma"], params["beta"], **stats, momentum=momentum, eps=eps)
