"""Chapter: the command line. ``python -m tinyxception`` checks the built network against the paper."""
import subprocess
import sys
import types

import pytest

import tinyxception as tx
from tinyxception import cli


def run_module(*args):
    """Run ``python -m tinyxception ARGS`` in a fresh interpreter; return the completed process."""
    return subprocess.run([sys.executable, "-m", "tinyxception", *args], capture_output=True, text=True, timeout=300)


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
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_command", "add_arguments", "run", "a fake command"))
    assert cli.main(["fake", "--steps", "3"]) == 7 and calls == [3]


@pytest.mark.parametrize("command", ["train", "ablation"])
def test_real_subcommands_answer_help(command, capsys):
    """train and ablation are registered: their --help lists their own options and exits 0."""
    pytest.importorskip(f"tinyxception.{command}")
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0 and "--epochs" in capsys.readouterr().out
