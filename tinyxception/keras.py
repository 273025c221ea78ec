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
from . import backend
from .data import import_extra
from .io import bad_values, existing_file, refuse
from .models import Xception
from .nn import BatchNorm2d, Conv2d, Linear, SeparableConv2d
from .nn.module import listing

np = backend.cpu_module()

KERAS_WEIGHTS = {
    Conv2d: {"kernel": ("weight", (3, 2, 0, 1))},
    SeparableConv2d: {"depthwise_kernel": ("depthwise.weight", (2, 3, 0, 1)),
                      "pointwise_kernel": ("pointwise.weight", (3, 2, 0, 1))},
    BatchNorm2d: {"gamma": ("gamma", (0,)), "beta": ("beta", (0,)),
                  "moving_mean": ("running_mean", (0,)), "moving_variance": ("running_var", (0,))},
    Linear: {"kernel": ("weight", (1, 0)), "bias": ("bias", (0,))},
}
"""For each of our layer classes: Keras weight name -> (our state name inside the layer, the axes that
``array.transpose`` takes to turn Keras' layout into ours, as the table above says)."""

SHORTCUTS = {"shortcut": Conv2d, "shortcut_bn": BatchNorm2d}
"""The layers that Keras leaves unnamed: our names inside a down block and their classes."""


def keras_layers(model):
    """Our layers under Keras' names: ``({keras_name: (path, layer)}, {"shortcut": [...], "shortcut_bn": [...]})``.

    Inside block N, our layer ``sepconv1`` is Keras' ``blockN_sepconv1`` (``conv1_bn`` is
    ``blockN_conv1_bn`` ...) and ``predictions`` keeps its name. Keras gives the residual
    shortcuts automatic names (``conv2d_1``, ``batch_normalization_1`` ...) whose numbering
    changes between versions, so they are returned as ordered lists of (path, layer) instead.
    """
    named, shortcuts = {}, {name: [] for name in SHORTCUTS}
    for path, block in model.blocks():
        for name, layer in block.named_children():
            if name in shortcuts:
                shortcuts[name].append((f"{path}.{name}", layer))
            elif type(layer) in KERAS_WEIGHTS:
                named[f"{path.rsplit('.', 1)[-1]}_{name}"] = (f"{path}.{name}", layer)
    if model.config.include_top:
        named["predictions"] = ("predictions", model.predictions)
    return named, shortcuts


def _string_list(group, name: str) -> list[str]:
    """A list-of-strings attribute as Keras writes it: under `name`, or split into name0, name1 ... when large."""
    values, chunk = list(group.attrs.get(name, [])), 0
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
    h5py = import_extra("h5py", "weights", "load_keras_weights")
    path = existing_file(path, "load_keras_weights")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"load_keras_weights: {path!r} is not an HDF5 file, or a damaged one: {err}") from err
    with file:
        root = file["model_weights"] if "model_weights" in file else file
        try:
            layer_names, layers = _string_list(root, "layer_names"), []
            if not layer_names:
                raise ValueError(f"load_keras_weights: {path!r} has no 'layer_names' attribute: "
                                 "not a Keras weight file in the HDF5 (.h5) layout")
            for layer in layer_names:
                group = root[layer]
                weights = {name.rsplit("/", 1)[-1].removesuffix(":0"):
                           np.asarray(group[name] if name in group else group[f"{layer}/{name}"])
                           for name in _string_list(group, "weight_names")}
                if weights:
                    layers.append((layer, weights))
        except (KeyError, OSError, TypeError) as err:  # a listed group or array that is missing or unreadable
            raise ValueError(f"load_keras_weights: {path!r} is damaged or not in Keras' layout: {err}") from err
    return layers


def load_keras_weights(model, path) -> None:
    """Load Keras' Xception weights (``xception_weights_tf_dim_ordering_tf_kernels.h5`` or ``..._notop.h5``).

    Named layers are matched by name, the four shortcut convolutions and their BatchNorms by
    their order in the file. A model without the top ignores the file's ``predictions``. Every
    layer must be found and every shape must fit, else ValueError listing the problems, and
    the model is unchanged. Use with Keras' preprocessing ``x / 127.5 - 1`` (pixels in [-1, 1]).
    """
    if not isinstance(model, Xception):
        raise TypeError(f"load_keras_weights: model must be a tx.Xception, got {type(model).__name__}")
    named, shortcuts = keras_layers(model)
    pairs, unexpected, unnamed = [], [], {name: [] for name in SHORTCUTS}
    for layer, weights in read_keras_weights(path):
        shortcut = next((name for name, cls in SHORTCUTS.items() if set(weights) == set(KERAS_WEIGHTS[cls])), None)
        if layer in named:
            pairs.append((layer, named.pop(layer), weights))
        elif shortcut is not None:
            unnamed[shortcut].append((layer, weights))
        elif layer != "predictions" or model.config.include_top:  # a headless model ignores the classifier
            unexpected.append(layer)
    problems = [listing(title, names) for title, names in (("layers of the model not in the file", list(named)),
                ("layers of the file the model has no place for", unexpected)) if names]
    for kind, cls in SHORTCUTS.items():
        theirs, ours = unnamed[kind], shortcuts[kind]
        if len(theirs) != len(ours):
            problems.append(f"the file has {len(theirs)} unnamed shortcut {cls.__name__.lower()} layers "
                            f"({', '.join(name for name, _ in theirs) or 'none'}), the model {len(ours)}")
        pairs += [(layer, entry, weights) for (layer, weights), entry in zip(theirs, ours)]
    state, dtypes = {}, {name: array.dtype for name, array in [*model.named_parameters(), *model.named_buffers()]}
    for keras_name, (our_path, layer), weights in pairs:
        layout = KERAS_WEIGHTS[type(layer)]
        if set(weights) != set(layout):
            problems.append(f"{keras_name}: weights {sorted(weights)}, expected {sorted(layout)} for {our_path}")
            continue
        for keras_weight, (ours, axes) in layout.items():
            name, array = f"{our_path}.{ours}", weights[keras_weight]
            bad = bad_values(f"{keras_name}/{keras_weight}", array)
            if bad is None and array.ndim != len(axes):
                bad = f"{keras_name}/{keras_weight}: an array of shape {array.shape} cannot be {name}"
            if bad is None:
                state[name] = array.transpose(axes).astype(dtypes[name])
            else:
                problems.append(bad)
    refuse("load_keras_weights", path, problems)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"load_keras_weights: {path!r}: the file's weights do not fit this model "
                         f"(built with other options?): {err}") from err
