"""The cases an exercise is checked on: a few small, fixed and labelled problems per exercise.

``tx.exercises.check(NAME)``, ``python -m tinyxception exercises`` and the per-exercise tests
(``pytest --exercises -m ex_NAME``) all run these. Each case names what it exercises (no padding, padding on one
side only, stride 2, a non-square kernel, ties, float32, ...), so that the first failing case tells a learner
which idea their kernel gets wrong. A kernel is compared with the reference tier's solution of the same name:
same shape, same dtype, values within a tolerance of the dtype; for topological_order, which has many right
answers, the property itself (each tensor once, after its inputs); and for middle_flow_block and down_block, which
return modules, their parameter shapes and, with the library block's weights copied in, their outputs.
"""
from dataclasses import dataclass
from typing import Callable

from . import backend
from .autograd import tensor
from .kernels.learner import reference
from .kernels.geometry import output_size
from .nn import Module

np = backend.cpu_module()
OUTPUTS = {**dict.fromkeys(("depthwise_conv2d_backward", "pointwise_conv2d_backward", "conv2d_backward"),
                           ("dL/dx", "dL/dw")), "batch_norm_backward": ("dL/dx", "dL/dgamma", "dL/dbeta"),
           "batch_norm_forward": ("y", "mean", "inv_std", "running_mean (updated in place)",
                                  "running_var (updated in place)"), "linear_backward": ("dL/dx", "dL/dw", "dL/db"),
           "softmax_cross_entropy_forward": ("loss", "log_p"),
           "sgd_momentum_step": ("velocity", "p (updated in place)")}
"""exercise -> the names of the arrays it returns, then of those it updates in place, for the messages."""
UPDATED = {"batch_norm_forward": (3, 4), "sgd_momentum_step": (0,)}
"""exercise -> the positions of the arguments it updates in place (compared with the reference's after the call)."""
BLOCK_SIDE = {"middle_flow_block": 5, "down_block": 6}
"""block exercise -> the side of the images it is checked on."""
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


