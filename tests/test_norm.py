"""Chapter 3, normalisation and pooling: batch normalisation.

Exercise: derive batch norm's backward pass (the batch statistics depend on every input), write it in
``tinyxception/exercises/norm.py`` and run ``pytest --exercises -m ch3_norm_pool`` (notebook 04).

Batch normalisation: forward against plain NumPy formulas, running statistics, gradients, errors.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients

pytestmark = pytest.mark.ch3_norm_pool

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))


def make_params(c, seed=0, dtype=np.float64):
    """gamma, beta, running mean and running variance with values far from the trivial 1 / 0."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, c).astype(dtype), rng.normal(0, 1, c).astype(dtype),
            rng.normal(0, 1, c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype))


def per_channel(v):
    """(C,) -> (1, C, 1, 1) so it lines up with NCHW."""
    return v[None, :, None, None]


def on(device, *arrays):
    """The arrays on `device` (plain arrays, as the running statistics are)."""
    return [tx.tensor(a, device=device).data for a in arrays]


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 100))
def test_training_forward_matches_formula(device, shape, seed):
    """Training output is gamma * (x - batch mean) / sqrt(biased batch var + eps) + beta, per channel."""
    assume(shape[0] * shape[2] * shape[3] >= 2)
    x = np.random.default_rng(seed).normal(3.0, 2.0, shape)
    gamma, beta, rm, rv = make_params(shape[1], seed)
    mean = x.mean(axis=(0, 2, 3))
    var = ((x - per_channel(mean)) ** 2).mean(axis=(0, 2, 3))
    expected = per_channel(gamma) * (x - per_channel(mean)) / np.sqrt(per_channel(var) + 1e-3) + per_channel(beta)
    out = F.batch_norm(tx.tensor(x, device=device), *on(device, gamma, beta, rm, rv), training=True)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 100))
