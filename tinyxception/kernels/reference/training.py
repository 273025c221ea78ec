"""Reference kernels of chapter 5: the softmax cross-entropy loss and one step of stochastic gradient descent
with momentum."""
from tinyxception import backend


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


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    """Update the parameter array p IN PLACE from its gradient g, and return the new velocity.

    PyTorch's momentum (no dampening): v = momentum * v + g, starting from v = 0 (velocity None at the first
    step, so v = g); then p -= lr * v, or with Nesterov momentum p -= lr * (g + momentum * v), a step from the
    point the momentum is about to reach.
    """
    if velocity is None:  # v = momentum * 0 + g: a copy of g, no zero-filled buffer
        velocity = g.copy()
    else:
        velocity *= momentum
        velocity += g
    p -= lr * (g + momentum * velocity if nesterov else velocity)
    return velocity
