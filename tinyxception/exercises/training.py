"""Chapter 5: the loss and the optimiser's step: a stable softmax cross-entropy (notebook 01) and one step of
SGD with momentum (notebook 07); pytest --exercises -m ch5_training."""
from tinyxception.exercise_mode import todo


def softmax_cross_entropy_forward(logits, labels):
    """(loss, log_p) for logits (N, K) and integer labels (N,): log_p = log(softmax(logits)) along axis 1, (N, K),
    and loss = -(1/N) sum over n of log_p[n, labels[n]], a 0-d array of the logits' dtype.

    Compute log_p stably: subtract each row's maximum m first (softmax does not change), then
    log_p = (z - m) - log(sum exp(z - m)), so that logits of 1e4 give finite numbers, not inf / inf.
    """
    raise todo("softmax_cross_entropy_forward")


def softmax_cross_entropy_backward(grad, log_p, labels):
    """dL/dlogits (N, K) given grad = dL/dloss (a scalar) and log_p from the forward.

    Hint: per row, loss_n = log(sum exp(z)) - z[label]; the derivative of log(sum exp(z)) is softmax(z) = exp(log_p).
    """
    raise todo("softmax_cross_entropy_backward")


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    """Update the parameter array p IN PLACE (``p -= ...``) from its gradient g, and return the new velocity.

    PyTorch's momentum: v = momentum * v + g, starting from v = 0 (`velocity` is None at the first step); then
    p -= lr * v, or with nesterov=True p -= lr * (g + momentum * v). Leave g unchanged; you may update the old
    velocity array in place and return it.
    """
    raise todo("sgd_momentum_step")
