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
import contextlib
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
    so its gradient is the sum over that axis: over the leading axes broadcasting added, and over every axis
    where `shape` has length 1 and the gradient does not.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=tuple(range(extra)) + stretched, keepdims=True).reshape(shape)


class Tensor:
    """An array plus what autograd needs: ``grad``, ``requires_grad`` and the Function that made it."""

    __array_priority__ = 1000  # numpy_array * tensor dispatches to Tensor.__rmul__
    grad = None  # the accumulated gradient, an array of the tensor's shape, after backward()
    _ctx = None  # the Function that produced this tensor (None for leaves)
    _graph_freed = False  # set when backward() released the graph behind this tensor

    def __init__(self, data, requires_grad: bool = False):
        data = data.data if isinstance(data, Tensor) else data
        if not backend.is_array(data):
            data = backend.as_array(data)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"Tensor: data must hold real numbers (bool, int or float), got dtype {data.dtype}"
                            + ("; keep the real part with x.real, or the magnitude with abs(x)"
                               if data.dtype.kind == "c" else "; convert text and objects to numbers first"))
        if requires_grad and not backend.is_float_dtype(data.dtype):
            raise TypeError(f"Tensor: only floating point tensors can require gradients, got dtype {data.dtype}")
        self.data, self.requires_grad = data, bool(requires_grad)

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
                if ig is not None and tensor.requires_grad:
                    if debug.enabled:
                        debug.check_finite(ig, f"the gradient of input {i}", f"{type(ctx).__name__}.backward")
                    ig, key = unbroadcast(ig, tensor.shape), id(tensor)
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

    inputs: tuple[Tensor, ...] = ()  # the input tensors, kept by a recorded call only
    needs_input_grad: tuple[bool, ...] = ()

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
        if record:  # otherwise fn, and what forward saved on it, is freed when apply returns
            fn.inputs = tensors
            fn.checksums = [_checksum(t.data) for t in tensors] if debug.enabled else None
            out._ctx = fn
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


def tensor(data, requires_grad: bool = False, device: str | None = None, dtype=None) -> Tensor:
    """Build a Tensor from a numpy/cupy array, list or number.

    Python floats become float32 (the package default); arrays keep their dtype
    unless `dtype` is given. `device` is "cpu" or "cuda" (default: where the data is).
    """
    data = data.data if isinstance(data, Tensor) else data
    return Tensor(backend.as_array(data, dtype=dtype, device=device), requires_grad=requires_grad)


from . import operators  # noqa: E402  last: it gives Tensor its operators (+, *, @, sum, ...)
