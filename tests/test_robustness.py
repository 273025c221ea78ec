"""Chapter: a package that survives a learner's first hour. Mistakes get messages that teach (what was expected,
what was given, how to fix it); debug mode finds the first NaN; extreme values stay finite; the autograd engine
keeps no memory it should not.
"""
import gc
import math
import os
import re
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


# --- round two: operators, debug mode without holes --------------------------------------------------------------

@pytest.mark.parametrize("other", [None, "2", object()], ids=["None", "text", "object"])
def test_an_operator_with_a_non_number_is_refused(other):
    """``t + None`` used to give NaN (NumPy turns None into NaN when a float dtype is forced) while F.add(t, None)
    refused; every operator now goes through the shared operand check, which refuses anything that is not numbers
    and names the operator."""
    t = tx.tensor(np.ones(3, np.float32))
    for expression, call in (("a + b", lambda: t + other), ("a * b", lambda: t * other),
                             ("a - b", lambda: other - t), ("a / b", lambda: t / other)):
        with pytest.raises(TypeError, match=f"{re.escape(expression)}: cannot make an array of numbers"):
            call()


def test_debug_mode_covers_operators_and_results():
    """With debug mode on, ``t * float("inf")`` passed (only F.mul scanned its inputs). Function.apply now scans
    every input and result, so an operator is covered by construction and the refusal names the op."""
    t = tx.tensor(np.ones(3, np.float32), requires_grad=True)
    with tx.debug_mode():
        with pytest.raises(ValueError, match="Mul: input 1 of shape .* 1 infinite"):
            t * float("inf")
        with pytest.raises(ValueError, match="Mul: its result .* infinite"), np.errstate(over="ignore"):
            t * 1e30 * 1e30  # finite inputs, an overflow in the result
    assert np.isinf((t * float("inf")).numpy()).all()  # debug off: no scan, the usual arithmetic


class _ExplodingBackward(tx.Function):
    """Identity forward whose backward makes an infinite gradient (a stand-in for an op with a bad derivative)."""

    def forward(self, a):
        return a.copy()

    def backward(self, grad):
        return grad * np.inf


def test_debug_mode_refuses_non_finite_gradients_naming_the_op():
    """A non-finite gradient made inside backward() used to flow into .grad unnoticed; in debug mode it is refused
    by the op whose backward made it. Without debug mode the same backward runs (no scan)."""
    x = tx.tensor(np.ones(3, np.float32), requires_grad=True)
    with tx.debug_mode():
        loss = (_ExplodingBackward.apply(x) * 2.0).sum()
        with pytest.raises(ValueError, match="_ExplodingBackward.backward: the gradient of input 0 .* 3 infinite"):
            loss.backward()
    (_ExplodingBackward.apply(x) * 2.0).sum().backward()
    assert np.isinf(x.grad).all()


def test_float16_batch_norm_training_is_refused_before_the_statistics_change():
    """float16 sums of a channel's values (and of their squares) overflow at 65504: batch norm in training wrote
    NaN into the running statistics before anything refused. Training in float16 is now refused clearly, with the
    statistics untouched; evaluation in float16 still works."""
    x = np.full((4, 2, 64, 64), 8.0, np.float16)
    mean, var = np.zeros(2, np.float16), np.ones(2, np.float16)
    with pytest.raises(TypeError, match="batch_norm: training in float16 would overflow"):
        F.batch_norm(x, np.ones(2, np.float16), np.zeros(2, np.float16), mean, var, training=True)
    assert (mean == 0).all() and (var == 1).all()
    out = F.batch_norm(x, np.ones(2, np.float16), np.zeros(2, np.float16), mean, var, training=False)
    assert out.dtype == np.float16 and np.isfinite(out.numpy()).all()


# --- round two: autograd surprises -------------------------------------------------------------------------------

