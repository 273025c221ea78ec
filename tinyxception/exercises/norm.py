"""Chapter 3: batch normalisation, forward and backward, and the ReLU that follows it (notebook 04,
pytest --exercises -m ch3_norm_pool).

x: (N, C, H, W) or (N, C); every statistic is per channel, over the M = N*H*W values of that channel (all axes
but axis 1); gamma, beta and the running statistics have shape (C,).
"""
from tinyxception.exercise_mode import todo


def batch_norm_forward(x, gamma, beta, running_mean, running_var, momentum, eps):
    """(y, mean, inv_std) of training-mode batch norm, with the statistics of this very batch:
    mean = sum(x) / M, var = sum((x - mean)^2) / M (biased), inv_std = 1 / sqrt(var + eps),
    y = gamma * (x - mean) * inv_std + beta (same shape and dtype as x; mean and inv_std of shape (C,)).

    Also move the running statistics towards the batch's, IN PLACE (``running_mean[...] = ...``):
    running = (1 - momentum) * running + momentum * batch, where the variance that enters is the unbiased
    one, var * M / (M - 1).
    """
    raise todo("batch_norm_forward")


def batch_norm_inference_forward(x, gamma, beta, running_mean, running_var, eps):
    """y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta: evaluation mode, where the running
    statistics (shape (C,)) take the place of the batch's, so each image's output does not depend on the others.
    """
    raise todo("batch_norm_inference_forward")


def batch_norm_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, y = gamma * (x - mean) * inv_std + beta.

    x and grad: (N, C, H, W) or (N, C); mean, inv_std = 1 / sqrt(var + eps) and gamma: (C,) per channel,
    where mean and var are the statistics of this very batch (over N*H*W = M values per channel).
    Hint: mean and var depend on every x of the channel, so dL/dx has three terms, not one;
    dL/dbeta = sum(g) and dL/dgamma = sum(g * xhat) per channel appear in it.
    """
    raise todo("batch_norm_backward")


def relu_forward(x):
    """y = max(x, 0), element-wise; same shape and dtype as x."""
    raise todo("relu_forward")


def relu_backward(grad, y):
    """dL/dx given grad = dL/dy and the forward's OUTPUT y (not x): dy/dx is 1 where x > 0 and 0 elsewhere
    (at x = 0 too). Hint: where is x > 0, in terms of y?"""
    raise todo("relu_backward")
