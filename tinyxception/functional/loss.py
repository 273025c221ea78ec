"""The classification loss: cross-entropy of class scores (logits) against integer labels.

Both ops go through a numerically stable log-softmax. Subtracting each row's maximum first
changes nothing mathematically (softmax is shift invariant) but keeps exp() <= 1, so logits of
1e4 give finite results instead of inf / inf:

    log_softmax(z)_k = (z_k - max z) - log(sum_j exp(z_j - max z))
"""
from .. import backend
from ..autograd import Function, Tensor
from ..checks import any_tensor, expect_rank, float_tensor
from ..kernels import active as kernels
from ..kernels.reference.training import log_softmax as _log_softmax


class _LogSoftmax(Function):
    """y = log_softmax(x) along the last axis."""

    def forward(self, x):
        self.out = _log_softmax(x)
        return self.out

    def backward(self, grad):  # y_k = x_k - logsumexp(x): dL/dx = g - softmax(x) * sum(g)
        xp = backend.array_module(grad)
        return grad - xp.exp(self.out) * grad.sum(axis=-1, keepdims=True)


def log_softmax(x) -> Tensor:
    """log(softmax(x)) along the last axis, computed stably."""
    x = float_tensor(x, "x", "log_softmax")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"log_softmax: x needs a last axis with at least one value, got shape {x.shape}")
    return _LogSoftmax.apply(x)


class _CrossEntropy(Function):
    """L = -(1/N) sum_n log_softmax(logits)[n, labels[n]]."""

    def forward(self, logits, labels):  # kernels softmax_cross_entropy_forward/backward
        loss, self.log_p = kernels.softmax_cross_entropy_forward(logits, labels)
        self.labels = labels
        return loss

    def backward(self, grad):
        return kernels.softmax_cross_entropy_backward(grad, self.log_p, self.labels)


def _class_indices(labels, logits: Tensor, op: str):
    """labels as an integer array of shape (N,) with values in [0, K), on the logits' device."""
    labels = any_tensor(labels, "labels", op, device=None if hasattr(labels, "dtype") else logits.device).data
    n, k = logits.shape
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got dtype {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"{op}: labels must have shape ({n},), one class index per row of logits {logits.shape}, "
                         f"got {tuple(labels.shape)}")
    if backend.device_of(labels) != logits.device:
        raise ValueError(f"{op}: logits live on {logits.device!r} but labels on {backend.device_of(labels)!r}")
    low, high = int(labels.min()), int(labels.max())  # one sync on the GPU
    if low < 0 or high >= k:
        raise ValueError(f"{op}: labels must lie in [0, {k}) for {k} classes, got values from {low} to {high}")
    return labels


def cross_entropy(logits, labels) -> Tensor:
    """Mean cross-entropy over the batch of logits (N, K) against integer class labels (N,).

    Equal to ``-mean(log_softmax(logits)[n, labels[n]])``; the gradient is (softmax - onehot) / N.
    """
    op = "cross_entropy"
    logits = float_tensor(logits, "logits", op)
    expect_rank(logits, 2, "logits", "(N, classes)", op)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"{op}: logits need at least one row and one class, got shape {logits.shape}")
    return _CrossEntropy.apply(logits, labels=_class_indices(labels, logits, op))
