"""A small reverse-mode autograd engine.

A ``Tensor`` wraps a NumPy or CuPy array. Every differentiable operation is a
``Function`` subclass with a ``forward`` that computes the result from plain
arrays and a ``backward`` that turns the gradient of the result into gradients
of the inputs. ``Function.apply`` records the call, so ``loss.backward()`` can
walk the graph from the loss back to the leaves:

    dL/dx = sum over every use of x of (dL/d(use) * d(use)/dx)

The walk uses an explicit stack (no recursion, so a 1000-layer graph is fine)
and *adds* the gradients arriving at a tensor used twice (``b = a + a``).
After ``backward`` the graph is released unless ``retain_graph=True``.
"""
from __future__ import annotations

import contextlib
import math
import zlib

from . import backend, debug
from .kernels import active as kernels

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block operations are not recorded: no graph, no saved arrays."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()``."""
    return _grad_enabled


def _checksum(array) -> tuple:
    """The identity and a CRC-32 of an array's bytes: changes when the array is replaced or edited in place."""
    return id(array), zlib.crc32(backend.asnumpy(array).tobytes())


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the backward of NumPy broadcasting.

    A value broadcast along an axis was used once per position on that axis,
    so its gradient is the sum over that axis.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


class Tensor:
    """An array plus what autograd needs: ``grad``, ``requires_grad`` and the Function that made it."""

    __array_priority__ = 1000  # numpy_array * tensor dispatches to Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            data = backend.as_array(data)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"Tensor: data must hold real numbers (bool, int or float), got dtype {data.dtype}"
                            + ("; keep the real part with x.real, or the magnitude with abs(x)"
                               if data.dtype.kind == "c" else "; convert text and objects to numbers first"))
        if requires_grad and not backend.is_float_dtype(data.dtype):
            raise TypeError(f"Tensor: only floating point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None  # the Function that produced this tensor (None for leaves)
        self._graph_freed = False  # set when backward() released the graph behind this tensor

    # --- what the array is -------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape), doc="Shape of the data.")
    dtype = property(lambda self: self.data.dtype, doc="dtype of the data.")
    ndim = property(lambda self: self.data.ndim, doc="Number of dimensions.")
    size = property(lambda self: int(self.data.size), doc="Number of elements.")
    device = property(lambda self: backend.device_of(self.data), doc='"cpu" or "cuda".')
    is_leaf = property(lambda self: self._ctx is None, doc="True when no recorded op produced it.")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{grad})"

    def numpy(self):
        """The values as a numpy.ndarray (a copy from the GPU when on cuda)."""
        return backend.asnumpy(self.data)

    def item(self) -> float:
        """The single value as a Python number (synchronises the GPU)."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def to(self, device: str) -> "Tensor":
        """A copy on `device` ("cpu" or "cuda"), a new leaf with the same requires_grad."""
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    # --- backward -----------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        `grad` is the gradient flowing into this tensor (an array, list or Tensor of its shape, converted to its
        dtype and device); it defaults to 1 for a scalar. Every leaf gets a gradient array of its own. In debug mode
        a NaN or infinity in a gradient is refused naming the op whose backward made it, and so is an input that
        changed in place between the forward pass and this call (the gradients would be silently wrong).
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (was it made under no_grad?)")
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = backend.array_module(self.data).ones_like(self.data)
        grad = backend.as_array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype, device=self.device)
        if tuple(grad.shape) != self.shape:
            raise ValueError(f"backward(grad): gradient shape {tuple(grad.shape)} does not match tensor shape "
                             f"{self.shape}")
        pending, handed = {id(self): grad}, {id(grad)}  # handed: arrays already given to a leaf (or by the caller)
        for node in reversed(kernels.topological_order(self)):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            ctx = node._ctx
            if node._graph_freed:
                raise RuntimeError("backward() through a graph that an earlier backward() already freed; "
                                   "pass retain_graph=True to the first call to backward twice")
            if ctx is None:  # a leaf: a view or an array another leaf holds becomes a copy of its own
                g = g.copy() if g.base is not None or id(g) in handed else g
                handed.add(id(g))
                node.grad = g if node.grad is None else node.grad + g
                continue
            if debug.enabled:
                ctx.check_inputs_unchanged()
            input_grads = ctx.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for i, (tensor, ig) in enumerate(zip(ctx.inputs, input_grads)):
                if ig is None or not tensor.requires_grad:
                    continue
                if debug.enabled:
                    debug.check_finite(ig, f"the gradient of input {i}", f"{type(ctx).__name__}.backward")
                ig = unbroadcast(ig, tensor.shape)
                key = id(tensor)
                pending[key] = ig if key not in pending else pending[key] + ig
            if not retain_graph:
                node._ctx, node._graph_freed = None, True
                ctx.release()


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """A Tensor for x: tensors pass through; arrays and numbers become constants.

    Python numbers take the dtype and device of `like`, so ``x * 2`` stays float32.
    """
    if isinstance(x, Tensor):
        return x
    if like is not None and not hasattr(x, "dtype"):
        return Tensor(backend.as_array(x, dtype=like.dtype, device=like.device))
    return Tensor(x)


class Function:
    """One differentiable operation. Subclasses write ``forward`` and ``backward`` on plain arrays.

    ``forward(*arrays, **options)`` returns the result array; it may keep what
    backward needs as attributes of ``self``. ``backward(grad)`` returns one
    gradient per array input (a tuple, or a single array for one input; None
    for an input that needs none). ``self.needs_input_grad`` tells which inputs
    want a gradient, so backward can skip work.
    """

    def __init__(self):
        self.inputs: tuple[Tensor, ...] = ()
        self.needs_input_grad: tuple[bool, ...] = ()

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        """Run forward on the inputs' arrays and, when gradients are wanted, record the call.

        In debug mode every input and the result are scanned for NaN and infinity (so every op and operator is
        covered), and a recorded call keeps a checksum of each input for ``check_inputs_unchanged``.
        """
        tensors = tuple(x if isinstance(x, Tensor) else as_tensor(x) for x in inputs)  # checked by the caller
        fn = cls()
        fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
        record = _grad_enabled and any(fn.needs_input_grad)
        for i, t in enumerate(tensors if debug.enabled else ()):
            debug.check_finite(t.data, f"input {i}", cls.__name__)
        out = Tensor(fn.forward(*(t.data for t in tensors), **options), requires_grad=record)
        if debug.enabled:
            debug.check_finite(out.data, "its result", cls.__name__)
        if record:
            fn.inputs = tensors
            fn.checksums = [_checksum(t.data) for t in tensors] if debug.enabled else None
            out._ctx = fn
        else:
            fn.release()
        return out

    def check_inputs_unchanged(self) -> None:
        """RuntimeError when an input's values changed since the forward pass (debug mode keeps checksums)."""
        for i, (t, checksum) in enumerate(zip(self.inputs, self.checksums or ())):
            if _checksum(t.data) != checksum:
                raise RuntimeError(f"{type(self).__name__}: input {i} of shape {t.shape} changed after the forward "
                                   "pass (in place, or its .data replaced), so its gradients would be wrong; change "
                                   "a copy, or run the forward pass again (debug mode is on)")

    def forward(self, *arrays, **options):
        """Compute the result array from the input arrays; keep on self what backward needs."""
        raise NotImplementedError

    def backward(self, grad):
        """Turn d(loss)/d(result) into d(loss)/d(input) for every array input (None where not needed)."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop inputs and saved arrays so their memory can be freed."""
        self.__dict__.clear()


