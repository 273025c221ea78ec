"""Export a model's inference graph to ONNX, so onnxruntime (or any ONNX runtime) can run it.

The exporter walks the module tree, one ONNX node per layer, with the weights as initializers under
their ``state_dict`` names (``entry_flow.block1.conv1.weight`` ...):

    Conv2d, DepthwiseConv2d, PointwiseConv2d   Conv (``group`` = groups; depthwise: group = channels)
    BatchNorm2d                                BatchNormalization with the running statistics (inference)
    ReLU, ELU                                  Relu, Elu
    MaxPool2d                                  MaxPool; "same" becomes TensorFlow's explicit pads
    GlobalAvgPool2d, GlobalMaxPool2d           GlobalAveragePool / GlobalMaxPool, then Flatten to (N, C)
    Linear                                     Gemm with transB=1 (our weight is (out, in))
    Dropout                                    nothing: the identity at inference
    DownBlock, MiddleBlock                     their branches, then Add (unless residual=False)
    Sequential, SeparableConv2d, Xception ...  their children in order

A module of any other class is refused (ValueError naming it), and nothing is written. "same" padding
depends on the input size, so the pads are computed for ``input_shape``'s height and width; the batch
axis stays free ("batch"), so one file serves any batch size.
"""
import os

from . import backend
from .checks import int_pair, window_geometry
from .data import import_extra
from .models.xception import DownBlock, EntryStem, ExitTail, MiddleBlock, Xception
from .nn import (ELU, BatchNorm2d, Conv2d, DepthwiseConv2d, Dropout, GlobalAvgPool2d, GlobalMaxPool2d, Linear,
                 MaxPool2d, PointwiseConv2d, ReLU, SeparableConv2d, Sequential)

OPSET = 17


class _Graph:
    """The nodes and initializers of the graph being built; ``emit`` adds one module."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers = onnx, [], []

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        """Add a node whose one output is named `name`; returns that name."""
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def state(self, module, path: str) -> list[str]:
        """The module's own parameters and buffers as float32 initializers, in state_dict order: Conv's
        (weight, bias), BatchNormalization's (gamma, beta, running mean and variance), Gemm's (weight, bias)."""
        arrays = {f"{path}.{key}": backend.asnumpy(a).astype("float32") for key, a in module.state_dict().items()}
        self.initializers += [self.onnx.numpy_helper.from_array(a, name) for name, a in arrays.items()]
        return list(arrays)

    def emit(self, module, path: str, x: str, shape: tuple):
        """Add `module` applied to tensor `x` of per-image `shape`; returns (output name, output shape)."""
        if type(module) not in EMITTERS:
            raise ValueError(f"export_onnx: cannot express {path or 'the model'} ({type(module).__name__}); "
                             f"supported modules: {', '.join(sorted(cls.__name__ for cls in EMITTERS))}")
        return EMITTERS[type(module)](self, module, path, x, shape)

    def chain(self, children, path: str, x: str, shape: tuple):
        """Apply (name, module) pairs one after another, as Sequential does."""
        for name, child in children:
            x, shape = self.emit(child, f"{path}.{name}" if path else name, x, shape)
        return x, shape


def _window(g, op, m, path, x, shape, kernel, channels, **attributes):
    """Conv or MaxPool: a kernel moved by m.stride over the input padded as m.padding says, for this input size."""
    ((top, bottom), (left, right)), size = window_geometry(shape, kernel, m.stride, m.padding, path)
    return g.node(op, [x, *g.state(m, path)], path, kernel_shape=kernel, strides=[m.stride] * 2,
                  pads=[top, left, bottom, right], **attributes), (channels, *size)  # ONNX's order of the pads


def _conv(g, m, path, x, shape):
    return _window(g, "Conv", m, path, x, shape, m.kernel_size, m.out_channels, group=m.groups)


def _max_pool(g, m, path, x, shape):
    return _window(g, "MaxPool", m, path, x, shape, int_pair(m.kernel_size, path), shape[0])


def _residual(g, m, path, x, shape):
    """main(x) + shortcut(x): main is the children in order, less the shortcut ones (none: the identity)."""
    main = [(name, child) for name, child in m.named_children() if not name.startswith("shortcut")]
    skip = [(name, child) for name, child in m.named_children() if name.startswith("shortcut")]
    y, out_shape = g.chain(main, path, x, shape)
    return (g.node("Add", [y, g.chain(skip, path, x, shape)[0]], f"{path}.add") if m.residual else y), out_shape


def _children(g, m, path, x, shape):
    """Modules whose forward applies their children in order (Xception's: the flows, pool, dropout, top)."""
    return g.chain(m.named_children(), path, x, shape)


def _global_pool(g, m, path, x, shape):
    op = "GlobalAveragePool" if isinstance(m, GlobalAvgPool2d) else "GlobalMaxPool"
    return g.node("Flatten", [g.node(op, [x], f"{path}.{op}")], path), shape[:1]


# Module class (exactly: a subclass may compute something else) -> function adding its nodes.
EMITTERS = {
    Conv2d: _conv, DepthwiseConv2d: _conv, PointwiseConv2d: _conv, MaxPool2d: _max_pool,
    BatchNorm2d: lambda g, m, p, x, s: (g.node("BatchNormalization", [x, *g.state(m, p)], p, epsilon=m.eps), s),
    ReLU: lambda g, m, p, x, s: (g.node("Relu", [x], p), s),
    ELU: lambda g, m, p, x, s: (g.node("Elu", [x], p, alpha=m.alpha), s),
    GlobalAvgPool2d: _global_pool, GlobalMaxPool2d: _global_pool,
    Linear: lambda g, m, p, x, s: (g.node("Gemm", [x, *g.state(m, p)], p, transB=1), (m.out_features,)),
    Dropout: lambda g, m, p, x, s: (x, s), DownBlock: _residual, MiddleBlock: _residual,
    Sequential: _children, EntryStem: _children, ExitTail: _children, SeparableConv2d: _children, Xception: _children,
}


def export_onnx(model, path, input_shape=(1, 3, 299, 299)) -> None:
    """Write `model`'s inference graph (BatchNorm with running statistics, no dropout) to `path` as ONNX.

    `input_shape` is (N, C, H, W): C, H and W are fixed in the graph (the "same" pads depend on them), N
    is free. Input "input" and the output are float32, as are the weights. The model is checked with
    ``onnx.checker`` (with shape inference) before the file is written; a module the exporter cannot
    express raises ValueError and writes nothing.
    """
    onnx = import_extra("onnx", "onnx", "export_onnx")  # brings onnx.helper, onnx.numpy_helper and onnx.checker
    channels = getattr(getattr(model, "config", None), "in_channels", None)
    smallest = getattr(model, "min_input_size", 1)
    if len(input_shape) != 4 or channels not in (None, input_shape[1]) or min(input_shape[2:]) < smallest:
        raise ValueError(f"export_onnx: input_shape must be (N, C, H, W) with C = {channels or 'the channels'} and "
                         f"H, W at least {smallest} for this model, got {tuple(input_shape)!r}")
    g, helper, floats = _Graph(onnx), onnx.helper, onnx.TensorProto.FLOAT
    output, shape = g.emit(model, "", "input", tuple(input_shape[1:]))
    ends = [helper.make_tensor_value_info(name, floats, ["batch", *s]) for name, s in (("input", input_shape[1:]),
                                                                                          (output, shape))]
    graph = helper.make_graph(g.nodes, type(model).__name__, ends[:1], ends[1:], initializer=g.initializers)
    proto = helper.make_model(graph, producer_name="tinyxception", opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
