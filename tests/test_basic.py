"""Chapter 1, tensors and autograd: add, mul, reshape, flatten, mean, linear and dropout.

Exercise: for each op, write its derivative on paper before reading its backward in
``tinyxception/functional/basic.py``; the gradient checks here tell you whether your derivation agrees.

add, mul, reshape, flatten, mean, linear and dropout: values, gradients, dtypes and errors.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients

pytestmark = pytest.mark.ch1_autograd

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def normal(*shape, seed=0, dtype=np.float64):
    """Standard normal values of the given shape and dtype."""
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@pytest.mark.parametrize("op, reference", [(F.add, np.add), (F.mul, np.multiply)], ids=["add", "mul"])
def test_add_and_mul_broadcast_with_gradients(device, op, reference):
    """add/mul broadcast like NumPy, and both operands get gradients summed back to their own shapes."""
    a, b = normal(2, 3, 4, seed=1), normal(3, 1, seed=2)
    np.testing.assert_allclose(op(tx.tensor(a, device=device), tx.tensor(b, device=device)).numpy(), reference(a, b))
    check_gradients(op, a, b, device=device)


@pytest.mark.parametrize("op", [F.add, F.mul], ids=["add", "mul"])
def test_python_numbers_keep_the_array_dtype(device, op):
    """A Python number on either side takes the dtype of the array: float32 stays float32."""
    x = tx.tensor(normal(2, 2, dtype=np.float32), device=device)
    assert op(x, 2.0).dtype == np.float32 and op(3, x).dtype == np.float32


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple))
def test_flatten_and_reshape(device, shape):
    """flatten keeps the batch axis and joins the rest in C order; reshape back restores the values."""
    x = normal(*shape)
    flat = F.flatten(tx.tensor(x, device=device))
    np.testing.assert_array_equal(flat.numpy(), x.reshape(shape[0], int(np.prod(shape[1:]))))
    np.testing.assert_array_equal(F.reshape(flat, shape).numpy(), x)


def test_reshape_flatten_mean_gradients(device):
    """reshape, flatten and mean pass gradients that match float64 central differences."""
    x = normal(2, 3, 2)
    check_gradients(lambda t: F.reshape(t, (3, -1)), x, device=device)
    check_gradients(F.flatten, x, device=device)
    check_gradients(lambda t: F.mean(t, axis=(0, 2)), x, device=device)
    check_gradients(F.mean, x, device=device)


def test_mean_values(device):
    """mean equals the sum divided by the count, over all elements or over chosen axes."""
    x = normal(3, 4)
    np.testing.assert_allclose(F.mean(tx.tensor(x, device=device)).numpy(), x.sum() / 12)
    np.testing.assert_allclose(F.mean(tx.tensor(x, device=device), axis=1, keepdims=True).numpy(),
                               x.sum(axis=1, keepdims=True) / 4)


@SETTINGS
@given(n=st.integers(1, 4), n_in=st.integers(1, 5), n_out=st.integers(1, 5), bias=st.booleans())
def test_linear_matches_loops_and_has_correct_gradients(device, n, n_in, n_out, bias):
    """linear(x, w, b)[i, o] = sum_k x[i, k] * w[o, k] + b[o]; gradients of x, w and b pass a float64 check."""
    x, w, b = normal(n, n_in, seed=3), normal(n_out, n_in, seed=4), normal(n_out, seed=5)
    expected = np.array([[sum(x[i, k] * w[o, k] for k in range(n_in)) + (b[o] if bias else 0.0)
                          for o in range(n_out)] for i in range(n)])
    args = (x, w, b) if bias else (x, w)
    out = F.linear(*(tx.tensor(a, device=device) for a in args))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    check_gradients(F.linear, *args, device=device)


def test_linear_float32_stays_float32(device):
    """float32 x, w, b give a float32 output and float32 gradients."""
    x, w, b = (tx.tensor(a, requires_grad=True, device=device)
               for a in (normal(2, 3, dtype=np.float32), normal(4, 3, dtype=np.float32), normal(4, dtype=np.float32)))
    out = F.linear(x, w, b)
    out.sum().backward()
    assert {out.dtype, x.grad.dtype, w.grad.dtype, b.grad.dtype} == {np.dtype(np.float32)}


@pytest.mark.parametrize("args, error, words", [
    ((normal(2, 3), normal(4, 5)), ValueError, ["3 features", "(4, 5)"]),
    ((normal(2, 3, 1), normal(4, 3)), ValueError, ["(N, in_features)", "(2, 3, 1)"]),
    ((normal(2, 3), normal(4, 3, 1)), ValueError, ["(out_features, in_features)", "(4, 3, 1)"]),
    ((normal(2, 3), normal(4, 3), normal(5)), ValueError, ["b", "(4,)", "(5,)"]),
    ((normal(2, 3, dtype=np.float32), normal(4, 3)), TypeError, ["float32", "float64"]),
    ((np.ones((2, 3), np.int64), normal(4, 3)), TypeError, ["floating point", "int64"]),
])
def test_linear_bad_input_is_rejected(args, error, words):
    """Feature mismatch, wrong ranks, bias shape and dtypes raise errors naming expected and given."""
    with pytest.raises(error) as info:
        F.linear(*args)
    for word in words:
        assert word in str(info.value)


def test_dropout_in_eval_mode_and_with_p_0_is_the_identity(device):
    """training=False (and p=0) return x unchanged: dropout only acts during training."""
    x = normal(4, 5)
    np.testing.assert_array_equal(F.dropout(tx.tensor(x, device=device), 0.5, training=False).numpy(), x)
    np.testing.assert_array_equal(F.dropout(tx.tensor(x, device=device), 0.0, training=True).numpy(), x)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_in_training_zeroes_p_and_scales_survivors(device, p):
    """About a fraction p becomes 0, every survivor is x / (1 - p), and the mean of the values is preserved."""
    x = np.random.default_rng(6).uniform(1.0, 2.0, size=(200, 500)).astype(np.float32)
    out = F.dropout(tx.tensor(x, device=device), p).numpy()
    dropped = out == 0
    n = x.size
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[~dropped], x[~dropped] / (1 - p), rtol=1e-6)
    # each x_i * mask_i / (1 - p) has mean x_i and variance x_i^2 p / (1 - p): allow 4 standard errors
    assert abs(out.mean() - x.mean()) < 4 * np.sqrt((x.astype(np.float64) ** 2).mean() * p / (1 - p) / n)


def test_dropout_with_a_seeded_generator_is_reproducible_and_has_the_masks_gradient():
    """Two runs with the same seeded rng drop the same values; the gradient is the mask (0 or 1/(1-p))."""
    x = tx.tensor(np.random.default_rng(7).uniform(1, 2, size=(6, 7)), requires_grad=True)
    first = F.dropout(x, 0.3, rng=np.random.default_rng(42))
    second = F.dropout(x, 0.3, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    first.sum().backward()
    np.testing.assert_allclose(x.grad, np.where(first.numpy() != 0, 1 / 0.7, 0.0))


def test_dropout_keeps_float32(device):
    """A float32 input gives a float32 output (the mask has the input's dtype)."""
    x = tx.tensor(normal(8, 9, dtype=np.float32), requires_grad=True, device=device)
    out = F.dropout(x, 0.5)
    out.sum().backward()
    assert out.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5", True])
def test_dropout_bad_probability_is_rejected(p):
    """p must be a number in [0, 1); anything else raises a ValueError that shows the value given."""
    with pytest.raises(ValueError, match=r"\[0, 1\)") as info:
        F.dropout(normal(2, 2), p)
    assert repr(p) in str(info.value)
