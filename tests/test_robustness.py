"""Chapter: a package that survives a learner's first hour. Mistakes get messages that teach (what was expected,
what was given, how to fix it); debug mode finds the first NaN; extreme values stay finite; the autograd engine
keeps no memory it should not.
"""
import gc
import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import tinyxception as tx
import tinyxception.functional as F
from tinyxception import cli, nn


def zeros(*shape, dtype=np.float32):
    """A zero array, for inputs whose values do not matter."""
    return np.zeros(shape, dtype=dtype)


SMALL = tx.Xception.small(num_classes=4, seed=0)

# --- messages that teach ---------------------------------------------------------------------------------------

MISTAKES = {
    "nhwc-conv2d": (lambda: F.conv2d(zeros(2, 8, 8, 3), zeros(4, 3, 3, 3)), ValueError,
                    ["conv2d", "(2, 8, 8, 3)", "NHWC", "x.transpose(0, 3, 1, 2)"]),
    "nhwc-depthwise": (lambda: F.depthwise_conv2d(zeros(1, 8, 8, 3), zeros(3, 1, 3, 3)), ValueError,
                       ["depthwise_conv2d", "NHWC", "x.transpose(0, 3, 1, 2)"]),
    "nhwc-pointwise": (lambda: F.pointwise_conv2d(zeros(1, 8, 8, 3), zeros(5, 3, 1, 1)), ValueError,
                       ["pointwise_conv2d", "NHWC", "x.transpose(0, 3, 1, 2)"]),
    "nhwc-batch_norm": (lambda: F.batch_norm(zeros(2, 8, 8, 3), *[zeros(3)] * 4, training=True), ValueError,
                        ["batch_norm", "gamma must have shape (8,)", "NHWC", "x.transpose(0, 3, 1, 2)"]),
    "nhwc-layer": (lambda: nn.Conv2d(3, 4, 3)(zeros(1, 32, 32, 3)), ValueError, ["NHWC", "transpose(0, 3, 1, 2)"]),
    "nhwc-model": (lambda: SMALL(zeros(1, 32, 32, 3)), ValueError,
                   ["Xception", "3 input channels", "(1, 32, 32, 3)", "NHWC", "x.transpose(0, 3, 1, 2)"]),
    "uint8-images": (lambda: SMALL(zeros(1, 3, 32, 32, dtype=np.uint8)), TypeError,
                     ["Xception", "uint8", "x.astype(np.float32) / 255"]),
    "int-weights": (lambda: F.conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 3, 3, dtype=np.int64)), TypeError,
                    ["conv2d", "w must be a floating point", "int64", "w.astype(np.float32)"]),
    "float64-into-float32-model": (lambda: SMALL(zeros(1, 3, 32, 32, dtype=np.float64)), TypeError,
                                   ["float64", "float32", "astype"]),
    "missing-batch-axis": (lambda: SMALL(zeros(3, 32, 32)), ValueError, ["4 dimensions", "(3, 32, 32)", "x[None]"]),
    "missing-batch-axis-linear": (lambda: F.linear(zeros(5), zeros(2, 5)), ValueError, ["2 dimensions", "x[None]"]),
    "empty-batch": (lambda: F.conv2d(zeros(0, 3, 8, 8), zeros(4, 3, 3, 3)), ValueError,
                    ["conv2d", "at least one element along every axis", "(0, 3, 8, 8)"]),
    "zero-width-kernel": (lambda: F.depthwise_conv2d(zeros(1, 3, 8, 8), zeros(3, 1, 0, 3)), ValueError,
                          ["depthwise_conv2d", "w", "(3, 1, 0, 3)"]),
    "text-as-data": (lambda: tx.tensor(["a", "b"]), TypeError, ["numbers", "<U1"]),
    "none-as-data": (lambda: tx.tensor(None, dtype="float32"), TypeError, ["numbers", "NoneType"]),
    "ragged-list": (lambda: tx.tensor([[1.0], [2.0, 3.0]]), ValueError, ["list", "inhomogeneous"]),
    "complex": (lambda: F.relu(np.ones(3, np.complex64)), TypeError, ["relu", "complex64", "x.real"]),
    "kernel-none": (lambda: F.max_pool2d(zeros(1, 1, 4, 4), kernel_size=None), ValueError, ["kernel_size", "None"]),
    "momentum-text": (lambda: F.batch_norm(zeros(2, 3), *[zeros(3)] * 4, training=True, momentum="0.1"), ValueError,
                      ["momentum", "[0, 1]", "'0.1'"]),
    "running-stats-as-lists": (lambda: F.batch_norm(zeros(2, 3), zeros(3), zeros(3), [0.0] * 3, [1.0] * 3, True),
                               TypeError, ["running_mean", "in place", "list"]),
    "dropout-rng": (lambda: F.dropout(zeros(3), 0.5, rng=3), TypeError, ["rng", "default_rng"]),
    "no-broadcast": (lambda: F.add(zeros(2, 3), zeros(4)), ValueError, ["add", "(2, 3)", "(4,)", "broadcast"]),
    "mixed-dtypes": (lambda: F.mul(zeros(2), zeros(2, dtype=np.float64)), TypeError, ["mul", "float32", "float64"]),
    "reshape-size": (lambda: F.reshape(zeros(2, 3), (4, -1)), ValueError, ["reshape", "6 values", "(4, -1)"]),
    "mean-of-ints": (lambda: F.mean(np.arange(4)), TypeError, ["mean", "int64", "astype"]),
    "mean-of-nothing": (lambda: F.mean(zeros(0, 3), axis=0), ValueError, ["mean", "(0, 3)", "no values"]),
    "layer-padding": (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, ["Conv2d", "padding", "'full'"]),
    "layer-size": (lambda: nn.BatchNorm2d(0), ValueError, ["BatchNorm2d", "num_features", "positive int", "0"]),
    "layer-stride": (lambda: nn.MaxPool2d(3, stride=0), ValueError, ["MaxPool2d", "stride", "0"]),
    "layer-probability": (lambda: nn.Dropout(1.0), ValueError, ["Dropout", "p", "[0, 1)", "1.0"]),
    "model-padding": (lambda: tx.Xception(stem_padding="full"), ValueError, ["Xception", "stem_padding", "'full'"]),
    "model-momentum": (lambda: tx.Xception(bn_momentum=2), ValueError, ["bn_momentum", "[0, 1]", "2"]),
    "state-not-a-dict": (lambda: SMALL.load_state_dict([1, 2]), TypeError, ["load_state_dict", "dict", "list"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_gets_a_message_that_teaches(mistake):
    """Each common mistake raises ValueError/TypeError naming the op or layer, the argument, what was expected
    and what was given, and, where there is one, the fix (transpose NHWC, convert ints, add the batch axis)."""
    call, error, fragments = MISTAKES[mistake]
    with pytest.raises(error) as info:
        call()
    missing = [fragment for fragment in fragments if fragment not in str(info.value)]
    assert not missing, f"{missing} not in: {info.value}"


def test_too_small_images_get_the_minimum_computed_from_the_architecture():
    """Xception.small keeps 32x32 through the stem (stride 1, "same"), halves it in blocks 2-4 (three stride-2
    "same" pools: ceil(n / 2)) and keeps it in block 13, whose output must be at least 3x3: 17 -> 9 -> 5 -> 3
    works, 16 -> 8 -> 4 -> 2 does not. So 16x16 is refused with the number 17 and the chain of sizes."""
    assert SMALL(zeros(1, 3, 17, 17)).shape == (1, 4)
    with pytest.raises(ValueError) as info:
        SMALL(zeros(1, 3, 16, 17))
    assert "at least 17" in str(info.value) and "16x17" in str(info.value)
    assert "17 -> 17 -> 17 -> 9 -> 5 -> 3 -> 3" in str(info.value)


def test_a_bad_stem_padding_no_longer_hangs():
    """Xception(stem_padding="full") used to search forever for a minimum input size (every size raised and the
    search went on); now the option is refused before anything is built."""
    with pytest.raises(ValueError, match="stem_padding"):
        tx.Xception(stem_padding="full")
    with pytest.raises(ValueError, match="stem_stride"):
        tx.Xception(stem_stride=0)


def test_mixed_devices_are_named(gpu):
    """An input on one device and weights on the other: ValueError naming both devices and how to move."""
    with pytest.raises(ValueError, match="cuda.*cpu|cpu.*cuda"):
        F.conv2d(tx.tensor(zeros(1, 3, 5, 5), device=gpu), zeros(4, 3, 3, 3))
    model = tx.Xception.small(seed=0).to(gpu)
    with pytest.raises(ValueError, match="input is on cpu but the model is on cuda.*device='cuda'"):
        model(zeros(1, 3, 32, 32))


# --- debug mode ----------------------------------------------------------------------------------------------

def test_debug_mode_names_the_op_the_argument_and_the_first_bad_value():
    """In debug mode a NaN in an op's input raises a ValueError with the op, the argument, how many NaN and inf
    values there are and the index of the first one; the same call without debug mode runs."""
    x = zeros(2, 3, 4, 4)
    x[0, 1, 2, 3], x[1, 0, 0, 0] = np.nan, -np.inf
    with tx.debug_mode():
        with pytest.raises(ValueError) as info:
            F.max_pool2d(x)
    message = str(info.value)
    assert message.startswith("max_pool2d: x of shape (2, 3, 4, 4)")
    assert "1 NaN and 1 infinite" in message and "(0, 1, 2, 3)" in message
    assert F.max_pool2d(x).shape == (2, 3, 2, 2)


def test_debug_switches_restore_the_previous_setting():
    """set_debug returns the previous setting; debug_mode(on) restores it afterwards, even after an error."""
    assert not tx.is_debug()
    assert tx.set_debug(True) is False and tx.is_debug()
    assert tx.set_debug(False) is True
    with pytest.raises(ValueError):
        with tx.debug_mode():
            assert tx.is_debug()
            F.relu(np.array([np.nan], np.float32))
    assert not tx.is_debug()
    with tx.debug_mode(), tx.debug_mode(False):
        assert not tx.is_debug()


@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_the_environment_variable_turns_debug_mode_on_at_import(value, on):
    """TINYXCEPTION_DEBUG=1 (or any value but "", 0, false, no, off) starts the process in debug mode."""
    env = {**os.environ, tx.debug.ENV_VARIABLE: value}
    done = subprocess.run([sys.executable, "-c", "import tinyxception as tx; print(tx.is_debug())"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(on), done.stderr


def test_debug_mode_off_never_scans(monkeypatch):
    """With debug mode off a whole training step never calls the NaN/inf scan: the hot path pays one boolean."""
    def scan(*args):
        raise AssertionError("check_finite ran with debug mode off")
    monkeypatch.setattr(tx.debug, "check_finite", scan)
    loss = F.cross_entropy(SMALL.train()(zeros(2, 3, 17, 17)), np.array([0, 1]))
    loss.backward()
    SMALL.zero_grad()


# --- numbers at the edge --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_and_right_for_logits_of_1e4(dtype):
    """Logits drawn from {-1e4, 0, 1e4} plus noise: the loss equals -mean(z[label] - logsumexp(z)) computed with
    NumPy's logaddexp in float64, and the gradient equals (softmax - onehot) / N; both finite."""
    rng = np.random.default_rng(0)
    z = (rng.choice([-1e4, 0.0, 1e4], size=(6, 5)) + rng.normal(size=(6, 5))).astype(dtype)
    labels = rng.integers(0, 5, size=6)
    logits = tx.tensor(z, requires_grad=True)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    z64 = z.astype(np.float64)
    log_norm = np.logaddexp.reduce(z64, axis=1)
    expected = -np.mean(z64[np.arange(6), labels] - log_norm)
    softmax = np.exp(z64 - log_norm[:, None])
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad).all()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    np.testing.assert_allclose(logits.grad, (softmax - np.eye(5)[labels]) / 6, atol=1e-6)


@pytest.mark.parametrize("level", [0.0, 5.0, 1e4])
def test_batch_norm_of_a_constant_channel_is_finite(level):
    """A channel holding one value everywhere has variance 0: training-mode batch norm gives exactly beta there
    (xhat = 0 / sqrt(0 + eps)), finite gradients, and dx = gamma / sqrt(eps) * (g - mean(g)) for that channel."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 3, 3))
    x[:, 1] = level
    gamma, beta = np.array([1.5, 2.0]), np.array([0.25, -0.5])
    xt, gt, bt = (tx.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(xt, gt, bt, np.zeros(2), np.ones(2), training=True, eps=1e-3)
    g = rng.normal(size=x.shape)
    out.backward(g)
    assert np.isfinite(out.numpy()).all() and all(np.isfinite(t.grad).all() for t in (xt, gt, bt))
    np.testing.assert_allclose(out.numpy()[:, 1], beta[1], atol=1e-9)
    np.testing.assert_allclose(xt.grad[:, 1], gamma[1] / np.sqrt(1e-3) * (g[:, 1] - g[:, 1].mean()), atol=1e-6)


def test_batch_norm_with_zero_running_variance_is_finite():
    """Evaluation with a running variance of 0 (a channel that never varied): eps keeps the scale finite."""
    out = F.batch_norm(np.full((2, 1, 2, 2), 3.0), np.ones(1), np.zeros(1), np.full(1, 3.0), np.zeros(1),
                       training=False, eps=1e-3)
    np.testing.assert_allclose(out.numpy(), 0.0)


# --- autograd hygiene ------------------------------------------------------------------------------------------

def _recorded_ops() -> int:
    """How many Function objects still hold inputs or saved arrays (the nodes of live graphs)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), tx.Function) and obj.__dict__.get("inputs"))


