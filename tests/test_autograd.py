"""Chapter 1, tensors and autograd: the engine.

Exercise: write ``topological_order`` in ``tinyxception/exercises/autograd.py``, the order in which backward()
visits the graph, and run ``pytest --exercises -m ch1_autograd`` until this chapter passes (notebook 01).

Each test checks one promise of ``Tensor.backward``: the chain rule, gradient
accumulation when a value is used twice, broadcasting, deep graphs, and that
no graph (and no memory) is kept around when nobody asked for it.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes

import tinyxception as tx
from tinyxception.autograd import unbroadcast

from gradcheck import check_gradients

pytestmark = pytest.mark.ch1_autograd


def test_used_twice_receives_both_gradients(device):
    """b = a + a; c = b * b gives dc/da = 8a exactly: both uses of a must add their gradients."""
    a_values = np.array([1.5, -2.0, 3.25])
    a = tx.tensor(a_values, requires_grad=True, device=device)
    b = a + a
    c = b * b
    c.sum().backward()
    np.testing.assert_array_equal(tx.backend.asnumpy(a.grad), 8 * a_values)


def test_deep_graph_needs_no_recursion():
    """A chain of 5,000 ops (far past Python's recursion limit of ~1,000) still backpropagates."""
    x = tx.tensor(np.array([2.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-9)


@settings(deadline=None, max_examples=25)
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_arithmetic_gradients_with_broadcasting(shape, data):
    """+ - * / against central differences, with the second operand broadcast along random axes."""
    other_shape = tuple(data.draw(st.sampled_from([1, n])) for n in shape)[data.draw(st.integers(0, len(shape))):]
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape)
    b = rng.uniform(0.5, 2.0, other_shape)  # away from zero for the division
    check_gradients(lambda p, q: ((p + q) * p - q) / q, a, b)


def test_matmul_sum_mean_reshape_transpose_getitem_gradients():
    """The remaining Tensor methods, chained, against central differences."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))

    def f(p, q):
        m = (p @ q).reshape(2, 3).T           # (3, 2)
        return m[1:, :].mean(axis=0) - m.sum() * p[0, 0] + (-m[[0, 0]]).sum()

    check_gradients(f, a, b)


def test_unbroadcast_sums_over_the_broadcast_axes():
    """The gradient of a broadcast value is the sum over the axes it was stretched along."""
    grad = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(unbroadcast(grad, (3, 1)), grad.sum(axis=0).sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(unbroadcast(grad, ()), grad.sum())


def test_no_grad_records_nothing():
    """Inside no_grad the result neither requires grad nor keeps a link to its inputs."""
    a = tx.tensor(np.ones(3), requires_grad=True)
    with tx.no_grad():
        b = a * 2
    assert not b.requires_grad and b.is_leaf
    assert (a * 2).requires_grad


def test_graph_is_released_after_backward():
    """After backward the graph is gone (memory freed); a second backward says so clearly."""
    a = tx.tensor(np.ones(3), requires_grad=True)
    b = (a * a).sum()
    b.backward()
    assert b._ctx is None
    with pytest.raises(RuntimeError, match="already freed.*retain_graph"):
        b.backward()


def test_retain_graph_allows_a_second_backward():
    """With retain_graph=True the graph survives, and gradients accumulate across calls like PyTorch."""
    a = tx.tensor(np.array([3.0]), requires_grad=True)
    b = (a * a).sum()
    b.backward(retain_graph=True)
    b.backward()
    np.testing.assert_array_equal(a.grad, [12.0])


def test_python_numbers_keep_float32():
    """x * 2 and 1 - x stay float32: Python numbers take the tensor's dtype (no silent float64)."""
    x = tx.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    y = (1 - x * 2) / 3
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_defaults_and_numpy_round_trip():
    """tx.tensor on a list gives float32; .numpy() returns a numpy array equal to the input."""
    t = tx.tensor([[1.0, 2.0]])
    assert t.dtype == np.float32 and t.shape == (1, 2) and t.device == "cpu"
    assert isinstance(t.numpy(), np.ndarray)
    np.testing.assert_array_equal(t.numpy(), [[1.0, 2.0]])


def test_bad_uses_raise_clear_errors():
    """Integer tensors cannot require grad; backward needs a scalar or an explicit gradient."""
    with pytest.raises(TypeError, match="floating point.*int64"):
        tx.tensor(np.arange(3), requires_grad=True)
    v = tx.tensor(np.ones(3), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"scalar, got shape \(3,\)"):
        v.backward()
    with pytest.raises(ValueError, match="gradient shape"):
        v.backward(np.ones(4))


@pytest.mark.parametrize("symbol, left, right, error, words", [
    ("+", (2, 3), (4,), ValueError, r"a \+ b with a of shape \(2, 3\).*b of shape \(4,\).*do not broadcast"),
    ("*", (3, 1), (2, 4), ValueError, "do not broadcast"),
    ("@", (2, 3), (2, 3), ValueError, "a's last axis to match b's second to last"),
])
def test_operators_on_tensors_refuse_shapes_that_do_not_fit(symbol, left, right, error, words):
    """``a + b``, ``a * b`` and ``a @ b`` on Tensors check their shapes first, so a mismatch says which operator
    and which shapes instead of surfacing from inside NumPy."""
    a, b = tx.tensor(np.ones(left)), tx.tensor(np.ones(right))
    with pytest.raises(error, match=words):
        {"+": lambda: a + b, "*": lambda: a * b, "@": lambda: a @ b}[symbol]()


def test_operators_refuse_mixed_dtypes_but_python_numbers_adopt_the_tensors():
    """float32 Tensor + float64 array would silently upcast to float64; the operator refuses and names both
    dtypes, on either side of the operator. A Python number is converted to the tensor's dtype instead."""
    x = tx.tensor(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float32.*float64"):
        x - np.ones(3)
    with pytest.raises(TypeError, match="float64.*float32"):
        np.ones(3) * x
    assert (x / 4.0).dtype == np.float32 and (2 - x).dtype == np.float32
