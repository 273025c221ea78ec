"""A learner's layers: ReLU with np.where, the linear layer with einsum, a stable softmax cross-entropy."""
import numpy as np


def relu_forward(x):
    return np.where(x > 0, x, np.zeros_like(x))


def relu_backward(grad, y):
    return np.where(y > 0, grad, np.zeros_like(grad))


def linear_forward(x, w, b):
    y = np.einsum("ni,ki->nk", x, w)
    return y if b is None else y + b[None, :]


def linear_backward(grad, x, w):
    return np.einsum("nk,ki->ni", grad, w), np.einsum("nk,ni->ki", grad, x), grad.sum(axis=0)


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
