"""The cases an exercise is checked on: a few small, fixed and labelled problems per exercise.

``tx.exercises.check(NAME)``, ``python -m tinyxception exercises`` and the per-exercise tests
(``pytest --exercises -m ex_NAME``) all run these. Each case names what it exercises (no padding, padding on one
side only, stride 2, a non-square kernel, ties, float32, ...), so that the first failing case tells a learner
which idea their kernel gets wrong. A kernel is compared with the reference tier's solution of the same name:
same shape, same dtype, values within a tolerance of the dtype; and for topological_order, which has many right
answers, the property itself (each tensor once, after its inputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import backend
from .autograd import tensor
from .kernels import tier
from .kernels.geometry import output_size

np = backend.cpu_module()
OUTPUTS = {"depthwise_conv2d_backward": ("dL/dx", "dL/dw"), "pointwise_conv2d_backward": ("dL/dx", "dL/dw"),
           "batch_norm_backward": ("dL/dx", "dL/dgamma", "dL/dbeta")}
"""exercise -> the names of the arrays it returns, for the messages (which gradient is wrong)."""
TOLERANCE = {"float64": (1e-8, 1e-10), "float32": (1e-4, 1e-5)}
"""dtype -> (rtol, atol) of the comparison with the reference."""


@dataclass(frozen=True)
class Case:
    """One labelled problem: ``arguments()`` are the same arrays at every call (a fixed seed)."""

    label: str
    make: Callable

    def arguments(self) -> tuple:
        """The case's arguments, made afresh (a learner's kernel may write into its inputs)."""
        return self.make(np.random.default_rng(0))


def _normal(rng, shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)


def _conv_case(title, backward, x_shape, kernel=None, stride=1, pads=((0, 0), (0, 0)), dtype="float64"):
    """A depthwise case (with a kernel) or a pointwise one (kernel None, C_out = C_in + 1)."""
    c = x_shape[1]
    w_shape = (c, 1, *kernel) if kernel else (c + 1, c, 1, 1)
    out = (c, *output_size(x_shape, kernel, stride, pads)) if kernel else (c + 1, *x_shape[2:])
    extra = (stride, pads) if kernel else ()
    label = f"{title}: x {x_shape} {dtype}, w {w_shape}" + (f", stride {stride}, pads {pads}" if kernel else "")

    def make(rng):
        x, w = _normal(rng, x_shape, dtype), _normal(rng, w_shape, dtype)
        return (_normal(rng, (x_shape[0], *out), dtype),) * backward + (x, w, *extra)
    return Case(label, make)


def _depthwise_cases(backward):
    return [_conv_case(*spec[:1], backward, *spec[1:]) for spec in (
        ("no padding", (2, 3, 5, 5), (3, 3)),
        ("padding on all sides", (1, 2, 6, 5), (3, 3), 1, ((1, 1), (1, 1))),
        ("padding at the bottom and right only", (1, 2, 6, 6), (3, 3), 1, ((0, 1), (0, 1))),
        ("stride 2", (2, 3, 7, 6), (3, 3), 2, ((0, 1), (1, 1))),
        ("non-square kernel", (1, 2, 5, 6), (2, 3), 1, ((0, 0), (1, 1))),
        ("float32", (2, 2, 6, 6), (3, 3), 2, ((1, 1), (1, 1)), "float32"))]


def _pointwise_cases(backward):
    return [_conv_case(title, backward, shape, dtype=dtype) for title, shape, dtype in (
        ("one image", (1, 3, 4, 4), "float64"), ("two images, non-square", (2, 4, 3, 5), "float64"),
        ("float32", (2, 3, 2, 3), "float32"))]


def _batch_norm_case(title, shape, dtype="float64"):
    def make(rng):
        x = _normal(rng, shape, dtype) * 2 + 1
        axes = (0,) + tuple(range(2, len(shape)))
        inv_std = (1 / np.sqrt(x.var(axis=axes) + 1e-3)).astype(dtype)
        return (_normal(rng, shape, dtype), x, x.mean(axis=axes), inv_std, _normal(rng, shape[1:2], dtype))
    return Case(f"{title}: x {shape} {dtype} (mean and inv_std of this batch, eps 1e-3)", make)


def _max_pool_case(title, shape, kernel, stride, pads, ties=False, dtype="float64"):
    def make(rng):
        x = rng.integers(0, 4, size=shape).astype(dtype) if ties else _normal(rng, shape, dtype)
        y = tier("reference")["max_pool2d_forward"](x, kernel, stride, pads)
        return (_normal(rng, y.shape, dtype), x, y, kernel, stride, pads)
    return Case(f"{title}: x {shape} {dtype}, kernel {kernel}, stride {stride}, pads {pads}", make)


def _graph_case(title, depth=1):
    """A graph with a tensor used twice, a branch that needs no gradient, and a chain `depth` ops long."""
    def make(rng):
        a = tensor(rng.standard_normal((3,)), requires_grad=True)
        b = tensor(rng.standard_normal((3,)), requires_grad=True)
        c = a * b + a
        for _ in range(depth - 1):
            c = c + a
        return ((c * tensor(rng.standard_normal((3,))) - b).sum(),)
    return Case(title, make)


CASES: dict[str, list[Case]] = {
    "topological_order": [_graph_case("a tensor used twice (c = a * b + a) and a branch without gradient"),
                          _graph_case("a chain of 2000 ops (deeper than Python's recursion limit)", 2000)],
    "depthwise_conv2d_forward": _depthwise_cases(backward=False),
    "depthwise_conv2d_backward": _depthwise_cases(backward=True),
    "pointwise_conv2d_forward": _pointwise_cases(backward=False),
    "pointwise_conv2d_backward": _pointwise_cases(backward=True),
    "batch_norm_backward": [_batch_norm_case("images", (4, 3, 2, 5)), _batch_norm_case("features", (8, 3)),
                            _batch_norm_case("float32", (4, 2, 3, 3), "float32")],
    "max_pool2d_backward": [
        _max_pool_case("no ties", (2, 3, 7, 7), (3, 3), 2, ((1, 1), (1, 1))),
        _max_pool_case("ties (few distinct values)", (2, 3, 6, 7), (3, 3), 2, ((0, 1), (1, 1)), ties=True),
        _max_pool_case("overlapping windows, stride 1", (1, 2, 5, 5), (3, 3), 1, ((1, 1), (1, 1))),
        _max_pool_case("padding at the bottom and right only", (1, 2, 6, 6), (3, 3), 2, ((0, 1), (0, 1))),
        _max_pool_case("float32", (1, 2, 5, 5), (2, 2), 2, ((0, 1), (0, 1)), dtype="float32")],
    "global_avg_pool2d_backward": [Case(f"x {shape} {dtype}", lambda rng, s=shape, d=dtype: (_normal(rng, s[:2], d), s))
                                   for shape, dtype in (((2, 3, 4, 5), "float64"), ((1, 2, 1, 1), "float64"),
                                                        ((2, 2, 3, 3), "float32"))],
}
"""exercise name -> its cases, simplest first."""


def _order_problem(order, root) -> str | None:
    """Why `order` is not a topological order of the graph behind `root` (None when it is one)."""
    expected = {id(t) for t in tier("reference")["topological_order"](root)}
    ids = [id(t) for t in order]
    if len(ids) != len(set(ids)) or set(ids) != expected:
        return f"expected each of the {len(expected)} tensors that need a gradient once, got {len(ids)} entries"
    position = {key: k for k, key in enumerate(ids)}
    for t in order:
        if t._ctx is not None and any(position.get(id(i), -1) > position[id(t)] for i in t._ctx.inputs):
            return "a tensor comes before one of its inputs"
    return None


def difference(result, expected, names=()) -> str | None:
    """Why `result` differs from `expected` (an array or a tuple of arrays named `names`), or None: the shape,
    the dtype, or the largest difference with its index and both values."""
    if isinstance(expected, tuple):
        names = names or [f"item {k}" for k in range(len(expected))]
        if not isinstance(result, (tuple, list)) or len(result) != len(expected):
            return f"expected a tuple of {len(expected)} arrays ({', '.join(names)}), got {type(result).__name__}"
        return next((f"{n}: {why}" for n, r, e in zip(names, result, expected) if (why := difference(r, e))), None)
    result, expected = np.asarray(backend.asnumpy(result)), backend.asnumpy(expected)
    if result.shape != expected.shape:
        return f"shape {result.shape}, expected {expected.shape}"
    if result.dtype != expected.dtype:
        return f"dtype {result.dtype}, expected {expected.dtype}"
    rtol, atol = TOLERANCE.get(str(expected.dtype), TOLERANCE["float64"])
    if np.allclose(result, expected, rtol=rtol, atol=atol):
        return None
    error = np.nan_to_num(np.abs(result.astype("float64") - expected), nan=np.inf)
    where = np.unravel_index(np.argmax(error), error.shape)
    return (f"values differ by up to {error[where]:.3g} at index {tuple(int(k) for k in where)}: "
            f"yours {result[where]:.6g}, expected {expected[where]:.6g}")


def case_failure(name: str, function, case: Case) -> str | None:
    """Why `function` (a kernel named `name`) fails `case`, or None when it passes. Errors propagate."""
    arguments = case.arguments()
    result = function(*arguments)
    if name == "topological_order":
        return _order_problem(result, *arguments)
    return difference(result, tier("reference")[name](*case.arguments()), OUTPUTS.get(name, ()))
