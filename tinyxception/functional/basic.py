"""The small ops around the network: arithmetic, reshaping, the classifier's linear layer, dropout.

add, mul and reshape are autograd's own Functions (the ones behind ``a + b``, ``a * b`` and
``t.reshape``) under functional names; linear and dropout are defined here.
"""
from __future__ import annotations

import numbers

from .. import backend
from ..autograd import Add, Function, Mul, Reshape, Tensor, as_tensor
from ._checks import expect_rank, expect_shape, float_tensor, same_device, same_dtype


def _tensors(a, b):
    """a and b as Tensors; a Python number takes the dtype and device of the other operand."""
    if isinstance(b, Tensor) or hasattr(b, "dtype"):
        b = as_tensor(b)
        return as_tensor(a, like=b), b
    a = as_tensor(a)
    return a, as_tensor(b, like=a)


def add(a, b) -> Tensor:
    """a + b with NumPy broadcasting."""
    return Add.apply(*_tensors(a, b))


def mul(a, b) -> Tensor:
    """a * b, element-wise, with NumPy broadcasting."""
    return Mul.apply(*_tensors(a, b))


def reshape(x, shape) -> Tensor:
    """x with a new shape holding the same values (one entry may be -1)."""
    return Reshape.apply(x, shape=(shape,) if isinstance(shape, int) else tuple(shape))


def flatten(x) -> Tensor:
    """(N, ...) -> (N, everything else): the batch axis stays, the rest becomes one axis."""
    x = as_tensor(x)
    if x.ndim < 1:
        raise ValueError(f"flatten: x needs a batch axis, got shape {x.shape}")
    return reshape(x, (x.shape[0], -1))


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """The mean over `axis` (all elements when None)."""
    return as_tensor(x).mean(axis=axis, keepdims=keepdims)


class _Linear(Function):
    """y = x @ w.T + b for x (N, in), w (out, in), b (out,)."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        out = x @ w.T
        if b is not None:
            out += b
        return out

    def backward(self, grad):  # dL/dx = g w, dL/dw = g^T x, dL/db = sum over the batch of g
        need = self.needs_input_grad
        grads = (grad @ self.w if need[0] else None, grad.T @ self.x if need[1] else None)
        if len(need) == 3:
            grads += (grad.sum(axis=0) if need[2] else None,)
        return grads


def linear(x, w, b=None) -> Tensor:
    """The fully connected layer y = x @ w.T + b: x (N, in), w (out, in) as in PyTorch, b (out,) or None."""
    op = "linear"
    x, w = float_tensor(x, "x", op), float_tensor(w, "w", op)
    expect_rank(x, 2, "x", "(N, in_features)", op)
    expect_rank(w, 2, "w", "(out_features, in_features)", op)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but w (out, in) = {w.shape} expects {w.shape[1]}")
    inputs = {"x": x, "w": w}
    if b is not None:
        inputs["b"] = float_tensor(b, "b", op)
        expect_shape(inputs["b"], (w.shape[0],), "b", op)
    same_dtype(op, **inputs)
    same_device(op, **inputs)
    return _Linear.apply(*inputs.values())


def dropout(x, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Inverted dropout: in training, zero each value with probability p and scale the rest by 1/(1-p).

    The expectation of every value is unchanged, so evaluation (``training=False``) is the identity.
    Random numbers come from `rng` when given (any object with ``random(shape)``, such as
    ``numpy.random.default_rng(seed)``, for reproducible masks), else from the array module's
    ``random``. The mask has x's dtype and multiplies x through autograd's Mul.
    """
    op = "dropout"
    x = float_tensor(x, "x", op)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"{op}: p must be a probability in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    uniform = (rng if rng is not None else backend.array_module(x.data).random).random(x.shape)
    mask = backend.to_device(uniform >= p, x.device).astype(x.dtype)
    mask *= 1 / (1 - p)
    return Mul.apply(x, mask)
