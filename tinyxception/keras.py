"""Loading the HDF5 weight files of Keras' Xception (``keras.applications.Xception``), converting Keras' layouts
to ours:

    Conv2D kernel            (kh, kw, in, out)  ->  (out, in, kh, kw)
    depthwise_kernel         (kh, kw, C, 1)     ->  (C, 1, kh, kw)
    pointwise_kernel         (1, 1, in, out)    ->  (out, in, 1, 1)
    Dense kernel             (in, out)          ->  (out, in)
    BatchNorm gamma, beta, moving_mean, moving_variance  ->  gamma, beta, running_mean, running_var

The file is checked whole before anything is written (on an error the model is unchanged), with the value policy
of ``tx.load`` (``io.bad_values``).
"""
from __future__ import annotations

from . import backend
from .data import import_extra
from .io import bad_values, existing_file, refuse
from .models import Xception
from .nn import BatchNorm2d, Conv2d, Linear, SeparableConv2d
from .nn.module import listing

np = backend.cpu_module()

def _hwio_to_oihw(a):
    return a.transpose(3, 2, 0, 1)


def _depthwise_to_ours(a):
    return a.transpose(2, 3, 0, 1)


def _dense_to_ours(a):
    return a.T


def _same(a):
    return a


KERAS_WEIGHTS = {
    Conv2d: {"kernel": ("weight", _hwio_to_oihw)},
    SeparableConv2d: {"depthwise_kernel": ("depthwise.weight", _depthwise_to_ours),
                      "pointwise_kernel": ("pointwise.weight", _hwio_to_oihw)},
    BatchNorm2d: {"gamma": ("gamma", _same), "beta": ("beta", _same),
                  "moving_mean": ("running_mean", _same), "moving_variance": ("running_var", _same)},
    Linear: {"kernel": ("weight", _dense_to_ours), "bias": ("bias", _same)},
}
"""For each of our layer classes: Keras weight name -> (our state name inside the layer, layout conversion)."""


def keras_layers(model):
    """Our layers under Keras' names: ``({keras_name: (path, layer)}, shortcut convs, shortcut BNs)``.

    Inside block N, our layer ``sepconv1`` is Keras' ``blockN_sepconv1`` (``conv1_bn`` is
    ``blockN_conv1_bn`` ...) and ``predictions`` keeps its name. Keras gives the residual
    shortcuts automatic names (``conv2d_1``, ``batch_normalization_1`` ...) whose numbering
    changes between versions, so they are returned as ordered lists of (path, layer) instead.
    """
    named, shortcuts, shortcut_bns = {}, [], []
    for path, block in model.blocks():
        block_name = path.rsplit(".", 1)[-1]
        for name, layer in block.named_children():
            if type(layer) not in KERAS_WEIGHTS:
                continue
            entry = (f"{path}.{name}", layer)
            if name == "shortcut":
                shortcuts.append(entry)
            elif name == "shortcut_bn":
                shortcut_bns.append(entry)
            else:
                named[f"{block_name}_{name}"] = entry
    if model.config.include_top:
        named["predictions"] = ("predictions", model.predictions)
    return named, shortcuts, shortcut_bns


def _import_h5py():
    return import_extra("h5py", "weights", "load_keras_weights")


