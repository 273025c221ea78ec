"""Chapter 3: batch normalisation's backward pass (notebook 04, pytest --exercises -m ch3_norm_pool)."""
from tinyxception.exercise_mode import todo


def batch_norm_backward(grad, x, mean, inv_std, gamma):
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, y = gamma * (x - mean) * inv_std + beta.

    x and grad: (N, C, H, W) or (N, C); mean, inv_std = 1 / sqrt(var + eps) and gamma: (C,) per channel,
    where mean and var are the statistics of this very batch (over N*H*W = M values per channel).
    Hint: mean and var depend on every x of the channel, so dL/dx has three terms, not one;
    dL/dbeta = sum(g) and dL/dgamma = sum(g * xhat) per channel appear in it.
    """
    raise todo("batch_norm_backward")