def test_eval_forward_uses_running_statistics(device, shape, seed):
    """Eval output is gamma * (x - running_mean) / sqrt(running_var + eps) + beta; statistics stay unchanged."""
    x = np.random.default_rng(seed).normal(0.0, 1.0, shape)
    gamma, beta, rm, rv = make_params(shape[1], seed)
    expected = per_channel(gamma) * (x - per_channel(rm)) / np.sqrt(per_channel(rv) + 1e-3) + per_channel(beta)
    stats = on(device, rm, rv)
    out = F.batch_norm(tx.tensor(x, device=device), *on(device, gamma, beta), *stats, training=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(tx.backend.asnumpy(stats[0]), rm)
    np.testing.assert_array_equal(tx.backend.asnumpy(stats[1]), rv)


def test_eval_output_of_a_sample_does_not_depend_on_the_batch(device):
    """In eval mode a sample's output is the same alone or in a batch: no batch statistics are used."""
    x = np.random.default_rng(1).normal(size=(4, 3, 5, 5)).astype(np.float32)
    params = on(device, *make_params(3, dtype=np.float32))
    whole = F.batch_norm(tx.tensor(x, device=device), *params, training=False).numpy()
    alone = F.batch_norm(tx.tensor(x[2:3], device=device), *params, training=False).numpy()
    np.testing.assert_allclose(alone, whole[2:3], rtol=1e-6, atol=1e-6)


def test_running_statistics_follow_the_documented_update(device):
    """running = (1 - momentum) * running + momentum * batch_stat, with the UNBIASED variance for running_var."""
    x = np.random.default_rng(2).normal(1.0, 3.0, size=(3, 2, 4, 5))
    gamma, beta, rm, rv = make_params(2)
    momentum = 0.3
    expected_mean = (1 - momentum) * rm + momentum * x.mean(axis=(0, 2, 3))
    m = 3 * 4 * 5
    unbiased = ((x - per_channel(x.mean(axis=(0, 2, 3)))) ** 2).sum(axis=(0, 2, 3)) / (m - 1)
    expected_var = (1 - momentum) * rv + momentum * unbiased
    stats = on(device, rm, rv)
    F.batch_norm(tx.tensor(x, device=device), *on(device, gamma, beta), *stats, training=True, momentum=momentum)
    np.testing.assert_allclose(tx.backend.asnumpy(stats[0]), expected_mean, rtol=1e-12)
    np.testing.assert_allclose(tx.backend.asnumpy(stats[1]), expected_var, rtol=1e-12)


def test_running_statistics_given_as_tensors_are_updated_in_place(device):
    """Tensors are accepted for the running statistics, and their .data arrays are the ones updated."""
    x = np.random.default_rng(3).normal(5.0, 1.0, size=(2, 2, 3, 3)).astype(np.float32)
    gamma, beta, rm, rv = make_params(2, dtype=np.float32)
    running_mean, running_var = tx.tensor(rm.copy(), device=device), tx.tensor(rv.copy(), device=device)
    before = running_mean.data
    F.batch_norm(tx.tensor(x, device=device), *on(device, gamma, beta), running_mean, running_var, training=True)
    assert running_mean.data is before
    np.testing.assert_allclose(running_mean.numpy(), 0.9 * rm + 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert running_mean.dtype == np.float32 and running_var.dtype == np.float32


def test_training_normalises_each_channel_to_mean_0_variance_1(device):
    """With gamma = 1 and beta = 0 every channel of the output has mean 0 and variance var / (var + eps) ~ 1."""
    x = np.random.default_rng(4).normal(-7.0, 10.0, size=(4, 3, 6, 6)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    out = F.batch_norm(tx.tensor(x, device=device), *on(device, ones, zeros, zeros.copy(), ones.copy()),
                       training=True).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_two_dimensional_input_normalises_features(device):
    """(N, C) input (the batch norm of a dense layer) normalises every column with its batch statistics."""
    x = np.random.default_rng(5).normal(2.0, 3.0, size=(6, 4))
    gamma, beta, rm, rv = make_params(4)
    expected = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-3) + beta
    out = F.batch_norm(tx.tensor(x, device=device), *on(device, gamma, beta, rm, rv), training=True)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
       seed=st.integers(0, 100))
def test_gradients_of_x_gamma_beta(device, training, shape, seed):
    """Autograd's gradients of x, gamma and beta match float64 central differences, in both modes."""
    assume(shape[0] * shape[2] * shape[3] >= 2)
    x = np.random.default_rng(seed).normal(1.0, 2.0, shape)
    gamma, beta, rm, rv = make_params(shape[1], seed)
    stats = on(device, rm, rv)
    check_gradients(lambda x, g, b: F.batch_norm(x, g, b, *stats, training=training), x, gamma, beta, device=device)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_gradients_of_two_dimensional_input(device, training):
    """The (N, C) form has correct gradients for x, gamma and beta as well."""
    x = np.random.default_rng(6).normal(size=(5, 3))
    gamma, beta, rm, rv = make_params(3)
    stats = on(device, rm, rv)
    check_gradients(lambda x, g, b: F.batch_norm(x, g, b, *stats, training=training), x, gamma, beta, device=device)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_float32_stays_float32(device, training):
    """float32 inputs give a float32 output and float32 gradients: no silent upcast to float64."""
    x = tx.tensor(np.random.default_rng(7).normal(size=(2, 3, 4, 4)).astype(np.float32), requires_grad=True,
                  device=device)
    gamma, beta = (tx.tensor(p, requires_grad=True, device=device) for p in make_params(3, dtype=np.float32)[:2])
    stats = on(device, *make_params(3, dtype=np.float32)[2:])
    out = F.batch_norm(x, gamma, beta, *stats, training=training)
    out.sum().backward()
    assert out.dtype == np.float32
    assert {x.grad.dtype, gamma.grad.dtype, beta.grad.dtype, stats[0].dtype, stats[1].dtype} == {np.dtype(np.float32)}


def bad_call(**change):
    """batch_norm on a valid (2, 3, 4, 4) float32 problem with some arguments replaced."""
    gamma, beta, rm, rv = make_params(3, dtype=np.float32)
    args = dict(x=np.zeros((2, 3, 4, 4), np.float32), gamma=gamma, beta=beta, running_mean=rm, running_var=rv,
                training=True)
    args.update(change)
    return F.batch_norm(**args)


@pytest.mark.parametrize("change, error, words", [
    (dict(x=np.zeros((2, 3, 4), np.float32)), ValueError, ["(N, C, H, W)", "(2, 3, 4)"]),
    (dict(x=np.zeros((2, 3, 4, 4), np.int32)), TypeError, ["floating point", "int32"]),
    (dict(gamma=np.ones(4, np.float32)), ValueError, ["gamma", "(3,)", "(4,)"]),
    (dict(beta=np.ones((3, 1), np.float32)), ValueError, ["beta", "(3,)", "(3, 1)"]),
    (dict(running_mean=np.zeros(2, np.float32)), ValueError, ["running_mean", "(3,)", "(2,)"]),
    (dict(running_var=np.ones(5, np.float32)), ValueError, ["running_var", "(3,)", "(5,)"]),
    (dict(gamma=np.ones(3, np.float64)), TypeError, ["float32", "float64"]),
    (dict(running_var=np.ones(3, np.int64)), TypeError, ["running_var", "int64"]),
    (dict(x=np.zeros((1, 3, 1, 1), np.float32)), ValueError, ["more than one value per channel", "(1, 3, 1, 1)"]),
    (dict(momentum=1.5), ValueError, ["momentum", "1.5"]),
    (dict(eps=0.0), ValueError, ["eps", "0.0"]),
])
def test_bad_input_is_rejected_with_a_clear_message(change, error, words):
    """Wrong rank, dtype, parameter shapes or options raise an error naming what was expected and what was given."""
    with pytest.raises(error) as info:
        bad_call(**change)
    for word in words:
        assert word in str(info.value)


def test_mixed_devices_are_rejected(gpu):
    """x on the GPU with statistics on the CPU raises an error naming both devices."""
    gamma, beta, rm, rv = make_params(3, dtype=np.float32)
    with pytest.raises(ValueError, match="cuda.*cpu|cpu.*cuda"):
        F.batch_norm(tx.tensor(np.zeros((2, 3, 2, 2), np.float32), device=gpu),
                     *on(gpu, gamma, beta), rm, rv, training=True)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_matches_torch(training):
    """Output, gradients and running statistics agree with torch.nn.functional.batch_norm (same convention)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).normal(1.0, 2.0, size=(3, 4, 5, 5))
    gamma, beta, rm, rv = make_params(4)
    ours_x, ours_g, ours_b = (tx.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ours_stats = [rm.copy(), rv.copy()]
    out = F.batch_norm(ours_x, ours_g, ours_b, *ours_stats, training=training, momentum=0.2, eps=1e-3)
    (out * out).sum().backward()
    tx_, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    t_stats = [torch.tensor(rm.copy()), torch.tensor(rv.copy())]
    ref = torch.nn.functional.batch_norm(tx_, *t_stats, tg, tb, training=training, momentum=0.2, eps=1e-3)
    (ref * ref).sum().backward()
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-9, atol=1e-9)
    for ours, theirs in [(ours_x, tx_), (ours_g, tg), (ours_b, tb)]:
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-8, atol=1e-8)
    for ours, theirs in zip(ours_stats, t_stats):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)
