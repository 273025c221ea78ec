"""Chapter 5, training: optimisers, the learning-rate schedule and Polyak averaging.

Exercise: compute two SGD-with-momentum steps by hand and compare with the first test.

An optimiser is a few lines of arithmetic per parameter, so each test writes
the expected numbers by hand from the formula in the docstring and compares.
Where PyTorch is installed, the same runs are compared against torch.optim,
the reference most learners know.
"""
import numpy as np
import pytest

from tinyxception import backend, optim
from tinyxception.autograd import Tensor

pytestmark = pytest.mark.ch5_training


def _param(values, grad=None, dtype=np.float32, device="cpu"):
    """A trainable tensor with a given gradient: all an optimiser looks at is ``.data`` and ``.grad``."""
    p = Tensor(backend.to_device(np.asarray(values, dtype=dtype), device), requires_grad=True)
    p.grad = None if grad is None else backend.to_device(np.asarray(grad, dtype=dtype), device)
    return p


def _run(make_optimizer, grads, start=(1.0, -2.0)):
    """Apply one optimiser step per gradient in `grads` to one parameter; return the values after each step."""
    p = _param(start)
    opt = make_optimizer([p])
    seen = []
    for g in grads:
        p.grad = np.asarray(g, dtype=np.float32)
        opt.step()
        seen.append(p.numpy().copy())
    return seen


def test_sgd_plain_step_is_minus_lr_times_gradient():
    """Without momentum, one step is p - lr * g."""
    (after,) = _run(lambda ps: optim.SGD(ps, lr=0.1), [[0.5, -1.0]])
    np.testing.assert_allclose(after, [1.0 - 0.05, -2.0 + 0.1], rtol=1e-6)


def test_sgd_momentum_accumulates_velocity():
    """Momentum 0.9: v1 = g1, v2 = 0.9 g1 + g2; each step subtracts lr * v."""
    g1, g2 = np.array([1.0, 2.0]), np.array([-3.0, 0.5])
    p1 = np.array([1.0, -2.0]) - 0.1 * g1
    p2 = p1 - 0.1 * (0.9 * g1 + g2)
    seen = _run(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), [g1, g2])
    np.testing.assert_allclose(seen, [p1, p2], rtol=1e-6)


def test_sgd_nesterov_with_weight_decay():
    """Nesterov + weight decay: g = grad + wd p; v = mu v + g; p -= lr (g + mu v), worked out by hand."""
    lr, mu, wd = 0.1, 0.9, 0.01
    p0, g1, g2 = np.array([1.0, -2.0]), np.array([1.0, 2.0]), np.array([-3.0, 0.5])
    d1 = g1 + wd * p0
    v1 = d1
    p1 = p0 - lr * (d1 + mu * v1)
    d2 = g2 + wd * p1
    v2 = mu * v1 + d2
    p2 = p1 - lr * (d2 + mu * v2)
    seen = _run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, nesterov=True, weight_decay=wd), [g1, g2])
    np.testing.assert_allclose(seen, [p1, p2], rtol=1e-6)


def test_rmsprop_matches_the_tensorflow_formula():
    """TF 1 RMSProp: ms starts at 1; ms = 0.9 ms + 0.1 g^2; mom = 0.9 mom + lr g / sqrt(ms + eps); p -= mom."""
    lr, eps = 0.01, 1.0
    p0, g1, g2 = np.array([1.0, -2.0]), np.array([2.0, -1.0]), np.array([0.5, 3.0])
    ms1 = 0.9 * 1.0 + 0.1 * g1 ** 2
    mom1 = lr * g1 / np.sqrt(ms1 + eps)
    ms2 = 0.9 * ms1 + 0.1 * g2 ** 2
    mom2 = 0.9 * mom1 + lr * g2 / np.sqrt(ms2 + eps)
    expected = [p0 - mom1, p0 - mom1 - mom2]
    seen = _run(lambda ps: optim.RMSProp(ps, lr=lr), [g1, g2])
    np.testing.assert_allclose(seen, expected, rtol=1e-6)


def test_parameters_without_gradient_are_left_alone_and_zero_grad_clears():
    """A parameter that got no gradient (grad None) must not move; zero_grad() sets every grad to None."""
    used, unused = _param([1.0, 2.0], grad=[1.0, 1.0]), _param([3.0, 4.0])
    opt = optim.SGD([used, unused], lr=0.5, momentum=0.9, weight_decay=0.1)
    opt.step()
    np.testing.assert_array_equal(unused.numpy(), [3.0, 4.0])
    assert not np.allclose(used.numpy(), [1.0, 2.0])
    opt.zero_grad()
    assert used.grad is None and unused.grad is None


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda ps: optim.RMSProp(ps, lr=0.1),
], ids=["sgd", "rmsprop"])
def test_updates_are_in_place_and_keep_the_dtype(make, device):
    """The update writes into the same float32 array on the parameter's device (no copy, no upcast to float64)."""
    p = _param(np.linspace(-1, 1, 6), grad=np.ones(6), device=device)
    array = p.data
    expected = _param(np.linspace(-1, 1, 6), grad=np.ones(6))
    for q in (p, expected):
        make([q]).step()
    assert p.data is array and p.dtype == np.float32 and p.device == device
    np.testing.assert_allclose(p.numpy(), expected.numpy(), rtol=1e-6)


