"""Each exercise's own tests: ``pytest --exercises -m ex_depthwise_conv2d_forward`` runs just these for it.

Every exercise has a marker ``ex_<name>`` (registered in tests/conftest.py from the exercise table) and its
chapter's marker. Its tests are the fixed, labelled cases that ``tx.exercises.check(NAME)`` runs (no padding,
padding on one side only, stride 2, a non-square kernel, ties, float32, ...) and, for the convolution and
pooling kernels, hypothesis-drawn problems whose parameters are printed with the failure (``note``). Each test
calls only its own exercise's kernel, so a later exercise's tests never fail because an earlier one is a stub.
"""
import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

import naive
from tinyxception import exercise_mode, kernels
from tinyxception.exercise_cases import CASES, case_failure
from tinyxception.kernels.learner import EXERCISES, defined

DRAWN = settings(max_examples=12, deadline=None)


def marks(name):
    """The exercise's own marker and its chapter's."""
    return [getattr(pytest.mark, f"ex_{name}"), getattr(pytest.mark, EXERCISES[name].chapter)]


def kernel_under_test(name):
    """The kernel an exercise's tests check: yours under --exercises (skipped when your folder has no such
    function yet, as a folder from before that exercise existed), else the fast tier's. The assembly exercise,
    which builds a module and is no kernel of the library: yours, else the library's block."""
    folder = exercise_mode.exercise_folder()
    if folder is not None and defined(name, folder) is None:
        pytest.skip(f"{folder} has no {name} yet (python -m tinyxception exercises reset {name} adds its stub)")
    if not hasattr(kernels.active, name):
        return defined(name, folder) if folder is not None else exercise_mode.reference(name)
    return getattr(kernels.active, name)


FIXED = [pytest.param(name, number, marks=marks(name), id=f"{name}-{number}")
         for name, cases in CASES.items() for number in range(len(cases))]


@pytest.mark.parametrize("name, number", FIXED)
def test_fixed_case_agrees_with_the_reference(name, number):
    """The kernel in use (yours under --exercises, else the fast tier) agrees with the reference tier on the
    check's case `number`: shape, dtype and values (for topological_order: each tensor once, after its inputs).
    On the reference tier itself there is nothing to compare; the chapter tests check it against loops."""
    if kernels.in_use() == "reference":
        pytest.skip("compares the kernels in use with the reference tier, which is the tier in use")
    case = CASES[name][number]
    failure = case_failure(name, kernel_under_test(name), case)
    assert failure is None, f"case {number + 1}, {case.label}: {failure}"


@st.composite
def depthwise_problems(draw):
    """(x, w, stride, pads, grad) of a depthwise conv: sizes 1..7, kernels 1..3 (not square), strides 1..3,
    any padding of 0..2 on each side; the drawn parameters are noted for the failure report."""
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kernel, stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), draw(st.integers(1, 3))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    assume(h + sum(pads[0]) >= kernel[0] and w + sum(pads[1]) >= kernel[1])
    note(f"x ({n}, {c}, {h}, {w}) float64, w ({c}, 1, {kernel[0]}, {kernel[1]}), stride {stride}, pads {pads}")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, weight = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, 1) + kernel)
    out = [(size + sum(p) - k) // stride + 1 for size, p, k in zip((h, w), pads, kernel)]
    return x, weight, stride, pads, rng.standard_normal((n, c, *out))


@pytest.mark.parametrize("_", [pytest.param(0, marks=marks("depthwise_conv2d_forward"), id="depthwise_conv2d_forward")])
@DRAWN
@given(problem=depthwise_problems())
def test_drawn_depthwise_forward_matches_the_loops(_, problem):
    """depthwise_conv2d_forward equals the definition written as loops over every output pixel."""
    x, w, stride, pads, _grad = problem
    y = kernel_under_test("depthwise_conv2d_forward")(x, w, stride, pads)
    np.testing.assert_allclose(y, naive.conv2d(x, w, stride, pads, groups=x.shape[1]), rtol=1e-9, atol=1e-12)


def inner(a, b):
    return float(np.sum(np.asarray(a) * np.asarray(b)))


@pytest.mark.parametrize("_", [pytest.param(0, marks=marks("depthwise_conv2d_backward"), id="depthwise_conv2d_backward")])
@DRAWN
@given(problem=depthwise_problems())
def test_drawn_depthwise_backward_is_the_adjoint(_, problem):
    """The conv is linear in x and in w, so for y = conv(x, w): sum(grad * y) = sum(dL/dx * x) = sum(dL/dw * w)
    for any grad; a gradient that misses a tap, a stride or a padding breaks one of the two equalities."""
    x, w, stride, pads, grad = problem
    y = naive.conv2d(x, w, stride, pads, groups=x.shape[1])
    grad_x, grad_w = kernel_under_test("depthwise_conv2d_backward")(grad, x, w, stride, pads)
    assert np.shape(grad_x) == x.shape and np.shape(grad_w) == w.shape
    assert inner(grad_x, x) == pytest.approx(inner(grad, y), rel=1e-9, abs=1e-9), "dL/dx"
    assert inner(grad_w, w) == pytest.approx(inner(grad, y), rel=1e-9, abs=1e-9), "dL/dw"


@pytest.mark.parametrize("_", [pytest.param(0, marks=marks("max_pool2d_backward"), id="max_pool2d_backward")])
@DRAWN
@given(problem=depthwise_problems())
def test_drawn_max_pool_backward_routes_each_gradient_to_a_maximum(_, problem):
    """Each window's gradient goes to one input holding its maximum: so sum(dL/dx * x) = sum(grad * y), and
    dL/dx sums to sum(grad) (nothing lost, nothing counted twice) whatever the kernel, stride and padding."""
    x, _w, stride, pads, _grad = problem
    kernel = _w.shape[2:]
    # padding of at most k - 1 per side: a window entirely in the padding would have no maximum to route to
    pads = tuple((min(before, k - 1), min(after, k - 1)) for (before, after), k in zip(pads, kernel))
    note(f"max pool: kernel {kernel}, pads {pads}")
    y = kernels.tier("reference")["max_pool2d_forward"](x, kernel, stride, pads)
    grad = np.random.default_rng(0).standard_normal(y.shape)
    grad_x = kernel_under_test("max_pool2d_backward")(grad, x, y, kernel, stride, pads)
    assert inner(grad_x, x) == pytest.approx(inner(grad, y), rel=1e-9, abs=1e-9)
    assert float(np.sum(grad_x)) == pytest.approx(float(np.sum(grad)), rel=1e-9, abs=1e-9)