def test_two_leaves_never_share_one_gradient_array():
    """``((a + b) * c).sum().backward()`` used to give ``a.grad is b.grad`` (Add hands one array to both), so
    ``a.grad *= 0.5`` halved b.grad too; and x.sum() gave a read-only broadcast view. Every leaf now owns its
    gradient: no shared memory, and each one writable."""
    a, b, c = (tx.tensor(np.full(3, v, np.float32), requires_grad=True) for v in (1.0, 2.0, 3.0))
    ((a + b) * c).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 0.5
    np.testing.assert_array_equal(b.grad, [3.0, 3.0, 3.0])
    x = tx.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    x.sum().backward()
    x.grad *= 2
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))


def test_backward_takes_lists_and_arrays_in_the_tensors_dtype():
    """``backward(np.ones(3))`` on a float32 graph used to give float64 gradients and ``backward([1., 1., 1.])`` an
    AttributeError. The gradient is converted to the tensor's dtype and device; a wrong shape is a ValueError
    naming both shapes; the caller's array is never aliased by a leaf's .grad."""
    for given in (np.ones(3), [1.0, 1.0, 1.0], tx.tensor(np.ones(3))):
        x = tx.tensor(np.ones(3, np.float32), requires_grad=True)
        (x * 2.0).backward(given)
        assert x.grad.dtype == np.float32
        np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
    leaf, seed = tx.tensor(np.ones(3, np.float32), requires_grad=True), np.ones(3, np.float32)
    leaf.backward(seed)
    assert not np.shares_memory(leaf.grad, seed)
    with pytest.raises(ValueError, match=r"backward\(grad\): gradient shape \(2,\) does not match tensor shape \(3,\)"):
        (x * 2.0).backward([1.0, 1.0])


def test_debug_mode_detects_an_input_changed_between_forward_and_backward():
    """Changing an input in place after the forward pass (``x.data[...] = ...``, or reusing its buffer) silently gave
    gradients of the old values. In debug mode each recorded op keeps a checksum of its inputs, and backward()
    refuses when one changed, naming the op; the same change with debug mode off is not detected (documented)."""
    w = tx.tensor(np.full(3, 2.0, np.float32), requires_grad=True)
    with tx.debug_mode():
        x = tx.tensor(np.ones(3, np.float32), requires_grad=True)
        loss = (x * w).sum()
        w.data[...] = 5.0
        with pytest.raises(RuntimeError, match="Mul: input 1 of shape \\(3,\\) changed after the forward pass"):
            loss.backward()
        x = tx.tensor(np.ones(3, np.float32), requires_grad=True)
        (x * w).sum().backward()  # no change in between: fine
        np.testing.assert_array_equal(x.grad, [5.0, 5.0, 5.0])


class _TorchLike:
    """Stands for a torch.Tensor (torch is no dependency): its type lives in a module named torch."""
    __module__ = "torch"
    dtype, shape = "torch.float32", (3,)

    def __array__(self, *args, **kwargs):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad.")


def test_a_torch_tensor_is_refused_with_the_conversion_to_use():
    """A torch tensor with requires_grad=True passed to an op raised torch's own RuntimeError; the package
    recognises torch's types by their module name (without importing torch) and says how to convert."""
    for call in (lambda: tx.tensor(_TorchLike()), lambda: F.relu(_TorchLike()),
                 lambda: tx.tensor(np.ones(3, np.float32)) + _TorchLike()):
        with pytest.raises(TypeError, match=r"torch\._TorchLike.*x\.detach\(\)\.cpu\(\)\.numpy\(\)"):
            call()


# --- round two: documented calls never end in a raw error --------------------------------------------------------

def _param():
    """One trainable parameter."""
    return nn.Parameter(np.ones(2, np.float32))


DATA = (np.zeros((8, 3, 17, 17), np.float32), np.zeros(8, np.int64))
EMPTY = (np.zeros((0, 3, 17, 17), np.float32), np.zeros(0, np.int64))
OPT = tx.optim.SGD(SMALL.parameters(), lr=0.1)