def _string_list(group, name: str) -> list[str]:
    """A list-of-strings attribute as Keras writes it: under `name`, or split into name0, name1 ... when large."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_weights(path) -> list[tuple[str, dict]]:
    """The layers of a legacy Keras HDF5 weight file that have weights, in file order.

    Returns ``[(layer_name, {weight_name: numpy array})]`` with weight names shortened to
    Keras' attribute names ("kernel", "depthwise_kernel", "gamma" ...): Keras 2 writes
    "block1_conv1/kernel:0", Keras 3 "block1_conv1/kernel" or "kernel"; all become "kernel".
    The layout: root attribute ``layer_names`` (in group ``model_weights`` for a whole saved model);
    each layer group has ``weight_names``, and weight w lives at ``f[layer][w]`` (a nested path
    when w contains "/"). Keras splits a long attribute into ``layer_names0``, ``layer_names1`` ...
    """
    h5py = _import_h5py()
    path = existing_file(path, "load_keras_weights")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"load_keras_weights: {path!r} is not an HDF5 file, or a damaged one: {err}") from err
    with file:
        root = file["model_weights"] if "model_weights" in file else file
        try:
            return _layers_with_weights(root, path)
        except (KeyError, OSError, TypeError) as err:  # a listed group or array that is missing or unreadable
            raise ValueError(f"load_keras_weights: {path!r} is damaged or not in Keras' layout: {err}") from err


def _layers_with_weights(root, path) -> list[tuple[str, dict]]:
    """[(layer name, {short weight name: array})] for the layers under `root` that list weights."""
    layer_names = _string_list(root, "layer_names")
    if not layer_names:
        raise ValueError(f"load_keras_weights: {path!r} has no 'layer_names' attribute: "
                         "not a Keras weight file in the HDF5 (.h5) layout")
    layers = []
    for layer in layer_names:
        group = root[layer]
        names = _string_list(group, "weight_names")
        if names:
            weights = {name.rsplit("/", 1)[-1].removesuffix(":0"):
                       np.asarray(group[name] if name in group else group[f"{layer}/{name}"])
                       for name in names}
            layers.append((layer, weights))
    return layers


def _shortcut_kind(weights: dict) -> str | None:
    """"conv" or "bn" for a layer that looks like an unnamed shortcut conv or its BatchNorm."""
    for kind, cls in (("conv", Conv2d), ("bn", BatchNorm2d)):
        if set(weights) == set(KERAS_WEIGHTS[cls]):
            return kind
    return None


def load_keras_weights(model, path) -> None:
    """Load Keras' Xception weights (``xception_weights_tf_dim_ordering_tf_kernels.h5`` or ``..._notop.h5``).

    Named layers are matched by name, the four shortcut convolutions and their BatchNorms by
    their order in the file. A model without the top ignores the file's ``predictions``. Every
    layer must be found and every shape must fit, else ValueError listing the problems, and
    the model is unchanged. Use with Keras' preprocessing ``x / 127.5 - 1`` (pixels in [-1, 1]).
    """
    if not isinstance(model, Xception):
        raise TypeError(f"load_keras_weights: model must be a tx.Xception, got {type(model).__name__}")
    named, shortcuts, shortcut_bns = keras_layers(model)
    pairs, unexpected, unnamed = [], [], {"conv": [], "bn": []}
    for layer, weights in read_keras_weights(path):
        if layer in named:
            pairs.append((layer, named.pop(layer), weights))
        elif layer == "predictions" and not model.config.include_top:
            continue
        elif _shortcut_kind(weights) is not None:
            unnamed[_shortcut_kind(weights)].append((layer, weights))
        else:
            unexpected.append(layer)
    problems = [listing(title, names) for title, names in (("layers of the model not in the file", list(named)),
                ("layers of the file the model has no place for", unexpected)) if names]
    for kind, ours in (("conv", shortcuts), ("bn", shortcut_bns)):
        theirs = unnamed[kind]
        if len(theirs) != len(ours):
            problems.append(f"the file has {len(theirs)} unnamed shortcut {kind} layers "
                            f"({', '.join(name for name, _ in theirs) or 'none'}), the model {len(ours)}")
        pairs += [(layer, entry, weights) for (layer, weights), entry in zip(theirs, ours)]
    state, dtypes = {}, dict(_state_dtypes(model))
    for keras_name, (our_path, layer), weights in pairs:
        layout = KERAS_WEIGHTS[type(layer)]
        if set(weights) != set(layout):
            problems.append(f"{keras_name}: weights {sorted(weights)}, expected {sorted(layout)} for {our_path}")
            continue
        for keras_weight, (ours, convert) in layout.items():
            name, array = f"{our_path}.{ours}", weights[keras_weight]
            bad = bad_values(f"{keras_name}/{keras_weight}", array)
            if bad is not None:
                problems.append(bad)
                continue
            try:
                state[name] = convert(array).astype(dtypes[name])
            except ValueError:  # a transpose of an array with the wrong number of axes
                problems.append(f"{keras_name}/{keras_weight}: an array of shape {array.shape} cannot be {name}")
    refuse("load_keras_weights", path, problems)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"load_keras_weights: {path!r}: the file's weights do not fit this model "
                         f"(built with other options?): {err}") from err


def _state_dtypes(model):
    """(name, dtype) for every parameter and buffer of the model."""
    yield from ((name, p.dtype) for name, p in model.named_parameters())
    yield from ((name, array.dtype) for name, array in model.named_buffers())