def _conv_case(title, backward, x_shape, kernel=None, stride=1, pads=((0, 0), (0, 0)), dtype="float64",
               groups=None):
    """A depthwise case (a kernel), a pointwise one (no kernel, C_out = C_in + 1) or a grouped one (a kernel and
    `groups`, C_out = 2 C_in)."""
    c = x_shape[1]
    c_out = c + 1 if kernel is None else 2 * c if groups else c
    w_shape = (c_out, c, 1, 1) if kernel is None else (c_out, c // (groups or c), *kernel)
    out = (c_out, *(output_size(x_shape, kernel, stride, pads) if kernel else x_shape[2:]))
    extra = () if kernel is None else (stride, pads) + ((groups,) if groups else ())
    label = f"{title}: x {x_shape} {dtype}, w {w_shape}" + (f", stride {stride}, pads {pads}" if kernel else "") \
        + (f", groups {groups}" if groups else "")

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


def _grouped_cases(backward):
    return [_conv_case(title, backward, shape, kernel, stride, pads, dtype, groups)
            for title, shape, kernel, stride, pads, groups, dtype in (
        ("regular conv (groups 1)", (2, 3, 5, 5), (3, 3), 1, ((0, 0), (0, 0)), 1, "float64"),
        ("2 groups", (1, 4, 5, 6), (3, 3), 1, ((1, 1), (1, 1)), 2, "float64"),
        ("one group per channel", (1, 3, 5, 5), (3, 3), 1, ((1, 1), (1, 1)), 3, "float64"),
        ("padding at the bottom and right only", (1, 4, 6, 6), (3, 3), 1, ((0, 1), (0, 1)), 2, "float64"),
        ("stride 2", (2, 4, 7, 6), (3, 3), 2, ((0, 1), (1, 1)), 2, "float64"),
        ("non-square kernel", (1, 2, 5, 6), (2, 3), 1, ((0, 0), (1, 1)), 1, "float64"),
        ("float32", (2, 4, 6, 6), (3, 3), 2, ((1, 1), (1, 1)), 2, "float32"))]


def _pointwise_cases(backward):
    return [_conv_case(title, backward, shape, dtype=dtype) for title, shape, dtype in (
        ("one image", (1, 3, 4, 4), "float64"), ("two images, non-square", (2, 4, 3, 5), "float64"),
        ("float32", (2, 3, 2, 3), "float32"))]


_BATCH_NORM = {"forward": "momentum 0.1, eps 1e-3", "backward": "mean and inv_std of this batch, eps 1e-3",
               "inference_forward": "running statistics unlike the batch's, eps 1e-3"}


def _batch_norm_cases(kind):
    """Batch-norm cases of a `kind` of _BATCH_NORM: the arguments of that kernel."""
    def case(title, shape, dtype="float64"):
        def make(rng):
            x = _normal(rng, shape, dtype) * 2 + 1
            gamma, beta, mean = (_normal(rng, shape[1:2], dtype) for _ in range(3))
            running = (mean, rng.uniform(0.5, 2, shape[1:2]).astype(dtype))
            if kind != "backward":
                return (x, gamma, beta, *running) + ((0.1,) if kind == "forward" else ()) + (1e-3,)
            axes = (0,) + tuple(range(2, len(shape)))
            inv_std = (1 / np.sqrt(x.var(axis=axes) + 1e-3)).astype(dtype)
            return _normal(rng, shape, dtype), x, x.mean(axis=axes), inv_std, gamma
        return Case(f"{title}: x {shape} {dtype} ({_BATCH_NORM[kind]})", make)
    return [case("images", (4, 3, 2, 5)), case("features", (8, 3)), case("float32", (4, 2, 3, 3), "float32")]


def _max_pool_case(backward, title, shape, kernel, stride, pads, values="normal", dtype="float64"):
    """A max-pool case; `values` "normal", "ties" (the integers 0..3) or "negative" (all below zero)."""
    def make(rng):
        x = rng.integers(0, 4, size=shape).astype(dtype) if values == "ties" else _normal(rng, shape, dtype)
        x = x - 10 if values == "negative" else x
        if not backward:
            return x, kernel, stride, pads
        y = reference("max_pool2d_forward")(x, kernel, stride, pads)
        return (_normal(rng, y.shape, dtype), x, y, kernel, stride, pads)
    return Case(f"{title}: x {shape} {dtype}, kernel {kernel}, stride {stride}, pads {pads}", make)


def _max_pool_cases(backward):
    first = [("no ties", (2, 3, 7, 7), (3, 3), 2, ((1, 1), (1, 1)))] if backward else [
        ("no padding", (2, 3, 6, 6), (2, 2), 2, ((0, 0), (0, 0))),
        ("all inputs negative, padded (pad with -inf, not 0)", (1, 2, 5, 6), (3, 2), 2, ((1, 1), (0, 1)), "negative")]
    return [_max_pool_case(backward, *spec) for spec in first + [
        ("ties (few distinct values)", (2, 3, 6, 7), (3, 3), 2, ((0, 1), (1, 1)), "ties"),
        ("overlapping windows, stride 1", (1, 2, 5, 5), (3, 3), 1, ((1, 1), (1, 1))),
        ("padding at the bottom and right only", (1, 2, 6, 6), (3, 3), 2, ((0, 1), (0, 1))),
        ("float32", (1, 2, 5, 5), (2, 2), 2, ((0, 1), (0, 1)), "normal", "float32")]]


def _relu_cases(backward):
    def case(title, shape, dtype="float64"):
        def make(rng):
            x = np.round(_normal(rng, shape, dtype), 1)  # rounded: some inputs are exactly 0
            return (_normal(rng, shape, dtype), np.maximum(x, 0)) if backward else (x,)
        return Case(f"{title}: x {shape} {dtype}, some x exactly 0" + ", y = relu(x)" * backward, make)
    return [case("features", (4, 6)), case("images", (2, 3, 4, 4)), case("float32", (3, 5), "float32")]


def _linear_cases(backward):
    def case(title, n, bias=True, dtype="float64"):
        def make(rng):
            x, w, b = _normal(rng, (n, 4), dtype), _normal(rng, (3, 4), dtype), _normal(rng, (3,), dtype)
            return (_normal(rng, (n, 3), dtype), x, w) if backward else (x, w, b if bias else None)
        return Case(f"{title}: x ({n}, 4) {dtype}, w (3, 4)" + f", b {(3,) if bias else None}" * (not backward), make)
    return [case("one sample", 1), case("a batch of 5", 5)] + [case("no bias (b None)", 5, False)] * (not backward) \
        + [case("float32", 2, dtype="float32")]


def _softmax_cases(backward):
    def case(title, n, k, scale=1.0, dtype="float64"):
        def make(rng):
            logits, labels = _normal(rng, (n, k), dtype) * scale, rng.integers(0, k, n)
            if not backward:
                return logits, labels
            log_p = reference("softmax_cross_entropy_forward")(logits, labels)[1]
            return np.asarray(rng.uniform(0.5, 2), dtype), log_p, labels
        return Case(f"{title}: logits ({n}, {k}) {dtype}" + f" times {scale:g}" * (scale != 1), make)
    return [case("one sample", 1, 3), case("a batch of 6", 6, 4),
            case("large logits (subtract the row max)", 4, 5, 1e4), case("float32", 3, 4, dtype="float32")]


def _average_cases(backward):
    def case(shape, dtype="float64"):
        return Case(f"x {shape} {dtype}", lambda rng: (_normal(rng, shape[:2], dtype), shape) if backward
                    else (_normal(rng, shape, dtype),))
    return [case((2, 3, 4, 5)), case((1, 2, 1, 1)), case((2, 2, 3, 3), "float32")]


def _sgd_cases():
    def case(title, later=True, nesterov=False, dtype="float64"):
        def make(rng):
            p, g, v = (_normal(rng, (3, 4), dtype) for _ in range(3))
            return p, g, v if later else None, 0.1, 0.9, nesterov
        return Case(f"{title}: p (3, 4) {dtype}, lr 0.1, momentum 0.9, velocity {'(3, 4)' if later else None}, "
                    f"nesterov {nesterov}", make)
    return [case("the first step (velocity None, so v = g)", later=False), case("a later step"),
            case("Nesterov, a later step", nesterov=True), case("float32", dtype="float32")]


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
    **{f"{op}_{kind}": cases(kind == "backward") for op, cases in (
        ("depthwise_conv2d", _depthwise_cases), ("pointwise_conv2d", _pointwise_cases), ("conv2d", _grouped_cases),
        ("max_pool2d", _max_pool_cases), ("global_avg_pool2d", _average_cases), ("relu", _relu_cases),
        ("linear", _linear_cases), ("softmax_cross_entropy", _softmax_cases)) for kind in ("forward", "backward")},
    **{f"batch_norm_{kind}": _batch_norm_cases(kind) for kind in ("forward", "inference_forward", "backward")},
    "sgd_momentum_step": _sgd_cases(),
    "middle_flow_block": [Case(f"{c} channels, x (2, {c}, 5, 5) float32, train then eval mode",
                               lambda rng, c=c: (c, rng)) for c in (4, 7)],
    "down_block": [Case(f"{title}, 3 -> 5 -> 6 channels, x (2, 3, 6, 6) float32 (the \"same\" pool pads the bottom "
                        "and right only), train then eval mode", lambda rng, relu=relu: (3, 5, 6, rng, relu))
                   for title, relu in (("block 2: leading_relu False", False), ("leading_relu True", True))],
}
"""exercise name -> its cases, simplest first."""


