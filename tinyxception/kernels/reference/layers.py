"""Reference kernels of the layers around the convolutions: ReLU (chapter 3), the classifier's linear layer
(chapter 1) and the softmax cross-entropy loss (chapter 5)."""
from tinyxception import backend


def relu_forward(x):
    """y = max(x, 0), element-wise."""
    return backend.array_module(x).maximum(x, 0)


def relu_backward(grad, y):
    """dL/dx of y = relu_forward(x), given grad = dL/dy and the output y: dy/dx is 1 where x > 0, which is
    exactly where y > 0, and 0 elsewhere (at x = 0 too, by convention), so no copy of x is needed."""
    return grad * (y > 0)


def linear_forward(x, w, b):
    """y = x @ w.T + b: x (N, in), w (out, in) as in PyTorch, b (out,) or None."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(grad, x, w):
    """(dL/dx, dL/dw, dL/db) of linear_forward, given grad = dL/dy of shape (N, out).

    y[n, k] = sum over i of x[n, i] w[k, i] + b[k], so dL/dx = grad @ w, dL/dw = grad.T @ x and dL/db sums grad
    over the batch.
    """
    return grad @ w, grad.T @ x, grad.sum(axis=0)


def log_softmax(z):
    """log(softmax(z)) along the last axis, stably: softmax is unchanged by subtracting each row's maximum m, so
    log_softmax(z) = (z - m) - log(sum exp(z - m)), where every exp is at most 1 (logits of 1e4 stay finite)."""
    xp = backend.array_module(z)
    out = z - z.max(axis=-1, keepdims=True)
    out -= xp.log(xp.exp(out).sum(axis=-1, keepdims=True))
    return out


def softmax_cross_entropy_forward(logits, labels):
    """(loss, log_p): loss = -(1/N) sum over n of log_softmax(logits)[n, labels[n]], a 0-d array, for logits
    (N, K) and integer labels (N,); log_p = log_softmax(logits) (N, K) is what the backward needs."""
    xp, log_p = backend.array_module(logits), log_softmax(logits)
    return xp.asarray(-log_p[xp.arange(len(labels)), labels].mean()), log_p


def softmax_cross_entropy_backward(grad, log_p, labels):
    """dL/dlogits given grad = dL/dloss (a scalar) and log_p from the forward.

    loss = (1/N) sum over n of (logsumexp(z_n) - z_n[labels[n]]), and d logsumexp(z) / dz = softmax(z), so
    dL/dlogits = grad * (softmax - onehot(labels)) / N, with softmax = exp(log_p).
    """
    xp = backend.array_module(log_p)
    d = xp.exp(log_p)
    d[xp.arange(len(labels)), labels] -= 1
    d *= grad * (1.0 / len(labels))
    return d
