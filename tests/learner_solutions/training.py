"""A learner's loss and optimiser step: a stable softmax cross-entropy, and SGD with momentum with a fresh
velocity array each step."""
import numpy as np


def softmax_cross_entropy_forward(logits, labels):
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_p = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -sum(log_p[i, labels[i]] for i in range(n)) / n
    return np.array(loss, dtype=logits.dtype), log_p


def softmax_cross_entropy_backward(grad, log_p, labels):
    onehot = np.zeros_like(log_p)
    onehot[np.arange(len(labels)), labels] = 1
    return (np.exp(log_p) - onehot) * (grad / len(labels))


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    v = np.array(g, copy=True) if velocity is None else momentum * velocity + g
    step = g + momentum * v if nesterov else v
    p -= lr * step
    return v
