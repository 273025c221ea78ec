"""The layers around the convolutions: the linear layer (notebook 01, chapter ch1_autograd), ReLU (notebook 04,
ch3_norm_pool) and the softmax cross-entropy loss (notebook 01, ch5_training)."""
from tinyxception.exercise_mode import todo


def relu_forward(x):
    """y = max(x, 0), element-wise; same shape and dtype as x."""
    raise todo("relu_forward")


def relu_backward(grad, y):
    """dL/dx given grad = dL/dy and the forward's OUTPUT y (not x): dy/dx is 1 where x > 0 and 0 elsewhere
    (at x = 0 too). Hint: where is x > 0, in terms of y?"""
    raise todo("relu_backward")


def linear_forward(x, w, b):
    """y = x @ w.T + b: x (N, in), w (out, in) as in PyTorch, b (out,) or None (no bias). Returns (N, out)."""
    raise todo("linear_forward")


def linear_backward(grad, x, w):
    """(dL/dx, dL/dw, dL/db) given grad = dL/dy (N, out); shapes (N, in), (out, in), (out,).

    Hint: write y[n, k] = sum over i of x[n, i] w[k, i] + b[k] and differentiate; the bias is added to every
    row of the batch, so its gradient sums over the batch.
    """
    raise todo("linear_backward")


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