# --- elementary arithmetic (broadcasting is undone by unbroadcast in backward) ---

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
    """a @ b for 2-D (or batched) operands."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs operands with at least 2 dimensions, got shapes {a.shape} and {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):  # C = AB: dA = dC B^T, dB = A^T dC
        xp = backend.array_module(grad)
        return (grad @ xp.swapaxes(self.b, -1, -2) if self.needs_input_grad[0] else None,
                xp.swapaxes(self.a, -1, -2) @ grad if self.needs_input_grad[1] else None)


class Sum(Function):
    """a.sum(axis, keepdims)."""

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):  # every summed element receives the gradient of the sum
        xp = backend.array_module(grad)
        if self.axis is not None and not self.keepdims:
            grad = xp.expand_dims(grad, self.axis)
        return xp.broadcast_to(grad, self.shape)


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

    def backward(self, grad):
        xp = backend.array_module(grad)
        inverse = None if self.axes is None else tuple(xp.argsort(xp.asarray(self.axes)).tolist())
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


def _broadcastable(*shapes) -> bool:
    """True when NumPy can broadcast arrays of these shapes together."""
    if all(shape == shapes[0] for shape in shapes):
        return True
    return all(len(set(lengths) - {1}) <= 1 for lengths in zip(*(reversed(shape) for shape in shapes)))


def check_operands(a, b, expression: str, matrix_product: bool = False) -> tuple[Tensor, Tensor]:
    """a and b as Tensors (a number or list takes the dtype and device of the Tensor operand), or a clear error,
    naming both operands, when `expression` ("a + b", "add(a, b)" ...) cannot be computed as written: an operand
    that is not numbers (None, text), two devices, two dtypes (no silent float32 -> float64 upcast), or shapes
    that do not broadcast (for a matrix product: whose core axes do not fit or whose leading axes do not
    broadcast)."""
    like = a if isinstance(a, Tensor) else b
    try:
        a, b = as_tensor(a, like=like), as_tensor(b, like=like)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{expression}: {err}") from err
    given = f"{expression} with a of shape {a.shape}, {a.dtype} on {a.device} and b of shape {b.shape}, " \
            f"{b.dtype} on {b.device}"
    if a.device != b.device:
        raise ValueError(f"{given}: both must live on one device; move one with .to(device)")
    if a.dtype != b.dtype:
        raise TypeError(f"{given}: both must have one dtype; convert one with tx.tensor(..., dtype=...)")
    if matrix_product:
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0] \
                or not _broadcastable(a.shape[:-2], b.shape[:-2]):
            raise ValueError(f"{given}: a @ b needs a's last axis to match b's second to last (its only axis "
                             "when b is a vector), and the leading axes to broadcast")
    elif not _broadcastable(a.shape, b.shape):
        raise ValueError(f"{given}: the shapes do not broadcast: aligned from the right, each pair of lengths "
                         "must be equal or contain a 1")
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


Tensor.sum, Tensor.reshape, Tensor.transpose = _sum, _reshape, _transpose
Tensor.T = property(_transpose, doc="The tensor with its axes reversed.")


def _mean(self, axis=None, keepdims=False):
    """Mean = sum / count, so its gradient is 1/count for every element; ValueError for a mean of no values."""
    total = self.sum(axis=axis, keepdims=keepdims)
    axes = range(self.ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    count = math.prod(self.shape[a] for a in axes)
    if count == 0:
        raise ValueError(f"mean: axis {axis} of a tensor of shape {self.shape} holds no values to average")
    return total * (1.0 / count)


Tensor.mean = _mean


def tensor(data, requires_grad: bool = False, device: str | None = None, dtype=None) -> Tensor:
    """Build a Tensor from a numpy/cupy array, list or number.

    Python floats become float32 (the package default); arrays keep their dtype
    unless `dtype` is given. `device` is "cpu" or "cuda" (default: where the data is).
    """
    if isinstance(data, Tensor):
        data = data.data
    return Tensor(backend.as_array(data, dtype=dtype, device=device), requires_grad=requires_grad)
