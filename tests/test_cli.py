"""Chapter: the command line. ``python -m tinyxception`` checks the built network against the paper."""
import os
import shutil
import subprocess
import sys
import types

import pytest

import tinyxception as tx
from tinyxception import cli


def run_module(*args, environment=None):
    """Run ``python -m tinyxception ARGS`` in a fresh interpreter (with extra `environment` variables); return
    the completed process."""
    env = {**os.environ, "TINYXCEPTION_KERNELS": "fast", "TINYXCEPTION_EXERCISES": "0", **(environment or {})}
    return subprocess.run([sys.executable, "-m", "tinyxception", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_default_job_passes_the_paper_checks():
    """The default job exits 0 and reports the three checks as ok, with the numbers it measured."""
    done = run_module()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ok      trainable parameters 22,855,952 (paper Table 3)" in out
    assert "ok      36 conv layers in 14 modules" in out
    assert "ok      spatial sizes 149/147/74/37/19/10" in out
    assert "FAILED" not in out
    assert "forward pass on cpu: batch 1" in out and "(1, 1000)" in out
    assert f"tinyxception {tx.__version__}" in out and "available devices: cpu" in out
    assert "exit_flow.block14.sepconv2.pointwise" in out  # the summary table is printed
    assert "kernels: the fast tier" in out


def test_learner_mode_is_announced_and_its_kernels_are_checked_by_value(tmp_path):
    """TINYXCEPTION_EXERCISES=<folder> never runs silently: the default job says that the learner's kernels run,
    and, since counting parameters cannot see a wrong kernel, compares the logits with the fast tier's. The
    reference tier's files pass that check; the same files with the depthwise forward scaled by 1.01 fail it
    (exit code 1), though every count is still right."""
    reference = tmp_path / "reference"
    shutil.copytree(tx.kernels.learner.PACKAGE_FOLDER.parent / "kernels" / "reference", reference)
    done = run_module(environment={"TINYXCEPTION_EXERCISES": str(reference)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "(learner mode)" in done.stdout and "ok      logits equal the fast tier's" in done.stdout
    conv = reference / "conv.py"
    source = conv.read_text().replace("y += w[:, 0, i, j]", "y += 1.01 * w[:, 0, i, j]")
    assert source != conv.read_text()
    conv.write_text(source)
    done = run_module(environment={"TINYXCEPTION_EXERCISES": str(reference)})
    assert done.returncode == 1 and "FAILED  logits equal the fast tier's" in done.stdout
    assert "ok      trainable parameters 22,855,952" in done.stdout


@pytest.mark.skipif(tx.backend.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_exits_2_with_the_reason():
    """--device cuda on a machine without a usable GPU: exit code 2 and a message saying why (no traceback)."""
    done = run_module("--device", "cuda")
    assert done.returncode == 2
    assert "--device cuda is unavailable" in done.stderr and "Traceback" not in done.stderr


def test_checks_are_measured_not_printed(capsys):
    """A model that is not the paper's fails the parameter check: the checks compare measurements to the paper."""
    model = tx.Xception(width=1 / 8)
    result = tx.summary(model, (3, 299, 299), print_fn=None)
    checks = dict((text.split(" (")[0], passed) for passed, text in cli._check_lines(model, result))
    assert checks == {f"trainable parameters {tx.count_parameters(model):,}": False,
                      "36 conv layers in 14 modules": True, "spatial sizes 149/147/74/37/19/10": True}


def test_bad_batch_is_an_argument_error():
    """--batch must be a positive integer: argparse exits with code 2 before building anything."""
    with pytest.raises(SystemExit) as info:
        cli.main(["--batch", "0"])
    assert info.value.code == 2


def test_subcommands_are_imported_lazily_and_get_their_arguments(monkeypatch):
    """A subcommand's module is imported only when named; its options are parsed and its exit code returned."""
    calls = []
    fake = types.ModuleType("fake_command")
    fake.add_arguments = lambda parser: parser.add_argument("--steps", type=int, default=1)
    fake.run = lambda args: calls.append(args.steps) or 7
    monkeypatch.setitem(sys.modules, "fake_command", fake)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_command", "add_arguments", "fake_command", "run", "a fake command"))
    assert cli.main(["fake", "--steps", "3"]) == 7 and calls == [3]


@pytest.mark.parametrize("command", ["train", "ablation"])
def test_real_subcommands_answer_help(command, capsys):
    """train and ablation are registered: their --help lists their own options and exits 0."""
    pytest.importorskip(f"tinyxception.{command}")
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0 and "--epochs" in capsys.readouterr().out
