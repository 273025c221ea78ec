"""``tx.exercises.check`` and ``python -m tinyxception exercises check | solution | reset``.

A check is only useful if a typical mistake is reported with the case that exposes it, so each planted mistake
below (a wrong padding side, a missing stride, batch-norm statistics treated as constants, pooling ties, a lost
dtype, a recursive walk, ...) is appended to a folder of correct solutions and the verdict must name the case
and what is wrong. The solution command must hold the solution back until the kernel passes (or the learner
insists), and reset must give the stub back without losing the learner's file.
"""
import subprocess
import sys
from pathlib import Path

import pytest

import tinyxception as tx
from tinyxception import exercise_mode
from tinyxception.exercise_report import check_exercise, verdict
from tinyxception.kernels.learner import EXERCISES, PACKAGE_FOLDER, STUBS_FOLDER

from test_exercises import append_function, needs_untouched_stubs, write_reference_folder

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(exercise_mode.exercise_folder() is not None,
                                reason="checks the checker from outside; run it without --exercises")

RECURSIVE_ORDER = """def topological_order(root):
    order, seen = [], set()
    def visit(t):
        if id(t) not in seen:
            seen.add(id(t))
            for i in (t._ctx.inputs if t._ctx is not None else ()):
                if i.requires_grad:
                    visit(i)
            order.append(t)
    visit(root)
    return order
"""
ALL_TIES_GET_THE_GRADIENT = """def max_pool2d_backward(grad, x, y, kernel, stride, pads):
    xpad = pad(x, pads, float("-inf"))
    grad_xpad = backend.array_module(x).zeros_like(xpad)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            tap = window(grad_xpad, i, j, stride, grad.shape[2:])
            tap += grad * (window(xpad, i, j, stride, grad.shape[2:]) == y)
    return unpad(grad_xpad, pads)
"""
MISTAKES = {  # mistake -> (module, the learner's wrong version, words the verdict must contain)
    "wrong padding side": ("conv", "def depthwise_conv2d_forward(x, w, stride, pads, s=depthwise_conv2d_forward):\n"
                           "    return s(x, w, stride, tuple(p[::-1] for p in pads))\n",
                           ["case 3 of 6, padding at the bottom and right only", "pads ((0, 1), (0, 1))",
                            "values differ by up to", "at index"]),
    "stride ignored": ("conv", "def depthwise_conv2d_forward(x, w, stride, pads, s=depthwise_conv2d_forward):\n"
                       "    return s(x, w, 1, pads)\n", ["case 4 of 6, stride 2", "stride 2, pads", "shape"]),
    "float32 lost": ("conv", "def depthwise_conv2d_forward(x, w, stride, pads, s=depthwise_conv2d_forward):\n"
                     "    return s(x.astype('float64'), w.astype('float64'), stride, pads)\n",
                     ["case 6 of 6, float32", "dtype float64, expected float32"]),
    "backward on the wrong padding side": (
        "conv", "def depthwise_conv2d_backward(g, x, w, stride, pads, s=depthwise_conv2d_backward):\n"
                "    return s(g, x, w, stride, tuple(p[::-1] for p in pads))\n",
        ["case 3 of 6, padding at the bottom and right only", "dL/dx: values differ"]),
    "weight gradient of one image only": (
        "conv", "def pointwise_conv2d_backward(g, x, w, s=pointwise_conv2d_backward):\n"
                "    return s(g, x, w)[0], s(g[:1], x[:1], w)[1]\n",
        ["case 2 of 3, two images", "dL/dw: values differ"]),
    "batch statistics treated as constants": (
        "norm", "def batch_norm_backward(grad, x, mean, inv_std, gamma):\n"
                "    return batch_norm_inference_backward(grad, x, mean, inv_std, gamma)\n",
        ["case 1 of 3, images", "dL/dx: values differ"]),
    "every tied maximum takes the gradient": ("pool", ALL_TIES_GET_THE_GRADIENT,
                                              ["case 2 of 5, ties", "values differ"]),
    "sum instead of mean": ("pool", "def global_avg_pool2d_backward(grad, x_shape, s=global_avg_pool2d_backward):\n"
                            "    return s(grad, x_shape) * x_shape[2] * x_shape[3]\n", ["case 1 of 3", "differ"]),
    "recursive walk": ("autograd", RECURSIVE_ORDER, ["case 2 of 2, a chain of 2000 ops", "RecursionError"]),
    "channels given to the groups in turn, not in blocks": (
        "conv", "def conv2d_forward(x, w, stride, pads, groups, s=conv2d_forward):\n"
                "    n, c, h, width = x.shape\n"
                "    x = x.reshape(n, c // groups, groups, h, width).swapaxes(1, 2).reshape(x.shape)\n"
                "    return s(x, w, stride, pads, groups)\n",
        ["case 2 of 7, 2 groups", "groups 2", "values differ"]),
    "grouped backward on the wrong padding side": (
        "conv", "def conv2d_backward(g, x, w, stride, pads, groups, s=conv2d_backward):\n"
                "    return s(g, x, w, stride, tuple(p[::-1] for p in pads), groups)\n",
        ["case 4 of 7, padding at the bottom and right only", "dL/dx: values differ"]),
    "biased variance in the running average": (
        "norm", "def batch_norm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, s=batch_norm_forward):\n"
                "    out = s(x, gamma, beta, running_mean, running_var, momentum, eps)\n"
                "    running_var -= momentum * x.var(axis=channel_axes(x)) / (x.size // x.shape[1] - 1)\n"
                "    return out\n",
        ["case 1 of 3, images", "running_var (updated in place): values differ"]),
    "batch statistics in evaluation mode": (
        "norm", "def batch_norm_inference_forward(x, gamma, beta, running_mean, running_var, eps):\n"
                "    return batch_norm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(), 0.1, eps)[0]\n",
        ["case 1 of 3, images", "running statistics unlike the batch's", "values differ"]),
    "max pool padded with zeros": (
        "pool", "def max_pool2d_forward(x, kernel, stride, pads, s=max_pool2d_forward):\n"
                "    return s(pad(x, pads), kernel, stride, ((0, 0), (0, 0)))\n",
        ["case 2 of 6, all inputs negative, padded (pad with -inf, not 0)", "values differ"]),
    "the gradient passes where y = 0": ("norm", "def relu_backward(grad, y):\n    return grad * (y >= 0)\n",
                                       ["case 1 of 3, features", "some x exactly 0", "values differ"]),
    "the bias forgotten": ("autograd", "def linear_forward(x, w, b, s=linear_forward):\n    return s(x, w, None)\n",
                           ["case 1 of 4, one sample", "b (3,)", "values differ"]),
    "the bias gradient of one sample": ("autograd", "def linear_backward(grad, x, w, s=linear_backward):\n"
                                                  "    return (*s(grad, x, w)[:2], grad[0])\n",
                                        ["case 2 of 3, a batch of 5", "dL/db: values differ"]),
    "softmax without subtracting the row max": (
        "training", "def softmax_cross_entropy_forward(logits, labels):\n"
                  "    log_p = backend.array_module(logits).log(backend.array_module(logits).exp(logits) / "
                  "backend.array_module(logits).exp(logits).sum(axis=1, keepdims=True))\n"
                  "    return -log_p[range(len(labels)), labels].mean(), log_p\n",
        ["case 3 of 4, large logits (subtract the row max)", "values differ by up to inf"]),
    "the loss gradient not divided by the batch size": (
        "training", "def softmax_cross_entropy_backward(grad, log_p, labels, s=softmax_cross_entropy_backward):\n"
                  "    return s(grad, log_p, labels) * len(labels)\n", ["case 2 of 4, a batch of 6", "values differ"]),
    "Nesterov ignored": ("training", "def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov, s=sgd_momentum_step):\n"
                                  "    return s(p, g, velocity, lr, momentum, False)\n",
                         ["case 3 of 4, Nesterov", "p (updated in place): values differ"]),
    "global average as a sum": ("pool", "def global_avg_pool2d_forward(x):\n    return x.sum(axis=(2, 3))\n",
                                ["case 1 of 3, x (2, 3, 4, 5)", "values differ"]),
    "the residual forgotten": ("network", "def middle_flow_block(channels, rng, s=middle_flow_block):\n"
                               "    block = s(channels, rng)\n    block.residual = False\n    return block\n",
                               ["case 1 of 2, 4 channels", "train mode: values differ"]),
    "batch norm with PyTorch's momentum 0.1, not Keras' 0.01": (
        "network", "def middle_flow_block(channels, rng, s=middle_flow_block):\n    block = s(channels, rng)\n"
                   "    for layer in block.modules():\n        layer.momentum = 0.1\n    return block\n",
        ["case 1 of 2", "eval mode, with the running statistics that step left: values differ"]),
    "one separable convolution instead of three": (
        "network", "def middle_flow_block(channels, rng):\n    from tinyxception import nn\n"
                   "    return nn.SeparableConv2d(channels, channels, rng=rng)\n",
        ["case 1 of 2", "differ from parameter 3 on: yours [], expected [(4,), (4,), (4, 1, 3, 3)] (of 12; the "
         "library's sepconv1_bn.gamma, sepconv1_bn.beta, sepconv2.depthwise.weight)"]),
    "the shortcut without stride 2": (
        "network", "def down_block(i, m, o, rng, leading_relu=True, s=down_block):\n    block = s(i, m, o, rng, "
                   "leading_relu)\n    block.shortcut.stride = 1\n    return block\n",
        ["case 1 of 2, block 2: leading_relu False", "(2, 6, 3, 3) and b of shape (2, 6, 6, 6)", "do not broadcast"]),
    "the max pool without \"same\" padding": (
        "network", "def down_block(i, m, o, rng, leading_relu=True, s=down_block):\n    block = s(i, m, o, rng, "
                   "leading_relu)\n    block.pool.padding = 'valid'\n    return block\n",
        ["case 1 of 2", "(2, 6, 2, 2) and b of shape (2, 6, 3, 3)", "do not broadcast"]),
    "the shortcut after the leading ReLU": (
        "network", "def down_block(i, m, o, rng, leading_relu=True, s=down_block):\n    from tinyxception import nn\n"
                   "    block = s(i, m, o, rng, False)\n"
                   "    return nn.Sequential(nn.ReLU(), block) if leading_relu else block\n",
        ["case 2 of 2, leading_relu True", "train mode: values differ"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_planted_mistake_is_reported_with_the_case_that_exposes_it(tmp_path, mistake):
    """The verdict is FAIL with the number and label of the first case the mistake breaks, its parameters and
    what differs (shape, dtype, or the largest difference, where, and which gradient)."""
    module, source, words = MISTAKES[mistake]
    folder = write_reference_folder(tmp_path)
    append_function(folder, module, source)
    name = source.split("(")[0].removeprefix("def ")
    text = verdict(name, folder)
    assert text.startswith(f"{name}: FAIL on case"), text
    for word in words:
        assert word in text, text


def test_check_reads_the_file_again_and_prints_each_verdict(tmp_path, capsys):
    """tx.exercises.check: "not implemented yet" for a stub, "pass" once the file holds a solution (the edit
    shows at the very next call), a FAIL with the error for a file that does not parse, True only for a pass."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "pool.py").write_text((STUBS_FOLDER / "pool.py.txt").read_text())
    assert tx.exercises.check("global_avg_pool2d_backward", folder) is False
    assert "global_avg_pool2d_backward: not implemented yet" in capsys.readouterr().out
    append_function(folder, "pool", "def global_avg_pool2d_backward(grad, x_shape):\n"
                                    "    return grad[:, :, None, None] * (0 * grad[0, 0] + 1) / (x_shape[2] * x_shape[3]) "
                                    "+ 0 * __import__('numpy').zeros(x_shape, grad.dtype)\n")
    assert tx.exercises.check("global_avg_pool2d_backward", folder) is True
    assert "global_avg_pool2d_backward: pass (3 cases)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no exercise 'depthwise'"):
        tx.exercises.check("depthwise", folder)
    (folder / "pool.py").write_text("def global_avg_pool2d_backward(grad, x_shape:\n")
    assert tx.exercises.check("global_avg_pool2d_backward", folder) is False
    assert "FAIL on SyntaxError" in capsys.readouterr().out, "a file that does not load: its error, no traceback"


def run_exercises(*args, stdin=subprocess.DEVNULL):
    """(exit code, stdout) of ``python -m tinyxception exercises ARGS`` with no one at the keyboard."""
    done = subprocess.run([sys.executable, "-m", "tinyxception", "exercises", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, stdin=stdin)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def test_command_line_check_exit_codes(tmp_path):
    """check NAME exits 0 with "pass" on a solution and 1 with the failing case on a mistake."""
    folder = write_reference_folder(tmp_path)
    assert run_exercises("check", "max_pool2d_backward", "--folder", str(folder))[0] == 0
    append_function(folder, "pool", ALL_TIES_GET_THE_GRADIENT)
    code, out = run_exercises("check", "max_pool2d_backward", "--folder", str(folder))
    assert code == 1 and "FAIL on case 2 of 5, ties" in out
    code, report = run_exercises("--folder", str(folder))
    assert code == 0 and f"{len(EXERCISES) - 1} of {len(EXERCISES)} pass" in report
    assert "case 2 of 5, ties" in report, "the progress report shows the same failing case"
    assert run_exercises("check", "nonsense", "--folder", str(folder))[0] == 2
    assert run_exercises("solution", "--folder", str(folder))[0] == 2


@needs_untouched_stubs
def test_solution_is_held_back_before_passing_and_shown_after(tmp_path):
    """On the stubs, with nobody to confirm (stdin not a terminal), the solution is refused with a message; with
    --yes it is shown beside the stub; on a passing folder it is shown at once, beside the learner's code."""
    code, refused = run_exercises("solution", "depthwise_conv2d_forward")
    assert code == 1 and "stays hidden" in refused and "window(xpad" not in refused
    code, shown = run_exercises("solution", "depthwise_conv2d_forward", "--yes")
    assert code == 0 and "window(xpad" in shown and 'raise todo("depthwise_conv2d_forward")' in shown
    folder = write_reference_folder(tmp_path)
    append_function(folder, "conv", "def depthwise_conv2d_forward(x, w, stride, pads, mine=depthwise_conv2d_forward):"
                                    "\n    return mine(x, w, stride, pads)  # my own words\n")
    code, shown = run_exercises("solution", "depthwise_conv2d_forward", "--folder", str(folder))
    assert code == 0 and "window(xpad" in shown and "# my own words" in shown


def test_reset_gives_the_stub_back_and_keeps_the_learners_file(tmp_path):
    """reset NAME: that function is the stub again (check says "not implemented yet"), the file's other
    functions are untouched (they still pass), and the learner's file as it was is kept as a backup. A file
    that no longer parses gets all its stubs back, also with a backup."""
    folder = write_reference_folder(tmp_path)
    before = (folder / "conv.py").read_text()
    assert run_exercises("reset", "depthwise_conv2d_forward", "--folder", str(folder))[0] == 0
    assert check_exercise("depthwise_conv2d_forward", folder)[0] == "not started"
    assert check_exercise("depthwise_conv2d_backward", folder)[0] == "pass"
    assert [path.read_text() for path in folder.glob("conv.py.bak-*")] == [before]
    (folder / "norm.py").write_text("def batch_norm_backward(:\n")
    tx.exercises.reset("batch_norm_backward", folder)
    assert (folder / "norm.py").read_text() == (STUBS_FOLDER / "norm.py.txt").read_text()
    assert len(list(folder.glob("norm.py.bak-*"))) == 1


@needs_untouched_stubs
def test_the_pristine_stubs_are_the_shipped_stubs():
    """What reset restores (kernels/stubs/<module>.py.txt) is exactly what tinyxception/exercises/ ships."""
    for module in {e.module for e in EXERCISES.values()}:
        assert (STUBS_FOLDER / f"{module}.py.txt").read_text() == (PACKAGE_FOLDER / f"{module}.py").read_text()