def _order_problem(order, root) -> str | None:
    """Why `order` is not a topological order of the graph behind `root` (None when it is one)."""
    expected = {id(t) for t in reference("topological_order")(root)}
    ids = [id(t) for t in order]
    if len(ids) != len(set(ids)) or set(ids) != expected:
        return f"expected each of the {len(expected)} tensors that need a gradient once, got {len(ids)} entries"
    position = {key: k for k, key in enumerate(ids)}
    for t in order:
        if t._ctx is not None and any(position.get(id(i), -1) > position[id(t)] for i in t._ctx.inputs):
            return "a tensor comes before one of its inputs"
    return None


def _block_problem(block, library, x_shape) -> str | None:
    """Why the learner's `block` is not the `library` block (None when it is): its parameter shapes in order,
    then, with the library block's parameters and buffers copied into it in order, its outputs on a small float32
    batch of `x_shape` in training mode and then in evaluation mode (with the running statistics that step left)."""
    if not isinstance(block, Module):
        return f"expected a tx.nn.Module, got {type(block).__name__}"
    shapes = [[tuple(p.shape) for p in module.parameters()] for module in (block, library)]
    if shapes[0] != shapes[1]:
        k = next((k for k, pair in enumerate(zip(*shapes)) if pair[0] != pair[1]), min(map(len, shapes)))
        names = [name for name, _ in library.named_parameters()][k:k + 3]
        return f"parameter shapes in order differ from parameter {k + 1} on: yours {shapes[0][k:k + 3]}, expected " \
               f"{shapes[1][k:k + 3]} (of {len(shapes[1])}; the library's {', '.join(names) or 'end there'})"
    for mine, given in zip(block.parameters(), library.parameters()):
        mine.data[...] = given.data
    for (_, mine), (_, given) in zip(block.named_buffers(), library.named_buffers()):
        mine[...] = given
    x = tensor(_normal(np.random.default_rng(1), x_shape, "float32"))
    for mode, training in (("train mode", True), ("eval mode, with the running statistics that step left", False)):
        outputs = [module.train(training)(x).data for module in (block, library)]
        if why := difference(*outputs):
            return f"{mode}: {why}"
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
    arguments, theirs = case.arguments(), case.arguments()
    result = function(*arguments)
    if name == "topological_order":  # many right orders: checked for the property itself
        return _order_problem(result, *arguments)
    if name in BLOCK_SIDE:  # a module, not arrays: compared with the library's block, built by the reference
        return _block_problem(result, reference(name)(*theirs), (2, theirs[0]) + (BLOCK_SIDE[name],) * 2)
    expected, updated = reference(name)(*theirs), UPDATED.get(name, ())
    if updated:  # what a kernel updates in place is part of its result
        result, expected = ((*(out if isinstance(out, (tuple, list)) else (out,)), *(given[k] for k in updated))
                            for out, given in ((result, arguments), (expected, theirs)))
    return difference(result, expected, OUTPUTS.get(name, ()))