def test_no_grad_records_no_graph_in_a_whole_model():
    """A forward pass of Xception.small under no_grad leaves no recorded op behind and returns a leaf; the same
    pass with gradients on records one op per layer (the control that shows the count can move)."""
    x = zeros(2, 3, 17, 17)
    before = _recorded_ops()
    with tx.no_grad():
        out = SMALL(x)
    assert _recorded_ops() == before and out.is_leaf and not out.requires_grad
    out = SMALL(x)
    assert _recorded_ops() > before + 50
    del out


def test_backward_twice_through_a_model_says_retain_graph():
    """A second backward through a freed model graph is a RuntimeError naming retain_graph, not a crash."""
    loss = F.cross_entropy(SMALL.train()(zeros(2, 3, 17, 17)), np.array([0, 1]))
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()
    SMALL.zero_grad()


def _stack_depth() -> int:
    """How many Python frames are on the stack right now."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_a_500_layer_chain_backpropagates_with_a_tight_recursion_limit():
    """Forward and backward through 500 Linear layers while Python allows only 100 frames more than the test
    uses: a recursive graph walk (one frame per layer) would raise RecursionError."""
    chain = nn.Sequential(*(nn.Linear(4, 4, rng=i) for i in range(500)))
    x = tx.tensor(np.ones((2, 4), np.float32), requires_grad=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 100)
    try:
        chain(x).sum().backward()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad.shape == (2, 4) and np.isfinite(x.grad).all()
    assert all(p.grad is not None for p in chain.parameters())


def test_training_memory_does_not_grow_from_step_to_step():
    """20 SGD steps of Xception.small under tracemalloc: from step 5 to step 20 the memory still allocated after
    a step grows by less than 1% of what one step needs at its peak (a kept graph would add all of it)."""
    model = tx.Xception.small(num_classes=4, seed=0)
    optimizer = tx.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 24, 24)).astype(np.float32), np.arange(4)
    after, working = [], []
    tracemalloc.start()
    try:
        for _ in range(20):
            tracemalloc.reset_peak()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            del loss
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            after.append(current)
            working.append(peak - current)
    finally:
        tracemalloc.stop()
    growth = after[19] - after[4]
    assert growth < 0.01 * min(working), f"grew {growth} bytes over 15 steps; a step needs {min(working)}"


# --- the command line ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["train", "--lr", "0"], ["--lr", "(0, inf)", "0.0"]),
    (["train", "--val-fraction", "1.5"], ["--val-fraction", "(0, 1)", "1.5"]),
    (["train", "--epochs", "0"], ["--epochs", "positive integer", "'0'"]),
    (["train", "--batch-size", "many"], ["--batch-size", "'many'"]),
    (["ablation", "--seeds", "-1"], ["--seeds", ">= 0", "'-1'"]),
    (["--batch", "-2"], ["--batch", "positive integer"]),
])
def test_bad_command_line_numbers_are_argument_errors(argv, words, capsys):
    """Out-of-range or non-numeric options stop argparse with exit code 2 and a message naming the option and the
    allowed range, before any data are loaded."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    error = capsys.readouterr().err
    assert info.value.code == 2 and all(word in error for word in words), error


def test_a_setting_the_data_cannot_satisfy_is_one_line_not_a_traceback(capsys):
    """A batch larger than the training set is found only once the data are loaded: exit code 2 and one line."""
    code = cli.main(["train", "--dataset", "shapes", "--batch-size", "100000", "--epochs", "1", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "smaller than one batch" in error and "Traceback" not in error


def test_a_model_minimum_is_not_a_guess():
    """The paper network's minimum (71) follows from its layers: 71 -> 35 -> 33 -> 17 -> 9 -> 5 -> 3, one pixel
    less ends on 2x2 (see also test_xception); the message quotes that chain."""
    model = tx.Xception(width=1 / 32, middle_blocks=0, seed=0)
    sizes = [71]
    for kernel_stride in ((3, 2), (3, 1)):
        sizes.append((sizes[-1] - kernel_stride[0]) // kernel_stride[1] + 1)
    for _ in range(4):
        sizes.append(math.ceil(sizes[-1] / 2))
    with pytest.raises(ValueError) as info:
        model(zeros(1, 3, 70, 71))
    assert "at least 71" in str(info.value) and " -> ".join(map(str, sizes)) in str(info.value)
