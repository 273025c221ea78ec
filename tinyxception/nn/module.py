"""Module, Parameter and Sequential: how layers hold their weights and find each other.

A ``Module`` notices what is assigned to it: ``self.weight = Parameter(...)`` registers a
trainable tensor, ``self.conv = Conv2d(...)`` a submodule, and ``register_buffer`` a plain
array that is part of the state but not trained (BatchNorm's running statistics). Everything
is kept in assignment order, so ``named_parameters()`` and ``state_dict()`` list a network
in the order its layers were built, with dotted names such as
``entry_flow.block2.sepconv1.depthwise.weight``.
"""
import contextlib
from collections.abc import Mapping

from .. import backend
from ..autograd import Tensor

_forward_hooks = []  # called as hook(module, output) after every Module call; see forward_hook()


@contextlib.contextmanager
def forward_hook(hook):
    """Inside this block every ``module(x)`` call ends with ``hook(module, output)``.

    ``tinyxception.summary`` uses it to record each layer's output shape; outside the
    block ``__call__`` is just ``forward``.
    """
    _forward_hooks.append(hook)
    try:
        yield
    finally:
        _forward_hooks.remove(hook)


class Parameter(Tensor):
    """A Tensor that a Module trains: it always requires gradients."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device!r})"


def listing(title: str, items: list[str], shown: int = 2) -> str:
    """'title (2): a, b', or 'title (40): a, b and 38 more' for a long list (a message stays a few lines)."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return f"{title} ({len(items)}): {', '.join(items[:shown])}{more}"


def check_module(model, who: str) -> None:
    """TypeError unless model is a Module (something with parameters and a state dict), e.g. tx.Xception()."""
    if not isinstance(model, Module):
        raise TypeError(f"{who}: model must be a tinyxception Module such as tx.Xception(), got {type(model).__name__}")


