"""Chapter 5, training: cross-entropy and log-softmax.

Exercise: show why log-softmax must subtract the largest logit first, then find the test that fails without it.

Cross-entropy and log-softmax: against the textbook formula, stability at large logits, gradients, errors.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients

pytestmark = pytest.mark.ch5_training

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def textbook_cross_entropy(logits, labels):
    """-(1/N) sum_n log(exp(z[n, y_n]) / sum_k exp(z[n, k])), one row at a time with the math module."""
    losses = [-math.log(math.exp(row[y]) / sum(math.exp(v) for v in row)) for row, y in zip(logits, labels)]
    return sum(losses) / len(losses)


@st.composite
def problems(draw):
    """Logits (N, K) of moderate size and valid labels in [0, K)."""
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 7))
    seed = draw(st.integers(0, 1000))
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, size=(n, k)), rng.integers(0, k, size=n)


@SETTINGS
@given(problem=problems())
def test_cross_entropy_equals_minus_log_softmax(device, problem):
    """cross_entropy is the batch mean of -log(softmax) at the true class, computed here without any shift."""
    logits, labels = problem
    loss = F.cross_entropy(tx.tensor(logits, device=device), tx.tensor(labels, device=device))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), textbook_cross_entropy(logits, labels), rtol=1e-12)


@SETTINGS
@given(problem=problems())
def test_log_softmax_matches_definition(device, problem):
    """log_softmax(z)[n, k] = z[n, k] - log(sum_j exp(z[n, j]))."""
    logits, _ = problem
    expected = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(F.log_softmax(tx.tensor(logits, device=device)).numpy(), expected, rtol=1e-12,
                               atol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits(device):
    """Logits of 1e4 in float32 give the exact finite loss (exp(1e4) would overflow) and a finite gradient."""
    logits = tx.tensor(np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]], np.float32), requires_grad=True,
                       device=device)
    loss = F.cross_entropy(logits, tx.tensor(np.array([0, 1]), device=device))
    loss.backward()
    # row 0 picks the largest logit: loss ~ log(1 + e^-1e4 + e^-2e4) = 0; row 1 is 1e4 below it: loss = 1e4
    np.testing.assert_allclose(loss.item(), (0.0 + 1e4) / 2, rtol=1e-6)
    grad = tx.backend.asnumpy(logits.grad)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-6)


@pytest.mark.parametrize("n, k", [(1, 1), (3, 4), (5, 2)])
def test_cross_entropy_gradient(device, n, k):
    """The gradient of the logits ((softmax - onehot) / N) matches float64 central differences."""
    rng = np.random.default_rng(n * 10 + k)
    logits, labels = rng.normal(size=(n, k)), tx.tensor(rng.integers(0, k, size=n), device=device)
    check_gradients(lambda z: F.cross_entropy(z, labels), logits, device=device)


def test_log_softmax_gradient(device):
    """log_softmax's gradient (g - softmax * sum(g)) matches float64 central differences."""
    check_gradients(F.log_softmax, np.random.default_rng(1).normal(size=(3, 5)), device=device)


def test_float32_stays_float32(device):
    """float32 logits give a float32 loss and float32 gradients, for both ops."""
    logits = tx.tensor(np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32), requires_grad=True,
                       device=device)
    loss = F.cross_entropy(logits, [0, 2, 1, 1])
    (loss + F.log_softmax(logits).sum()).backward()
    assert loss.dtype == np.float32 and F.log_softmax(logits).dtype == np.float32
    assert logits.grad.dtype == np.float32


def test_labels_may_be_a_list_or_unsigned(device):
    """Labels given as a Python list or as unsigned integers give the same loss as int64 labels."""
    logits = tx.tensor(np.random.default_rng(3).normal(size=(3, 4)), device=device)
    reference = F.cross_entropy(logits, tx.tensor(np.array([3, 0, 2]), device=device)).item()
    assert F.cross_entropy(logits, [3, 0, 2]).item() == reference
    assert F.cross_entropy(logits, tx.tensor(np.array([3, 0, 2], np.uint8), device=device)).item() == reference


@pytest.mark.parametrize("logits, labels, error, words", [
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), TypeError, ["integer", "float64"]),
    (np.zeros((3, 4)), np.array([0, 1]), ValueError, ["(3,)", "(2,)"]),
    (np.zeros((3, 4)), np.array([[0], [1], [2]]), ValueError, ["(3,)", "(3, 1)"]),
    (np.zeros((3, 4)), np.array([0, 4, 1]), ValueError, ["[0, 4)", "from 0 to 4"]),
    (np.zeros((3, 4)), np.array([0, -1, 1]), ValueError, ["[0, 4)", "from -1 to 1"]),
    (np.zeros(4), np.array([0]), ValueError, ["(N, classes)", "(4,)"]),
    (np.zeros((3, 4), np.int64), np.array([0, 1, 2]), TypeError, ["floating point", "int64"]),
    (np.zeros((0, 4)), np.zeros(0, np.int64), ValueError, ["at least one row", "(0, 4)"]),
])
def test_bad_input_is_rejected_with_a_clear_message(logits, labels, error, words):
    """Non-integer, mis-shaped or out-of-range labels and bad logits raise errors naming expected and given."""
    with pytest.raises(error) as info:
        F.cross_entropy(logits, labels)
    for word in words:
        assert word in str(info.value)


def test_matches_torch():
    """Loss and gradient agree with torch.nn.functional.cross_entropy (mean reduction)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(0, 5, size=(6, 10)), rng.integers(0, 10, size=6)
    ours = tx.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, labels)
    loss.backward()
    theirs = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(theirs, torch.tensor(labels))
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)
