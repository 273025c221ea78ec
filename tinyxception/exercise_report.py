"""``python -m tinyxception exercises``: each exercise of the learner mode as pass / fail / not started.

Every exercise is run on a small float64 problem (fixed seed) next to the library's reference solution:
"not started" when the learner's function still raises NotImplementedError, "pass" when the results agree
to 1e-8, "fail" with the reason otherwise. This is a quick first check; the chapter tests
(``pytest --exercises -m <chapter>``) try many more shapes, strides and paddings.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import backend
from .autograd import tensor
from .checks import window_geometry
from .exercise_mode import EXERCISES, PACKAGE_FOLDER, learner_function, reference
from .functional import max_pool2d
from .kernels.geometry import output_size

np = backend.cpu_module()


def _depthwise_problem(rng, backward):
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 1, 3, 3))
    stride, pads = 2, ((0, 1), (1, 1))
    if not backward:
        return (x, w, stride, pads)
    return (rng.standard_normal((2, 3) + output_size(x.shape, (3, 3), stride, pads)), x, w, stride, pads)


def _pointwise_problem(rng, backward):
    x, w = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((3, 4, 1, 1))
    return (rng.standard_normal((2, 3, 3, 5)), x, w) if backward else (x, w)


def _batch_norm_problem(rng):
    x = rng.standard_normal((4, 3, 2, 5)) * 2 + 1
    mean = x.mean(axis=(0, 2, 3))
    inv_std = 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-3)
    return (rng.standard_normal(x.shape), x, mean, inv_std, rng.standard_normal(3))


def _max_pool_problem(rng):
    x = rng.integers(0, 4, size=(2, 3, 6, 7)).astype(np.float64)  # few distinct values: many ties
    pads, _ = window_geometry(x.shape, (3, 3), 2, "same", "max_pool2d")
    y = max_pool2d(tensor(x), 3, 2, "same").data
    return (rng.standard_normal(y.shape), x, y, (3, 3), 2, pads)


def _graph_problem(rng):
    """A small graph with a tensor used twice and a branch that needs no gradient."""
    a = tensor(rng.standard_normal((3,)), requires_grad=True)
    b = tensor(rng.standard_normal((3,)), requires_grad=True)
    c = a * b + a
    d = (c * tensor(rng.standard_normal((3,))) - b).sum()
    return (d,)


PROBLEMS = {
    "topological_order": _graph_problem,
    "depthwise_conv2d_forward": lambda rng: _depthwise_problem(rng, backward=False),
    "depthwise_conv2d_backward": lambda rng: _depthwise_problem(rng, backward=True),
    "pointwise_conv2d_forward": lambda rng: _pointwise_problem(rng, backward=False),
    "pointwise_conv2d_backward": lambda rng: _pointwise_problem(rng, backward=True),
    "batch_norm_backward": _batch_norm_problem,
    "max_pool2d_backward": _max_pool_problem,
    "global_avg_pool2d_backward": lambda rng: (rng.standard_normal((2, 3)), (2, 3, 4, 5)),
}
"""exercise name -> a function of a numpy Generator giving the arguments of one small problem."""


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


def _difference(result, expected) -> str | None:
    """Why `result` differs from `expected` (arrays or tuples of arrays), or None when they agree."""
    if isinstance(expected, tuple):
        if not isinstance(result, tuple) or len(result) != len(expected):
            return f"expected a tuple of {len(expected)} arrays, got {type(result).__name__}"
        reasons = [_difference(r, e) for r, e in zip(result, expected)]
        return next((f"item {k}: {why}" for k, why in enumerate(reasons) if why), None)
    result = backend.asnumpy(result)
    if result.shape != expected.shape:
        return f"shape {result.shape}, expected {expected.shape}"
    if not np.allclose(result, expected, rtol=1e-8, atol=1e-10):
        return f"values differ by up to {np.max(np.abs(result - expected)):.3g}"
    return None


def check_exercise(name: str, folder=PACKAGE_FOLDER) -> tuple[str, str]:
    """("pass" | "fail" | "not started", detail) for the learner's `name` in `folder`."""
    args = PROBLEMS[name](np.random.default_rng(0))
    try:
        result = learner_function(name, Path(folder))(*args)
    except NotImplementedError:
        return "not started", ""
    except Exception as err:  # a learner's bug of any kind is a "fail" with its message, not a crash
        return "fail", f"{type(err).__name__}: {err}"
    why = _order_problem(result, *args) if name == "topological_order" else \
        _difference(result, reference(name)(*args))
    return ("fail", why) if why else ("pass", "")


def report(folder=PACKAGE_FOLDER) -> list[tuple[str, str, str, str]]:
    """(chapter, exercise, status, detail) for every exercise, in the order of the chapters."""
    rows = [(e.chapter, name, *check_exercise(name, folder)) for name, e in EXERCISES.items()]
    return sorted(rows, key=lambda row: row[0])


def add_exercise_arguments(parser) -> None:
    """Options of ``python -m tinyxception exercises``."""
    parser.add_argument("--folder", default=str(PACKAGE_FOLDER), metavar="PATH",
                        help="the folder of your kernels (default: the package's tinyxception/exercises/)")


def run_exercises(args) -> int:
    """Print the report; exit code 0 (it is a progress report), or 2 when the folder does not exist."""
    if not Path(args.folder).is_dir():
        print(f"python -m tinyxception exercises: no such folder: {args.folder}", file=sys.stderr)
        return 2
    rows = report(args.folder)
    done = sum(status == "pass" for _, _, status, _ in rows)
    print(f"exercises in {args.folder}: {done} of {len(rows)} pass\n")
    print(f"  {'chapter':<15}{'exercise':<29}status")
    for chapter, name, status, detail in rows:
        print(f"  {chapter:<15}{name:<29}{status}{': ' + detail if detail else ''}")
    todo = next((chapter for chapter, _, status, _ in rows if status != "pass"), None)
    if todo:
        option = "--exercises" if Path(args.folder) == PACKAGE_FOLDER else f"--exercises-dir={args.folder}"
        print(f"\nnext: read the stub's docstring, then run  pytest {option} -m {todo}")
    return 0