BAD_CALLS = {
    "fit-batch-size-0": (lambda: tx.train.fit(SMALL, DATA, DATA, 1, OPT, batch_size=0, progress=False),
                         ValueError, ["fit: batch_size", "positive int", "0"]),
    "fit-empty-validation": (lambda: tx.train.fit(SMALL, DATA, EMPTY, 1, OPT, batch_size=4, progress=False),
                             ValueError, ["fit: val_data", "at least one sample", "0 samples"]),
    "fit-no-optimizer": (lambda: tx.train.fit(SMALL, DATA, DATA, 1, None, batch_size=4, progress=False),
                         TypeError, ["fit: optimizer", "Optimizer", "NoneType"]),
    "fit-negative-seed": (lambda: tx.train.fit(SMALL, DATA, DATA, 1, OPT, batch_size=4, seed=-1, progress=False),
                          ValueError, ["fit: seed", "-1"]),
    "fit-not-a-pair": (lambda: tx.train.fit(SMALL, DATA[0], DATA, 1, OPT, progress=False), TypeError,
                       ["fit: train_data", "pair (x, y)"]),
    "evaluate-empty": (lambda: tx.train.evaluate(SMALL, *EMPTY), ValueError, ["evaluate", "at least one sample"]),
    "sgd-of-arrays": (lambda: tx.optim.SGD([np.ones(3)], lr=0.1), TypeError, ["SGD", "Tensors", "ndarray"]),
    "sgd-lr-text": (lambda: tx.optim.SGD([_param()], lr="0.1"), ValueError, ["SGD: lr", "(0, inf)", "'0.1'"]),
    "sgd-lr-nan": (lambda: tx.optim.SGD([_param()], lr=float("nan")), ValueError, ["SGD: lr", "nan"]),
    "sgd-momentum": (lambda: tx.optim.SGD([_param()], lr=0.1, momentum=-1), ValueError, ["SGD: momentum", "-1"]),
    "rmsprop-eps": (lambda: tx.optim.RMSProp([_param()], lr=0.1, eps="1"), ValueError, ["RMSProp: eps", "'1'"]),
    "step-decay-every": (lambda: tx.optim.StepDecay(OPT, every=1.5), ValueError, ["StepDecay: every", "1.5"]),
    "step-decay-optimizer": (lambda: tx.optim.StepDecay(None), TypeError, ["StepDecay: optimizer", "NoneType"]),
    "ema-of-a-number": (lambda: tx.optim.ExponentialMovingAverage(3), TypeError, ["ExponentialMovingAverage",
                                                                                 "int"]),
    "count-parameters-of-a-list": (lambda: tx.count_parameters([1]), TypeError, ["count_parameters", "Module",
                                                                                "list"]),
    "count-conv-layers": (lambda: tx.count_conv_layers(nn.ReLU()), TypeError, ["count_conv_layers", "Xception"]),
    "summary-shape": (lambda: tx.summary(SMALL, (3, -32, 32)), ValueError, ["summary: input_shape", "(C, H, W)"]),
    "setup-optimizer": (lambda: tx.train.setup_training(SMALL, optimizer="adam"), ValueError,
                        ["setup_training", "'adam'", "sgd"]),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_documented_calls_refuse_bad_arguments_with_a_message(case):
    """Bad arguments to the public functions of optim, train and summary used to end in ZeroDivisionError,
    AttributeError, a comparison TypeError or NumPy's message (or be accepted, like lr=nan); each now raises
    ValueError or TypeError naming the function, the argument and what was given."""
    call, error, fragments = BAD_CALLS[case]
    with pytest.raises(error) as info:
        call()
    missing = [fragment for fragment in fragments if fragment not in str(info.value)]
    assert not missing, f"{missing} not in: {info.value}"


# --- round two: the command line finds bad paths first -----------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["train", "--plot", "missing/dir/p.png"], ["--plot", "missing/dir", "does not exist"]),
    (["train", "--checkpoint", "missing/dir/c.npz"], ["--checkpoint", "missing/dir", "does not exist"]),
    (["ablation", "--plot", "missing/dir/a.png"], ["--plot", "missing/dir", "does not exist"]),
], ids=["train-plot", "train-checkpoint", "ablation-plot"])
def test_bad_output_paths_stop_the_command_before_training(argv, words, capsys, monkeypatch, tmp_path):
    """A --plot or --checkpoint into a missing folder used to fail after the whole run (or the first epoch), and the
    ablation printed no results at all. Now the paths are checked first: exit code 2, one line naming the option
    and the path, and no training (fit is never called)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tx.train, "fit", lambda *a, **k: pytest.fail("trained before checking the paths"))
    code = cli.main(argv + ["--dataset", "shapes", "--epochs", "1", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and all(word in error for word in words), error


def test_a_plot_name_without_an_extension_is_reported_as_written(capsys, monkeypatch, tmp_path):
    """``--plot curves`` writes curves.png (matplotlib adds the extension); the command used to say ``saved curves``.
    It now names the file that exists. (Training is replaced by a one-epoch history: only the plot matters here.)"""
    monkeypatch.chdir(tmp_path)
    history = tx.train.History()
    history.append(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, lr=0.1, time=1.0)
    monkeypatch.setattr(tx.train, "fit", lambda *args, **kwargs: history)
    code = cli.main(["train", "--dataset", "shapes", "--epochs", "1", "--no-progress", "--plot", "curves"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "curves.png").is_file() and "saved curves.png" in out, out


def test_ctrl_c_during_training_is_one_line_and_exit_code_130(capsys, monkeypatch):
    """Ctrl-C in the middle of ``train`` printed a 73-line traceback; now one line on stderr and exit code 130
    (128 + SIGINT, what a shell reports for a program stopped by Ctrl-C)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tx.train, "fit", interrupted)
    try:
        code = cli.main(["train", "--dataset", "shapes", "--epochs", "1", "--no-progress"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the command line (a traceback for the user)")
    error = capsys.readouterr().err
    assert code == 130 and error == "tinyxception train: interrupted\n", error


# --- round two: a memory guard -----------------------------------------------------------------------------------

def test_a_step_that_cannot_fit_is_refused_before_it_starts(monkeypatch):
    """A 1x3x2000x2000 training step used to grow until the process was killed. The model now estimates the
    activation memory from its geometry and refuses, naming the estimate and the free memory, when the estimate
    exceeds what the system can give (faked here as 1 GiB); the same call under no_grad needs far less and runs
    the check without refusing; when the free memory cannot be read, nothing is refused."""
    model = tx.Xception.small(seed=0)
    x = np.zeros((64, 3, 256, 256), np.float32)  # 48 MiB of input; the training step would need several GiB
    monkeypatch.setattr(tx.memory, "available_bytes", lambda: 2 ** 30)
    with pytest.raises(MemoryError, match=r"training step on a batch of shape \(64, 3, 256, 256\) needs at least "
                                          r"[\d.]+ GiB .* only 1.0 GiB"):
        model(x)
    needed = tx.memory.activation_bytes(model, x.shape, 4, recording=True)
    assert needed > 2 ** 30 > tx.memory.activation_bytes(model, x.shape, 4, recording=False)
    monkeypatch.setattr(tx.memory, "available_bytes", lambda: None)
    tx.memory.check_memory(model, tx.tensor(x))  # unknown free memory: no refusal


@pytest.mark.parametrize("shape", [(8, 3, 64, 64), (2, 3, 48, 40)])
def test_the_memory_estimate_is_below_what_a_step_really_allocates(shape):
    """The guard must never refuse a step that would have fitted, so its estimate is a lower bound: tracemalloc's
    peak of a real training step (forward and backward of Xception.small) is at least the estimate."""
    model = tx.Xception.small(seed=0)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    tracemalloc.start()
    try:
        F.cross_entropy(model(x), np.zeros(shape[0], np.int64)).backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = tx.memory.activation_bytes(model, shape, 4, recording=True)
    assert estimate <= peak, f"estimate {estimate} bytes, measured peak {peak} bytes"
