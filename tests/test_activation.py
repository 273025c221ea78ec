"""Chapter 3, normalisation and pooling: the activations, ReLU and ELU.

Exercise: say what gradient ReLU should pass at exactly 0, and why the gradient checks here stay away from it.

ReLU and ELU: element-wise formulas, gradients (away from the kink at 0), extreme inputs, dtypes.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients

pytestmark = pytest.mark.ch3_norm_pool

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def away_from_zero(shape, seed):
    """Random values with |x| >= 0.05, so a central difference never straddles the kink at 0."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def reference_elu(value, alpha):
    """ELU of one number, straight from the definition."""
    return value if value > 0 else alpha * (math.exp(value) - 1)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 100))
def test_relu_matches_definition(device, shape, seed):
    """relu keeps positive values and replaces the others by 0."""
    x = np.random.default_rng(seed).normal(size=shape)
    expected = np.vectorize(lambda v: v if v > 0 else 0.0)(x)
    np.testing.assert_array_equal(F.relu(tx.tensor(x, device=device)).numpy(), expected)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 100), alpha=st.sampled_from([0.5, 1.0, 2.0]))
def test_elu_matches_definition(device, shape, seed, alpha):
    """elu is x for x > 0 and alpha * (exp(x) - 1) otherwise."""
    x = np.random.default_rng(seed).normal(size=shape) * 3
    expected = np.vectorize(lambda v: reference_elu(v, alpha))(x)
    np.testing.assert_allclose(F.elu(tx.tensor(x, device=device), alpha).numpy(), expected, rtol=1e-12, atol=1e-15)


def test_relu_gradient(device):
    """relu's gradient (1 for x > 0, 0 for x < 0) matches float64 central differences."""
    check_gradients(F.relu, away_from_zero((2, 3, 4), 0), device=device)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, -0.5])
def test_elu_gradient(device, alpha):
    """elu's gradient (1 for x > 0, out + alpha below) matches float64 central differences for several alpha."""
    check_gradients(lambda x: F.elu(x, alpha), away_from_zero((2, 3, 4), 1), device=device)


def test_elu_is_finite_for_extreme_inputs(device):
    """Very negative inputs saturate at -alpha and very large ones pass through, without overflow or warnings."""
    x = tx.tensor(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32), requires_grad=True, device=device)
    with np.errstate(all="raise"):
        out = F.elu(x, 1.5)
        out.sum().backward()
    np.testing.assert_allclose(out.numpy(), [-1.5, -1.5, 0.0, 50.0, 1e4], rtol=1e-6)
    np.testing.assert_allclose(tx.backend.asnumpy(x.grad), [0.0, 0.0, 1.5, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("act", [F.relu, F.elu], ids=["relu", "elu"])
def test_float32_stays_float32(device, act):
    """float32 input gives float32 output and a float32 gradient."""
    x = tx.tensor(np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32), requires_grad=True, device=device)
    out = act(x)
    out.sum().backward()
    assert out.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("act", [F.relu, F.elu], ids=["relu", "elu"])
def test_integer_input_is_rejected(act):
    """Integer arrays raise a TypeError naming the dtype that was given."""
    with pytest.raises(TypeError, match="int64"):
        act(np.arange(4))
