"""The command line's options: argparse types that check a value as the library would, and the options shared by
the subcommands (``train`` and ``ablation``). Only the command line imports this module."""

import argparse
import math

from . import backend
from .checks import check_number
from .data import DATASETS
from .train import EMA_DECAY, OPTIMIZERS, SHORT_RUN_BN_MOMENTUM


def int_at_least(minimum: int):
    """An argparse type: the text as an int of at least `minimum`, else an argument error saying so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value
    return parse


def number_in(low: float, high: float, brackets: str = "[]"):
    """An argparse type: the text as a float between low and high (``brackets`` as in ``check_number``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        try:
            return check_number(value, "the value", low, high, brackets)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def add_common_arguments(parser, epochs: int = 10) -> None:
    """The options shared by ``train`` and ``ablation``: data, budget, optimiser, device."""
    parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS),
                        help="digits: scikit-learn's 8x8 digits upsampled to 32x32 (extra 'digits'); "
                             "shapes: built-in procedurally drawn shapes")
    parser.add_argument("--epochs", type=int_at_least(1), default=epochs)
    parser.add_argument("--batch-size", type=int_at_least(1), default=64)
    parser.add_argument("--lr", type=number_in(0, math.inf, "()"), default=0.05, help="initial learning rate")
    parser.add_argument("--optimizer", default="sgd", choices=sorted(OPTIMIZERS),
                        help="sgd: SGD with Nesterov momentum 0.9 (the paper's ImageNet runs: momentum 0.9); "
                             "rmsprop: TensorFlow's RMSProp (the paper's JFT runs)")
    parser.add_argument("--lr-decay", type=number_in(0, 1, "(]"), default=0.94,
                        help="multiply the lr by this every --decay-every epochs (paper: 0.94 every 2)")
    parser.add_argument("--decay-every", type=int_at_least(1), default=2)
    parser.add_argument("--val-fraction", type=number_in(0, 1, "()"), default=0.2)
    parser.add_argument("--device", default="cpu", choices=backend.DEVICES)
    parser.add_argument("--bn-momentum", type=number_in(0, 1), default=SHORT_RUN_BN_MOMENTUM,
                        help="weight of each batch in BatchNorm's running statistics (default %(default)s; "
                             "Keras' 0.01 needs thousands of steps to forget the initial statistics)")
    parser.add_argument("--ema", type=number_in(0, 1, "[)"), default=EMA_DECAY, metavar="DECAY",
                        help="validate (and checkpoint) Polyak-averaged weights, an exponential moving average of "
                             "this decay, as the paper evaluates (default %(default)s; 0 turns it off)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar or epoch lines")


def add_train_arguments(parser) -> None:
    """Options of ``python -m tinyxception train``."""
    add_common_arguments(parser)
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seeds the split, the shuffling and the model's weights")
    parser.add_argument("--plot", default=None, metavar="PNG", help="save loss/accuracy curves here (extra 'plot')")
    parser.add_argument("--checkpoint", default=None, metavar="NPZ", help="save the weights here after each epoch")
    parser.add_argument("--parallel", default=None, choices=("sync", "async"),
                        help="under mpiexec: synchronous or asynchronous SGD over the ranks (extra 'distributed')")
