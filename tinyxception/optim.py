"""Optimisers, the paper's learning-rate schedule and Polyak (EMA) averaging.

The paper trains Xception two ways (Section 4.3):

* ImageNet: SGD, momentum 0.9, learning rate 0.045, decayed by 0.94 every 2 epochs;
* JFT: RMSProp, momentum 0.9, learning rate 0.001, decayed by 0.9 every 3,000,000 samples;

and evaluates both with Polyak averaging of the weights. Every optimiser here
changes ``p.data`` in place with the array module of that data, so the same
update runs on NumPy or CuPy and keeps the parameter's dtype (float32 stays
float32: the hyper-parameters are Python floats, which NumPy and CuPy treat as
"weak" scalars that never upcast an array).
"""
import contextlib
import math
from collections.abc import Iterable

from . import backend
from .autograd import Tensor
from .checks import check_int, check_number
from .kernels import active as kernels
from .nn import Module
from .nn.module import listing


def _parameter_list(params_or_model, who: str) -> list:
    """The parameters of a Module, or the given Tensors that require grad, as a list; else a TypeError (or a
    ValueError for none at all) starting with `who`."""
    params = params_or_model.parameters() if isinstance(params_or_model, Module) else params_or_model
    params = list(params) if isinstance(params, Iterable) and not isinstance(params, str) else [params]
    wrong = [type(p).__name__ for p in params if not (isinstance(p, Tensor) and p.requires_grad)]
    if wrong:
        raise TypeError(f"{who}: expected a Module or its parameters (Tensors that require grad, e.g. "
                        f"model.parameters()), got {listing('other values', wrong)}")
    if not params:
        raise ValueError(f"{who}: got an empty parameter list")
    return params


class Optimizer:
    """The shared loop: ``step()`` calls ``update`` once per parameter that has a gradient.

    Subclasses only write ``update(p, g, state)``: change the array ``p`` in place
    from its gradient ``g``, keeping whatever they need between steps in the dict
    ``state`` (one dict per parameter, e.g. a momentum buffer).
    """

    def __init__(self, params, lr: float):
        who = type(self).__name__
        self.lr = check_number(lr, f"{who}: lr (the learning rate)", 0, math.inf, "()")
        self.params = _parameter_list(params, who)
        self.state = [{} for _ in self.params]

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (backward accumulates into ``.grad``)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that received a gradient; parameters with ``grad is None`` are left alone."""
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p.data, p.grad, state)

    def update(self, p, g, state: dict) -> None:
        """Change the array ``p`` in place given its gradient ``g``."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    PyTorch's formulation (``torch.optim.SGD`` without dampening)::

        g = grad + weight_decay * p
        v = momentum * v + g                      (v starts at 0)
        p -= lr * (g + momentum * v)   if nesterov
        p -= lr * v                    otherwise

    The paper's ImageNet run: ``SGD(params, lr=0.045, momentum=0.9)`` with
    ``StepDecay(factor=0.94, every=2)`` and an L2 penalty of 1e-5 * sum(w**2), whose
    gradient is ``weight_decay=2e-5`` here.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = check_number(momentum, "SGD: momentum", 0, math.inf, "[)")
        self.weight_decay = check_number(weight_decay, "SGD: weight_decay", 0, math.inf, "[)")
        if nesterov and momentum <= 0:
            raise ValueError(f"SGD: nesterov momentum needs momentum > 0, got momentum={momentum}")
        self.nesterov = bool(nesterov)

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:  # the kernel sgd_momentum_step
            state["velocity"] = kernels.sgd_momentum_step(p, g, state.get("velocity"), self.lr, self.momentum,
                                                          self.nesterov)
        else:
            p -= self.lr * g


class RMSProp(Optimizer):
    """RMSProp with momentum as TensorFlow 1 wrote it (``tf.train.RMSPropOptimizer``), the paper's JFT optimiser::

        ms  = decay * ms + (1 - decay) * g**2     (ms starts at initial_ms = 1, as in TF 1)
        mom = momentum * mom + lr * g / sqrt(ms + eps)
        p  -= mom

    Two details differ from ``torch.optim.RMSprop``: ``eps`` sits inside the
    square root and ``ms`` starts at one, not zero. The paper does not state decay
    or eps; ``decay=0.9, eps=1.0`` are Inception V3's training settings (also
    TF-slim's defaults). With eps = 1 early steps are close to momentum SGD.
    With ``initial_ms=0`` and ``eps=0`` the update equals PyTorch's at a constant lr.
    """

    def __init__(self, params, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 initial_ms: float = 1.0):
        super().__init__(params, lr)
        self.decay = check_number(decay, "RMSProp: decay", 0, 1, "[)")
        self.momentum, self.eps, self.initial_ms = (check_number(value, f"RMSProp: {name}", 0, math.inf, "[)")
                                                    for name, value in
                                                    (("momentum", momentum), ("eps", eps), ("initial_ms", initial_ms)))

    def update(self, p, g, state):
        xp = backend.array_module(p)
        if "ms" not in state:
            state["ms"] = xp.full_like(p, self.initial_ms)
            state["mom"] = xp.zeros_like(p)
        ms, mom = state["ms"], state["mom"]
        ms *= self.decay
        ms += (1.0 - self.decay) * g * g
        mom *= self.momentum
        mom += self.lr * g / xp.sqrt(ms + self.eps)
        p -= mom


