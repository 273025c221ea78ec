"""A learner's SGD step with momentum, a fresh velocity array each step."""
import numpy as np


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    v = np.array(g, copy=True) if velocity is None else momentum * velocity + g
    step = g + momentum * v if nesterov else v
    p -= lr * step
    return v
