"""The kernels: the array-in, array-out math of every op, in tiers, chosen by one registry.

    kernels/reference/   plain NCHW kernels written the way a good learner writes them: read these
    kernels/fast/        the same kernels made fast; each file says "the reference is ...; optimisations: ..."
    a learner's folder   tinyxception/exercises/ (or a folder of your own): your kernels, for the exercises

The ops call ``kernels.active.<name>(...)``. ``use("fast")`` (the default), ``use("reference")`` or
``use(folder)`` rebinds every name of ``active`` at once, so the choice costs nothing per call. With a learner's
folder, the exercises come from the folder and every other kernel from the reference tier. From the shell:
``TINYXCEPTION_KERNELS=reference python ...``; ``TINYXCEPTION_EXERCISES=1`` (or a folder) for the learner's.
Whatever a fast kernel does inside, it returns an (N, C, H, W) array of the reference's values, shape and
dtype; no kernel and no test may depend on how it is stored.
"""
import importlib
import os
from pathlib import Path

from . import learner
from .fast import conv as fast_conv, depthwise as fast_depthwise, norm as fast_norm, pool as fast_pool

KERNELS = {
    "autograd": ("topological_order", "linear_forward", "linear_backward"),
    "conv": ("depthwise_conv2d_forward", "depthwise_conv2d_backward", "pointwise_conv2d_forward",
             "pointwise_conv2d_backward", "conv2d_forward", "conv2d_backward"),
    "norm": ("batch_norm_forward", "batch_norm_backward", "batch_norm_inference_forward",
             "batch_norm_inference_backward", "relu_forward", "relu_backward"),
    "pool": ("max_pool2d_forward", "max_pool2d_backward", "global_avg_pool2d_forward", "global_avg_pool2d_backward"),
    "training": ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "sgd_momentum_step"),
}
"""module -> the kernels it defines, in every tier and in the learner's folder."""

TIERS = ("fast", "reference")
_REFERENCE = {module: importlib.import_module(f".reference.{module}", __name__) for module in KERNELS}
_FAST = (fast_depthwise, fast_conv, fast_norm, fast_pool)
ENVIRONMENT_VARIABLE = "TINYXCEPTION_KERNELS"


def tier(name: str) -> dict:
    """kernel name -> function of tier `name`: "reference", or "fast" (the fast version where there is one)."""
    if name not in TIERS:
        raise ValueError(f"kernels: tier must be one of {TIERS} or a learner's folder, got {name!r}")
    table = {kernel: getattr(_REFERENCE[module], kernel) for module, kernels in KERNELS.items() for kernel in kernels}
    if name == "fast":
        table.update({kernel: getattr(fast, kernel) for fast in _FAST for kernel in table if hasattr(fast, kernel)})
    return table


class _Active:
    """The kernels in use, one attribute per kernel name (set by ``use``)."""


active = _Active()
_in_use: str | Path = "fast"


def use(choice="fast") -> None:
    """Run the library on the "fast" tier (the default), the "reference" tier, or a learner's folder (a path):
    its exercises, with the reference tier for every other kernel."""
    global _in_use
    if isinstance(choice, str) and choice in TIERS:
        table, _in_use = tier(choice), choice
    else:
        folder = learner.check_folder(choice)
        reference = tier("reference")
        table = {**reference, **{name: learner.dispatcher(folder, name, reference[name])
                                 for name in learner.EXERCISES if name in reference}}  # the kernels, not the blocks
        _in_use = folder
    vars(active).update(table)


def in_use() -> str | Path:
    """"fast", "reference", or the Path of the learner's folder in use."""
    return _in_use


def describe() -> str:
    """One line for reports and the command line: which kernels run."""
    if isinstance(_in_use, Path):
        return f"kernels: YOUR exercises from {_in_use} (learner mode), the reference tier for the rest"
    return f"kernels: the {_in_use} tier"


def _from_environment():
    """The choice the environment asks for: a learner's folder (TINYXCEPTION_EXERCISES), else the tier named by
    TINYXCEPTION_KERNELS (default "fast")."""
    folder = learner.folder_from_environment()
    if folder is not None:
        return folder
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() or "fast"
    if value not in TIERS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must be one of {TIERS}, got {value!r}")
    return value


use(_from_environment())