class StepDecay:
    """Multiply the learning rate by ``factor`` every ``every`` epochs (or steps).

    After ``t`` calls of ``step()``: ``lr = base_lr * factor ** (t // every)``.
    The paper's ImageNet schedule is ``StepDecay(opt, factor=0.94, every=2)``
    stepped once per epoch. ``unit`` tells ``train.fit`` when to call ``step()``:
    after each ``"epoch"`` or after each optimiser ``"step"`` (batch).
    """

    units = ("epoch", "step")

    def __init__(self, optimizer: Optimizer, factor: float = 0.94, every: int = 2, unit: str = "epoch"):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"StepDecay: optimizer must be an Optimizer such as SGD, got {type(optimizer).__name__}")
        self.factor = check_number(factor, "StepDecay: factor", 0, 1, "(]")
        check_int(every, "StepDecay: every")
        if unit not in self.units:
            raise ValueError(f"StepDecay: unit must be one of {self.units}, got {unit!r}")
        self.optimizer, self.every, self.unit = optimizer, int(every), unit
        self.base_lr = optimizer.lr
        self.count = 0

    @property
    def lr(self) -> float:
        """The learning rate after ``count`` calls of ``step()``."""
        return self.base_lr * self.factor ** (self.count // self.every)

    def step(self) -> float:
        """Count one epoch (or step), set the optimiser's learning rate and return it."""
        self.count += 1
        self.optimizer.lr = self.lr
        return self.optimizer.lr


class ExponentialMovingAverage:
    """Polyak averaging: an exponential moving average of the weights, used for evaluation.

    After each optimiser step call ``update()``::

        shadow = d * shadow + (1 - d) * p,    d = min(decay, (1 + t) / (10 + t))  with warmup
                                              d = decay                          without

    where ``t`` counts the updates made so far. The warm-up is TensorFlow's
    ``num_updates`` rule: with ``decay=0.9999`` and no warm-up the average would
    still be 90% initial weights after 1,000 steps, far too slow for a short run.
    Evaluate with the averaged weights inside ``with ema.averaged(): ...``, or with
    ``apply_to()`` ... ``restore()``. Only trainable parameters are averaged;
    BatchNorm running statistics are already averages and stay as they are.
    """

    def __init__(self, params_or_model, decay: float = 0.9999, warmup: bool = True):
        self.decay = check_number(decay, "ExponentialMovingAverage: decay", 0, 1, "[)")
        self.params = _parameter_list(params_or_model, "ExponentialMovingAverage")
        self.warmup = bool(warmup)
        self.shadow = [p.data.copy() for p in self.params]
        self.num_updates = 0
        self._backup = None

    def current_decay(self) -> float:
        """The decay the next ``update()`` uses."""
        t = self.num_updates
        return min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay

    def update(self) -> None:
        """Move every average towards its parameter's current value."""
        d = self.current_decay()
        for s, p in zip(self.shadow, self.params):
            s *= d
            s += (1.0 - d) * p.data
        self.num_updates += 1

    def apply_to(self, model=None) -> None:
        """Copy the averages into the parameters (of ``model``, default the tracked ones), keeping a backup."""
        if self._backup is not None:
            raise RuntimeError("averaged weights are already applied; call restore() first")
        params = self.params if model is None else _parameter_list(model, "ExponentialMovingAverage.apply_to")
        shapes = [tuple(p.data.shape) for p in params]
        if shapes != [tuple(s.shape) for s in self.shadow]:
            raise ValueError(f"the model's parameters do not match the averaged ones: {len(params)} parameters "
                             f"given, {len(self.shadow)} averaged, or their shapes differ")
        self._backup = (params, [p.data.copy() for p in params])
        for p, s in zip(params, self.shadow):
            p.data[...] = s

    def restore(self) -> None:
        """Put back the weights that ``apply_to`` replaced."""
        if self._backup is None:
            raise RuntimeError("restore() without apply_to(): nothing to restore")
        params, saved = self._backup
        for p, b in zip(params, saved):
            p.data[...] = b
        self._backup = None

    @contextlib.contextmanager
    def averaged(self, model=None):
        """``with ema.averaged(): evaluate(...)`` runs with the averaged weights, then restores the live ones."""
        self.apply_to(model)
        try:
            yield
        finally:
            self.restore()
