"""The elementary Functions behind a Tensor's operators (``a + b``, ``a * b``, ``a @ b``, ``a[i]``, ``a.sum()``,
``a.reshape``, ``a.T``, ``a.mean()``), and the one check every operator makes of its operands.

Each is a Function with its backward beside its forward; autograd's ``backward()`` undoes broadcasting (sums
each gradient down to its input's shape with ``unbroadcast``). autograd.py imports this module at its end, which
binds the operators to Tensor.
"""
import math

from . import backend
from .autograd import Function, Tensor, as_tensor
from .checks import same_device, same_dtype


class Add(Function):
    """a + b."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):  # d(a+b)/da = d(a+b)/db = 1
        return grad, grad


class Sub(Function):
    """a - b."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    """a * b (element-wise)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):  # d(ab)/da = b, d(ab)/db = a
        return (grad * self.b if self.needs_input_grad[0] else None,
                grad * self.a if self.needs_input_grad[1] else None)


class Div(Function):
    """a / b (element-wise)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        return (grad / self.b if self.needs_input_grad[0] else None,
                -grad * self.a / (self.b * self.b) if self.needs_input_grad[1] else None)


class Neg(Function):
    """-a."""

    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class MatMul(Function):
    """a @ b for 2-D (or batched) operands (``check_operands`` makes sure they fit)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):  # C = AB: dA = dC B^T, dB = A^T dC
        return (grad @ self.b.swapaxes(-1, -2) if self.needs_input_grad[0] else None,
                self.a.swapaxes(-1, -2) @ grad if self.needs_input_grad[1] else None)


class Sum(Function):
    """a.sum(axis, keepdims)."""

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):  # every summed element receives the gradient of the sum
        xp = backend.array_module(grad)
        kept = grad if self.axis is None or self.keepdims else xp.expand_dims(grad, self.axis)  # summed axes as 1s
        return xp.broadcast_to(kept, self.shape)


class Reshape(Function):
    """a.reshape(shape): the gradient is reshaped back."""

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    """a.transpose(axes): the gradient is transposed by the inverse permutation."""

    def forward(self, a, axes=None):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):  # result axis k is axis axes[k] of a: the inverse permutation sorts k by axes[k]
        inverse = None if self.axes is None else sorted(range(grad.ndim), key=lambda k: self.axes[k] % grad.ndim)
        return grad.transpose(inverse)


class GetItem(Function):
    """a[index] (basic or integer-array indexing)."""

    def forward(self, a, index):
        self.shape, self.index = a.shape, index
        return a[index]

    def backward(self, grad):  # scatter-add: an element picked twice gets both gradients
        xp = backend.array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        xp.add.at(full, self.index, grad)
        return full


def _broadcastable(a: tuple, b: tuple) -> bool:
    """True when NumPy can broadcast shapes a and b together: aligned from the right, each pair of lengths is equal
    or holds a 1."""
    return all(m == n or m == 1 or n == 1 for m, n in zip(reversed(a), reversed(b)))


def check_operands(a, b, expression: str, matrix_product: bool = False) -> tuple[Tensor, Tensor]:
    """a and b as Tensors (a number or list takes the dtype and device of the Tensor operand), or a clear error,
    naming both operands, when `expression` ("a + b", "add(a, b)" ...) cannot be computed as written: an operand
    that is not numbers (None, text), two devices, two dtypes (no silent float32 -> float64 upcast), or shapes
    that do not broadcast (for a matrix product: operands of fewer than 2 dimensions, core axes that do not fit or
    leading axes that do not broadcast)."""
    like = a if isinstance(a, Tensor) else b
    try:
        a, b = as_tensor(a, like=like), as_tensor(b, like=like)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{expression}: {err}") from err
    if a.dtype != b.dtype or a.device != b.device:
        same_device(expression, a=a, b=b)
        same_dtype(expression, a=a, b=b)
    if matrix_product and not (a.ndim > 1 and b.ndim > 1 and a.shape[-1] == b.shape[-2]
                               and _broadcastable(a.shape[:-2], b.shape[:-2])):
        raise ValueError(f"{expression} with a of shape {a.shape} and b of shape {b.shape}: a @ b needs operands of "
                         "at least 2 dimensions, a's last axis to match b's second to last, and the leading axes "
                         "to broadcast")
    if not matrix_product and a.shape != b.shape and not _broadcastable(a.shape, b.shape):
        raise ValueError(f"{expression} with a of shape {a.shape} and b of shape {b.shape}: the shapes do not "
                         "broadcast: aligned from the right, each pair of lengths must be equal or contain a 1")
    return a, b


def _binary(fn, symbol: str, reverse=False):
    def method(self, other):
        a, b = (other, self) if reverse else (self, other)
        return fn.apply(*check_operands(a, b, f"a {symbol} b", matrix_product=symbol == "@"))
    return method


Tensor.__add__, Tensor.__radd__ = _binary(Add, "+"), _binary(Add, "+", reverse=True)
Tensor.__sub__, Tensor.__rsub__ = _binary(Sub, "-"), _binary(Sub, "-", reverse=True)
Tensor.__mul__, Tensor.__rmul__ = _binary(Mul, "*"), _binary(Mul, "*", reverse=True)
Tensor.__truediv__, Tensor.__rtruediv__ = _binary(Div, "/"), _binary(Div, "/", reverse=True)
Tensor.__matmul__, Tensor.__rmatmul__ = _binary(MatMul, "@"), _binary(MatMul, "@", reverse=True)
Tensor.__neg__ = lambda self: Neg.apply(self)
Tensor.__getitem__ = lambda self, index: GetItem.apply(self, index=index)


def _sum(self, axis=None, keepdims=False):
    """Sum over `axis` (all axes by default)."""
    return Sum.apply(self, axis=axis, keepdims=keepdims)


def _reshape(self, *shape):
    """The same values in a new shape: t.reshape(2, 3) or t.reshape((2, 3))."""
    return Reshape.apply(self, shape=shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)


def _transpose(self, *axes):
    """Permute the axes (reverse them when none are given)."""
    return Transpose.apply(self, axes=axes or None)




def _mean(self, axis=None, keepdims=False):
    """Mean = sum / count, so its gradient is 1/count for every element; ValueError for a mean of no values."""
    total = self.sum(axis=axis, keepdims=keepdims)
    axes = range(self.ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    count = math.prod(self.shape[a] for a in axes)
    if count == 0:
        raise ValueError(f"mean: axis {axis} of a tensor of shape {self.shape} holds no values to average")
    return total * (1.0 / count)


Tensor.sum, Tensor.reshape, Tensor.transpose, Tensor.mean = _sum, _reshape, _transpose, _mean
Tensor.T = property(_transpose, doc="The tensor with its axes reversed.")
