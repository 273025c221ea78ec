"""What a model is made of: a layer-by-layer table, parameter counts, conv layers and feature-map sizes.

    import tinyxception as tx
    model = tx.Xception()
    tx.summary(model)                 # prints the table; 22,855,952 trainable parameters
    tx.count_parameters(model)        # 22855952, the paper's Table 3
    count_conv_layers(model)          # (36, 14): "36 convolutional layers structured into 14 modules"

The table comes from one real forward pass (batch 1, no gradients, evaluation mode) during
which every layer reports its output, so the shapes are measured, not predicted.
"""

import dataclasses

from . import backend
from .autograd import no_grad
from .checks import is_int
from .nn import Conv2d, SeparableConv2d, forward_hook
from .nn.module import check_module

np = backend.cpu_module()


@dataclasses.dataclass
class LayerRow:
    """One leaf layer of the table: its dotted name, class, output shape (without the batch axis) and costs."""

    name: str
    kind: str
    output_shape: tuple
    parameters: int
    multiply_adds: int


@dataclasses.dataclass
class Summary:
    """The result of ``summary``: one row per leaf layer in forward order, and the totals.

    ``output_shapes`` maps the name of EVERY module called (blocks and flows too) to its output
    shape without the batch axis, e.g. ``output_shapes["entry_flow.block2"] == (128, 74, 74)``.
    Printing a Summary gives the table.
    """

    input_shape: tuple
    rows: list
    output_shapes: dict
    trainable: int
    non_trainable: int
    multiply_adds: int

    def __str__(self) -> str:
        names = [f"{row.name} ({row.kind})" for row in self.rows]
        width = max([len("Layer (type)")] + [len(n) for n in names]) + 2
        header = f"{'Layer (type)':<{width}}{'Output shape':<20}{'Param #':>12}{'Mult-adds':>16}"
        lines = [header, "=" * len(header)]
        for name, row in zip(names, self.rows):
            lines.append(f"{name:<{width}}{str(row.output_shape):<20}{row.parameters:>12,}{row.multiply_adds:>16,}")
        lines += ["=" * len(header),
                  f"Input: {self.input_shape} per example",
                  f"Trainable parameters: {self.trainable:,}",
                  f"Non-trainable numbers (BatchNorm running statistics): {self.non_trainable:,}",
                  f"Total: {self.trainable + self.non_trainable:,}",
                  f"Multiply-adds per example: {self.multiply_adds:,} ({self.multiply_adds / 1e9:.2f} G)"]
        return "\n".join(lines)


def count_parameters(model) -> int:
    """The number of trainable numbers: the sum of the sizes of all Parameters (each counted once)."""
    check_module(model, "count_parameters")
    return sum(p.size for p in model.parameters())


def count_buffers(model) -> int:
    """The number of non-trained numbers kept in the state (BatchNorm running mean and variance)."""
    check_module(model, "count_buffers")
    return sum(int(array.size) for _, array in model.named_buffers())


def count_conv_layers(model) -> tuple[int, int]:
    """(conv layers, modules) counted as the paper does for Xception: "36 conv layers in 14 modules".

    Modules are the blocks of ``model.blocks()`` (block1 ... block14). A conv layer is a plain or
    separable convolution on the main path of a block; the 1x1 shortcut convolutions are not
    counted, and a separable conv (depthwise + pointwise) counts as one layer.
    """
    if not hasattr(model, "blocks"):
        raise TypeError(f"count_conv_layers: model must be a tx.Xception, got {type(model).__name__}")
    blocks = model.blocks()
    convs = sum(1 for _, block in blocks for name, layer in block.named_children()
                if isinstance(layer, (Conv2d, SeparableConv2d)) and name != "shortcut")
    return convs, len(blocks)


def summary(model, input_shape=(3, 299, 299), print_fn=print) -> Summary:
    """Run one forward pass on a zero batch of one (C, H, W) example and tabulate every leaf layer.

    Columns: layer name (type), output shape, parameters, multiply-adds (convolutions and the
    linear layer; BatchNorm, ReLU and pooling count as none). The model is run in evaluation
    mode without gradients and is left as it was. The table is passed to ``print_fn``
    (None: do not print) and returned as a ``Summary``.
    """
    check_module(model, "summary")
    if not (isinstance(input_shape, (tuple, list)) and all(is_int(n) for n in input_shape)):
        raise ValueError(f"summary: input_shape must be a tuple of positive ints (C, H, W), got {input_shape!r}")
    names = {id(module): name for name, module in model.named_modules()}
    recorded = {}

    def record(module, output):
        recorded[names.get(id(module), type(module).__name__)] = (module, tuple(output.shape[1:]))

    first = next(iter(model.parameters()), None)
    device, dtype = (first.device, first.dtype) if first is not None else ("cpu", "float32")
    x = backend.to_device(np.zeros((1,) + tuple(input_shape), dtype=dtype), device)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with no_grad(), forward_hook(record):
            model(x)
    finally:
        for module, training in modes:
            module.training = training
    rows = [LayerRow(name, type(module).__name__, shape, count_parameters(module),
                     module.multiply_adds((1,) + shape))
            for name, (module, shape) in recorded.items() if not any(True for _ in module.children())]
    result = Summary(tuple(input_shape), rows, {name: shape for name, (_, shape) in recorded.items()},
                     count_parameters(model), count_buffers(model), sum(row.multiply_adds for row in rows))
    if print_fn is not None:
        print_fn(str(result))
    return result