def test_optimiser_rejects_bad_settings():
    """Settings that cannot work fail at construction with the offending value in the message."""
    p = _param([1.0])
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=0.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)


def _torch_run(torch_optimizer, grads, start=(1.0, -2.0)):
    torch = pytest.importorskip("torch")
    p = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    opt = torch_optimizer([p])
    seen = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        seen.append(p.detach().numpy().copy())
    return seen


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch(nesterov):
    """Five steps with random gradients agree with torch.optim.SGD (momentum, Nesterov, weight decay)."""
    torch = pytest.importorskip("torch")
    grads = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    settings = dict(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    ours = _run(lambda ps: optim.SGD(ps, **settings), grads)
    theirs = _torch_run(lambda ps: torch.optim.SGD(ps, **settings), grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_rmsprop_matches_torch_when_configured_alike():
    """With ms starting at 0 and eps 0 the TF and PyTorch formulations coincide at a constant lr."""
    torch = pytest.importorskip("torch")
    grads = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    ours = _run(lambda ps: optim.RMSProp(ps, lr=0.01, decay=0.9, momentum=0.9, eps=0.0, initial_ms=0.0), grads)
    theirs = _torch_run(lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.9, eps=0.0), grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_step_decay_follows_the_paper_schedule():
    """x0.94 every 2 epochs from 0.045: the lr after t steps is 0.045 * 0.94 ** (t // 2), and the optimiser sees it."""
    opt = optim.SGD([_param([1.0])], lr=0.045)
    schedule = optim.StepDecay(opt, factor=0.94, every=2)
    expected = [0.045, 0.045, 0.0423, 0.0423, 0.039762, 0.039762, 0.03737628]
    seen = [opt.lr] + [schedule.step() for _ in range(6)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert opt.lr == schedule.lr


def test_step_decay_rejects_bad_settings():
    """A growing factor, a zero period or an unknown unit is refused."""
    opt = optim.SGD([_param([1.0])], lr=0.1)
    for bad in (dict(factor=1.5), dict(every=0), dict(unit="batch")):
        with pytest.raises(ValueError):
            optim.StepDecay(opt, **bad)


def test_ema_without_warmup_is_the_textbook_average():
    """decay 0.5, no warm-up: shadow = 0.5 shadow + 0.5 p after each update, starting from the initial weights."""
    p = _param([4.0])
    ema = optim.ExponentialMovingAverage([p], decay=0.5, warmup=False)
    for value in (8.0, 0.0):
        p.data[...] = value
        ema.update()
    # 4 -> 0.5*4 + 0.5*8 = 6 -> 0.5*6 + 0.5*0 = 3
    np.testing.assert_allclose(ema.shadow[0], [3.0])


def test_ema_warmup_uses_tensorflow_num_updates_rule():
    """With warm-up the decay is min(decay, (1 + t) / (10 + t)): 0.1 then 2/11 for decay 0.9999."""
    p = _param([0.0])
    ema = optim.ExponentialMovingAverage([p], decay=0.9999)
    assert ema.current_decay() == pytest.approx(0.1)
    p.data[...] = 10.0
    ema.update()  # 0.1 * 0 + 0.9 * 10 = 9
    assert ema.current_decay() == pytest.approx(2 / 11)
    p.data[...] = 20.0
    ema.update()  # 2/11 * 9 + 9/11 * 20
    np.testing.assert_allclose(ema.shadow[0], [2 / 11 * 9 + 9 / 11 * 20], rtol=1e-6)


def test_ema_swaps_averaged_weights_in_and_restores_the_live_ones(device):
    """Inside ``averaged()`` the parameters hold the averages; afterwards exactly the live weights come back."""
    p = _param([1.0, 2.0], device=device)
    ema = optim.ExponentialMovingAverage([p], decay=0.5, warmup=False)
    p.data[...] = backend.to_device(np.array([3.0, 6.0], dtype=np.float32), device)
    ema.update()
    with ema.averaged():
        np.testing.assert_allclose(p.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(p.numpy(), [3.0, 6.0])
    assert p.dtype == np.float32 and ema.shadow[0].dtype == np.float32


def test_ema_apply_to_checks_the_model_and_pairs_with_restore():
    """apply_to refuses mismatched parameters, refuses to apply twice, and restore() needs a prior apply_to()."""
    ema = optim.ExponentialMovingAverage([_param([1.0, 2.0])])
    with pytest.raises(ValueError, match="do not match"):
        ema.apply_to([_param([1.0, 2.0, 3.0])])
    with pytest.raises(RuntimeError, match="restore"):
        ema.restore()
    ema.apply_to()
    with pytest.raises(RuntimeError, match="already applied"):
        ema.apply_to()
    ema.restore()
