"""The small ops around the network: arithmetic, reshaping, the classifier's linear layer, dropout.

add, mul and reshape are autograd's own Functions (the ones behind ``a + b``, ``a * b`` and
``t.reshape``) under functional names; linear and dropout are defined here.
"""
import math
import numbers

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..operators import Add, Mul, Reshape, check_operands
from ..checks import any_tensor, check_number, expect_rank, expect_shape, float_tensor, is_int, same_device, same_dtype
from ..kernels import active as kernels


def _operands(a, b, op: str):
    """a and b as float Tensors of one dtype on one device whose shapes broadcast; a Python number takes the
    dtype and device of the other operand."""
    given = {"a": a, "b": b}
    first, second = ("b", "a") if isinstance(b, Tensor) or hasattr(b, "dtype") else ("a", "b")
    t = {first: float_tensor(given[first], first, op)}
    other = given[second]
    t[second] = float_tensor(as_tensor(other, like=t[first]) if isinstance(other, numbers.Real) else other, second, op)
    check_operands(t["a"], t["b"], f"{op}(a, b)")
    return t["a"], t["b"]


def add(a, b) -> Tensor:
    """a + b with NumPy broadcasting; float arrays or Tensors of one dtype (a Python number adopts it)."""
    return Add.apply(*_operands(a, b, "add"))


def mul(a, b) -> Tensor:
    """a * b, element-wise, with NumPy broadcasting; float arrays or Tensors of one dtype (or a Python number)."""
    return Mul.apply(*_operands(a, b, "mul"))


def _target_shape(size: int, shape, op: str) -> tuple:
    """shape (an int or a sequence of ints, one of them may be -1) checked against `size` elements."""
    target = (shape,) if is_int(shape, minimum=-1) else tuple(shape) if isinstance(shape, (tuple, list)) else None
    if target is None or not all(is_int(n, minimum=-1) for n in target) or target.count(-1) > 1:
        raise ValueError(f"{op}: shape must be an int or a sequence of ints >= 0 (one may be -1), got {shape!r}")
    known = math.prod(n for n in target if n != -1)
    if -1 in target:
        fits = known > 0 and size % known == 0  # with known = 0, any length would do for -1
    else:
        fits = size == known
    if not fits:
        raise ValueError(f"{op}: cannot arrange {size} values in shape {target}")
    return target


def reshape(x, shape) -> Tensor:
    """x with a new shape holding the same values (one entry may be -1)."""
    x = any_tensor(x, "x", "reshape")
    return Reshape.apply(x, shape=_target_shape(x.size, shape, "reshape"))


def flatten(x) -> Tensor:
    """(N, ...) -> (N, everything else): the batch axis stays, the rest becomes one axis."""
    x = any_tensor(x, "x", "flatten")
    if x.ndim < 1:
        raise ValueError(f"flatten: x needs a batch axis, got shape {x.shape}")
    return Reshape.apply(x, shape=(x.shape[0], math.prod(x.shape[1:])))


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """The mean over `axis` (an int, a tuple of ints, or None for all elements) of a float array."""
    x = float_tensor(x, "x", "mean")
    axes = () if axis is None else axis if isinstance(axis, tuple) else (axis,)
    if not all(is_int(a, minimum=-x.ndim) and a < x.ndim for a in axes) or len({a % x.ndim for a in axes}) < len(axes):
        raise ValueError(f"mean: axis must be None, an int or a tuple of distinct ints in [{-x.ndim}, {x.ndim}) "
                         f"for x of shape {x.shape}, got {axis!r}")
    return x.mean(axis=axis, keepdims=keepdims)


class _Linear(Function):
    """y = x @ w.T + b for x (N, in), w (out, in), b (out,) (kernels ``linear_forward``/``linear_backward``)."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        return kernels.linear_forward(x, w, b)

    def backward(self, grad):  # (dL/dx, dL/dw, dL/db), the last one only when there is a b
        return kernels.linear_backward(grad, self.x, self.w)[:len(self.needs_input_grad)]


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
    check_number(p, f"{op}: p", 0, 1, "[)")
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise TypeError(f"{op}: rng must be None or have a random(shape) method, like numpy.random.default_rng(seed), "
                        f"got {rng!r}")
    if not training or p == 0:
        return x
    uniform = (rng if rng is not None else backend.array_module(x.data).random).random(x.shape)
    mask = backend.to_device(uniform >= p, x.device).astype(x.dtype)
    mask *= 1 / (1 - p)
    return Mul.apply(x, mask)
