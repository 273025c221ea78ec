"""The command line, ``python -m tinyxception`` (or the ``tinyxception`` script).

    python -m tinyxception                       # the paper network: summary, checks, one timed 299x299 forward
    python -m tinyxception --device cuda --batch 8
    python -m tinyxception train --help          # train the 32x32 preset (tinyxception/train.py)
    python -m tinyxception ablation --help       # the paper's Fig. 9 / Fig. 10 ablations in small
    python -m tinyxception exercises             # your kernels: the progress report; check / solution / reset NAME
    python -m tinyxception predict photo.jpg     # classify photos, Keras' ImageNet weights (tinyxception/pretrained.py)

The default job checks the built network against the paper, each number measured on the real
model: 22,855,952 trainable parameters (Table 3), 36 conv layers in 14 modules, and feature maps
of 149/147/74/37/19/10 pixels. It exits with 1 when a check fails and 2 when the device is unusable.
"""

import argparse
import importlib
import sys
import time

from . import __version__, backend, kernels
from .autograd import no_grad, tensor
from .models import Xception
from .summary import count_conv_layers, summary
from .arguments import int_at_least

PAPER_PARAMETERS = 22_855_952
PAPER_CONV_LAYERS = (36, 14)
PAPER_SIZES = (149, 147, 74, 37, 19, 10)
INPUT_SHAPE = (3, 299, 299)

SUBCOMMANDS = {
    "train": ("tinyxception.arguments", "add_train_arguments", "tinyxception.train", "run_train",
              "train the 32x32 preset Xception.small on a small dataset"),
    "ablation": ("tinyxception.ablation", "add_ablation_arguments", "tinyxception.ablation", "run_ablation",
                 "the paper's ablations in small: residual connections (Fig. 9), intermediate activation (Fig. 10)"),
    "exercises": ("tinyxception.exercise_report", "add_exercise_arguments", "tinyxception.exercise_report",
                  "run_exercises", "your kernels: the progress report, or check / solution / reset one exercise (NAME)"),
    "predict": ("tinyxception.pretrained", "add_predict_arguments", "tinyxception.pretrained", "run_predict",
                "classify photos (IMAGE...) with the ImageNet weights: top classes and probabilities"),
}
"""name -> (module and name of its add-arguments function, module and name of its run function, help); the
modules are imported only when the subcommand runs."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the default job (the subcommands get their own parser, see ``main``)."""
    commands = "\n".join(f"  {name:<10}{help_}" for name, (*_, help_) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="python -m tinyxception", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the paper's Xception, print its summary, check it against the paper "
                    "and time one forward pass on 299x299 inputs.",
        epilog=f"subcommands (options: python -m tinyxception COMMAND --help):\n{commands}")
    parser.add_argument("--device", choices=backend.DEVICES, default="cpu", help="where to run (default: cpu)")
    parser.add_argument("--batch", type=int_at_least(1), default=1, help="batch size of the timed forward pass")
    parser.add_argument("--version", action="version", version=f"tinyxception {__version__}")
    return parser


def _check_lines(model, result) -> list[tuple[bool, str]]:
    """(passed, text) for each of the paper's numbers, measured on the model and its summary."""
    convs, modules = count_conv_layers(model)
    sizes = tuple(result.output_shapes[name][-1] for name in model.feature_sizes(INPUT_SHAPE[-1]))
    shown = "/".join(str(s) for s in sizes)
    return [
        (result.trainable == PAPER_PARAMETERS, f"trainable parameters {result.trainable:,} (paper Table 3"
         + (")" if result.trainable == PAPER_PARAMETERS else f": {PAPER_PARAMETERS:,})")),
        ((convs, modules) == PAPER_CONV_LAYERS, f"{convs} conv layers in {modules} modules"
         + ("" if (convs, modules) == PAPER_CONV_LAYERS else " (paper: 36 in 14)")),
        (sizes == PAPER_SIZES, f"spatial sizes {shown}"
         + ("" if sizes == PAPER_SIZES else f" (paper: {'/'.join(map(str, PAPER_SIZES))})")),
    ]


def check_paper_network(args) -> int:
    """The default job; returns the exit code (0 all checks ok, 1 a check failed; 2 device unusable: ``run_job``)."""
    print(f"tinyxception {__version__}, available devices: {', '.join(backend.available_devices())}")
    print(kernels.describe())
    model = Xception(seed=0).to(args.device).eval()
    print(f"Xception (paper configuration) on {args.device}, input {INPUT_SHAPE}\n")
    result = summary(model, INPUT_SHAPE)
    checks = _check_lines(model, result)
    print("\nchecks against the paper:")
    for passed, text in checks:
        print(f"  {'ok' if passed else 'FAILED':<8}{text}")

    rng = backend.cpu_module().random.default_rng(0)
    x = tensor(rng.standard_normal((args.batch,) + INPUT_SHAPE, dtype="float32"), device=args.device)
    backend.synchronize()
    start = time.perf_counter()
    with no_grad():
        logits = model(x)
    backend.synchronize()
    seconds = time.perf_counter() - start
    print(f"\nforward pass on {args.device}: batch {args.batch} x {INPUT_SHAPE} -> {logits.shape} in "
          f"{seconds:.3f} s ({1000 * seconds / args.batch:.1f} ms per image)")
    if kernels.in_use() != "fast":  # the checks above count; this one computes, on the kernels in use
        passed, text = _same_logits_as_the_fast_tier(model, x, logits)
        print(f"  {'ok' if passed else 'FAILED':<8}{text}")
        checks.append((passed, text))
    return 0 if all(passed for passed, _ in checks) else 1


def _same_logits_as_the_fast_tier(model, x, logits) -> tuple[bool, str]:
    """(passed, line): whether the logits of the kernels in use equal the fast tier's to float32 rounding."""
    choice = kernels.in_use()
    try:
        kernels.use("fast")
        with no_grad():
            expected = model(x).numpy()
    finally:
        kernels.use(choice)
    difference = float(abs(logits.numpy() - expected).max())
    agree = difference <= 1e-4 * float(abs(expected).max())
    return agree, f"logits equal the fast tier's (largest difference {difference:.2g})"


def run_subcommand(name: str, argv: list[str]) -> int:
    """Import the subcommand's module, let it add its options, parse `argv` and run it (see ``run_job``)."""
    add_module, add_name, run_module, run_name, help_ = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"python -m tinyxception {name}", description=help_)
    getattr(importlib.import_module(add_module), add_name)(parser)
    args = parser.parse_args(argv)
    return run_job(f"tinyxception {name}", getattr(importlib.import_module(run_module), run_name), args)


def run_job(prog: str, job, args) -> int:
    """``job(args)``'s exit code, after checking that a ``--device cuda`` is usable.

    An unusable GPU, a ValueError or OSError from the run (a setting the data cannot satisfy, an unwritable path),
    a MemoryError (a step that cannot fit), or an ImportError (an optional extra that is not installed: the
    message says which) ends it with one line on stderr and exit code 2, like an argument error, instead of a
    traceback; Ctrl-C ends it with one line and exit code 130 (128 + SIGINT, as a shell reports it).
    """
    try:
        if getattr(args, "device", "cpu") == "cuda" and not backend.cuda_available():
            raise ValueError(f"--device cuda is unavailable: {backend.cuda_problem()}")
        return job(args)
    except (ValueError, OSError, ImportError, MemoryError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point: a subcommand when the first argument names one, else the default job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    return run_job("tinyxception", check_paper_network, build_parser().parse_args(argv))
