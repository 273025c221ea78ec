"""A memory guard: refuse a forward pass or training step whose activations clearly cannot fit in memory.

Without it, a 1x3x2000x2000 training step of the paper network grows until the operating system kills the
process (or a MemoryError surfaces deep inside a convolution). ``Xception`` asks ``check_memory`` before it
computes anything; the estimate comes from the geometry alone (``feature_sizes`` and the layers' widths), so it
costs microseconds, and it is a LOWER estimate: a step refused by it could not have fitted.

The estimate, in array elements, walks the paper's modules (``model.blocks()``) with the spatial size a module
reads, ``area`` (H x W of its input), and its widest layer, ``channels`` (of the BatchNorm after every conv):

    training step (a graph is recorded):  every layer keeps one output:  sum over modules of layers * channels * area
    forward without a graph (no_grad):    the widest module's input and output at once:  max of 2 * channels * area

times the batch size and the bytes per element. The gradients and the temporaries of every kernel come on top,
which is why the estimate stays below what the step really needs (measured in docs/reliability.md).
"""

from .autograd import is_grad_enabled
from .nn import BatchNorm2d

CHECKED_FROM_BYTES = 1 << 28  # below this estimate (256 MiB) the guard does not even read how much memory is free


def available_bytes() -> int | None:
    """Memory the system can still give this process (``MemAvailable`` of /proc/meminfo), or None when unknown."""
    try:
        with open("/proc/meminfo") as file:
            fields = dict(line.split(":", 1) for line in file)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def activation_bytes(model, shape, itemsize: int, recording: bool) -> int:
    """The lower estimate above, in bytes, of model(x) for an (N, C, H, W) input x of `shape` (see the module)."""
    n, _, height, width = shape
    tall = model.feature_sizes(height)
    wide = tall if width == height else model.feature_sizes(width)
    area, costs = tall["entry_flow.block1.conv2"] * wide["entry_flow.block1.conv2"], []
    for path, block in model.blocks():  # a module's layers, its width: its widest BatchNorm (at any depth: a
        # learner's block may nest its layers in a Sequential)
        layers = list(block.children())
        widest = max(layer.num_features for layer in block.modules() if isinstance(layer, BatchNorm2d))
        costs.append((len(layers), widest * area))
        area = tall[path] * wide[path] if path in tall else area
    per_example = sum(leaves * cost for leaves, cost in costs) if recording else 2 * max(c for _, c in costs)
    return n * itemsize * per_example


def check_memory(model, x) -> None:
    """MemoryError, naming the estimate and the free memory, when model(x) on the CPU clearly cannot fit."""
    recording = is_grad_enabled()
    needed = activation_bytes(model, x.shape, x.dtype.itemsize, recording)
    available = available_bytes() if needed > CHECKED_FROM_BYTES and x.device == "cpu" else None
    if available is not None and needed > available:
        raise MemoryError(f"Xception: a {'training step' if recording else 'forward pass'} on a batch of shape "
                          f"{x.shape} needs at least {needed / 2**30:.1f} GiB for its activations, but only "
                          f"{available / 2**30:.1f} GiB of memory is available; use fewer or smaller images "
                          "(or run it under tx.no_grad() when no gradients are needed)")