class Module:
    """Base class of every layer and network: subclasses set attributes in ``__init__`` and write ``forward``."""

    def __init__(self):
        self.__dict__.update(_parameters={}, _buffers={}, _modules={}, training=True)

    # --- registration -------------------------------------------------------
    def __setattr__(self, name, value):
        """Parameters, submodules and (already registered) buffers go to their registry, anything else is a plain
        attribute; a name lives in one place only, so assigning over an entry of another kind replaces it."""
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._parameters and not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__}.{name} is a Parameter; assign a Parameter, "
                            f"or change its values with .data, got {type(value).__name__}")
        kinds = ((self._parameters, isinstance(value, Parameter)), (self._modules, isinstance(value, Module)),
                 (self._buffers, name in self._buffers))
        registry = next((registry for registry, chosen in kinds if chosen), None)
        for other in (self._parameters, self._buffers, self._modules):
            if other is not registry:
                other.pop(name, None)
        if registry is None:  # through object: also Python's own attributes (``__class__``), properties
            object.__setattr__(self, name, value)
        else:
            self.__dict__.pop(name, None)
            registry[name] = value

    def __getattr__(self, name):  # only called when normal lookup fails
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, {}):
                return self.__dict__[registry][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Keep `array` as state that is saved and moved with the module but not trained."""
        if not hasattr(array, "dtype") or isinstance(array, Tensor):
            raise TypeError(f"{type(self).__name__}.{name}: a buffer must be a numpy/cupy array, got {type(array)}")
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    # --- running ------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The computation; every subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in _forward_hooks:
            hook(self, out)
        return out

    def multiply_adds(self, output_shape) -> int:
        """Multiply-adds this layer spends to produce an output of `output_shape` (0 unless it multiplies)."""
        return 0

    def train(self, mode: bool = True) -> "Module":
        """Training mode for this module and all below it (BatchNorm uses batch statistics, dropout drops)."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: BatchNorm uses its running statistics, dropout is the identity."""
        return self.train(False)

    # --- walking the tree ---------------------------------------------------
    def named_children(self):
        """(name, module) for the direct submodules, in assignment order."""
        return iter(self._modules.items())

    def children(self):
        """The direct submodules, in assignment order."""
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module ("" for itself) and every module below it, depth first."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            stack.extend(reversed([(f"{name}.{child}" if name else child, sub)
                                   for child, sub in module._modules.items()]))

    def modules(self):
        """This module and every module below it."""
        return (module for _, module in self.named_modules())

    def _named(self, *registries: str):
        """(dotted name, value) for the entries of the given registries of every module, module by module."""
        for prefix, module in self.named_modules():
            for registry in registries:
                for name, value in getattr(module, registry).items():
                    yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self):
        """(dotted name, Parameter) for every trainable tensor; a Parameter shared by two layers is listed once."""
        seen = set()
        for name, p in self._named("_parameters"):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self):
        """Every trainable Parameter once, in the order the layers were built (what an optimizer updates)."""
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        """(dotted name, array) for the non-trained state (BatchNorm running mean and variance)."""
        return self._named("_buffers")

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters."""
        for p in self.parameters():
            p.grad = None

    # --- state ----------------------------------------------------------------
    def _state(self) -> dict:
        """{dotted name: array} of every parameter's data and buffer, module by module (the arrays themselves)."""
        return {name: value.data if isinstance(value, Parameter) else value
                for name, value in self._named("_parameters", "_buffers")}

    def state_dict(self) -> dict:
        """{dotted name: array} for all parameters and buffers, as COPIES on the module's device.

        Copies, so a saved state does not change when training goes on; ``tx.save`` writes it.
        """
        return {name: array.copy() for name, array in self._state().items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy every array of `state` into the matching parameter or buffer, in place.

        Refuses (ValueError) when keys are missing or unexpected, or a shape or dtype differs, with
        a message listing every problem; everything is checked before anything is written, so a
        refused call leaves the module exactly as it was. Arrays may be NumPy or CuPy (or Tensors);
        they are copied to the device each entry lives on.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"{type(self).__name__}.load_state_dict: state must be a dict {{name: array}} as "
                            f"state_dict() returns, got {type(state).__name__}")
        entries = self._state()
        given = {name: (value.data if isinstance(value, Tensor) else value) for name, value in state.items()}
        mismatched = []
        for name, value in given.items():
            target = entries.get(name)
            if target is not None and not (hasattr(value, "shape") and hasattr(value, "dtype")):
                mismatched.append(f"{name} (expected an array, got {type(value).__name__})")
            elif target is not None and (tuple(value.shape), value.dtype) != (target.shape, target.dtype):
                mismatched.append(f"{name} (expected {target.shape} {target.dtype}, "
                                  f"got {tuple(value.shape)} {value.dtype})")
        problems = [listing(title, items) for title, items in
                    (("missing keys", [name for name in entries if name not in given]),
                     ("unexpected keys", [name for name in given if name not in entries]),
                     ("shape/dtype mismatches", mismatched)) if items]
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict refused, nothing was changed:\n  "
                             + "\n  ".join(problems))
        for name, target in entries.items():
            target[...] = backend.to_device(given[name], backend.device_of(target))

    # --- moving ---------------------------------------------------------------
    def _convert(self, fn) -> "Module":
        """Replace every parameter's data (and grad) and every buffer by fn(array); Parameters stay the same objects."""
        for module in self.modules():
            for p in module._parameters.values():
                p.data = fn(p.data)
                p.grad = None if p.grad is None else fn(p.grad)
            for name, array in module._buffers.items():
                module._buffers[name] = fn(array)
        return self

    def to(self, device: str) -> "Module":
        """Move all parameters and buffers to "cpu" or "cuda", in place; returns the module."""
        backend.check_device(device)
        return self._convert(lambda a: backend.to_device(a, device))

    def astype(self, dtype) -> "Module":
        """Convert all parameters and buffers to a floating dtype (e.g. "float64" for gradient checks), in place."""
        if not backend.is_float_dtype(dtype):
            raise TypeError(f"{type(self).__name__}.astype: dtype must be float16, float32 or float64, got {dtype!r}")
        return self._convert(lambda a: a.astype(dtype))

    # --- printing -------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's settings, shown inside the parentheses of its repr."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        lines = [f"  {name}: {module!r}".replace("\n", "\n  ") for name, module in self._modules.items()]
        return "\n".join([f"{type(self).__name__}("] + ([f"  {extra}"] if extra else []) + lines + [")"])


class Sequential(Module):
    """Modules applied one after another: ``Sequential(a, b)`` (named "0", "1") or ``Sequential(stem=a, head=b)``."""

    def __init__(self, *modules: Module, **named_modules: Module):
        super().__init__()
        if modules and named_modules:
            raise TypeError("Sequential takes modules either by position or by name, not both")
        for name, module in list(enumerate(modules)) + list(named_modules.items()):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: entry {name!r} is a {type(module).__name__}, not a Module")
            setattr(self, str(name), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]
