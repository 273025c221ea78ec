"""Saving and loading weights: our own .npz files, and the HDF5 files of Keras' Xception.

``save``/``load`` write and read ``model.state_dict()`` as a NumPy .npz archive (no pickle, so
loading a file can never run code). ``load_keras_weights`` reads the files that
``keras.applications.Xception`` downloads and converts Keras' layouts to ours:

    Conv2D kernel            (kh, kw, in, out)  ->  (out, in, kh, kw)
    depthwise_kernel         (kh, kw, C, 1)     ->  (C, 1, kh, kw)
    pointwise_kernel         (1, 1, in, out)    ->  (out, in, 1, 1)
    Dense kernel             (in, out)          ->  (out, in)
    BatchNorm gamma, beta, moving_mean, moving_variance  ->  gamma, beta, running_mean, running_var

Every loader checks everything before it writes anything: on an error the model is unchanged.
"""
from __future__ import annotations

import contextlib
import os
import uuid

from . import backend
from .models import Xception
from .nn import BatchNorm2d, Conv2d, Linear, Module, SeparableConv2d

np = backend.cpu_module()


def _check_model(model, who: str) -> None:
    """TypeError unless model is a Module (something with a state_dict to save or fill)."""
    if not isinstance(model, Module):
        raise TypeError(f"{who}: model must be a tinyxception Module such as tx.Xception(), got {type(model).__name__}")


def save(model, path) -> None:
    """Write ``model.state_dict()`` to `path` (the exact name given) as an uncompressed .npz archive, atomically.

    The archive goes to a temporary file in the same directory, is flushed to the disk (fsync), and only
    then renamed over `path` by ``os.replace``, which is atomic: a save that is interrupted (an error, a full
    disk, Ctrl-C) leaves the previous file at `path` as it was, and removes the temporary file.
    """
    _check_model(model, "tinyxception.save")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"tinyxception.save: the directory {directory!r} of {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"tinyxception.save: {path!r} is a directory; give a file name")
    state = {name: backend.asnumpy(array) for name, array in model.state_dict().items()}
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez(file, **state)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # also Ctrl-C: never leave the temporary file behind
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _existing(path, who: str) -> str:
    """path as a str, or FileNotFoundError saying which loader looked for it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{who}: no such file: {path!r}")
    return path


def load(model, path) -> None:
    """Load weights written by ``save`` into `model` (``allow_pickle=False``), exactly.

    Raises FileNotFoundError for a missing file, ValueError for a file that is not such an
    archive or whose names, shapes or dtypes do not fit the model; the model is then unchanged.
    """
    _check_model(model, "tinyxception.load")
    path = _existing(path, "tinyxception.load")
    try:
        with open(path, "rb") as file:  # ours to close, also when numpy fails half-way through a damaged file
            archive = np.load(file, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise ValueError("it holds a single array, not a state dict")
            state = {name: archive[name] for name in archive.files}
    except Exception as err:  # whatever a damaged archive makes numpy, zipfile or zlib raise
        raise ValueError(f"tinyxception.load: {path!r} is not a weight file written by tinyxception.save: {err}") \
            from err
    model.load_state_dict(state)


# --- Keras -----------------------------------------------------------------------------

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
    try:
        import h5py
    except ImportError as err:
        raise ImportError("load_keras_weights needs h5py: pip install 'tinyxception[weights]'") from err
    return h5py


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
    path = _existing(path, "load_keras_weights")
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
    problems = []
    if named:
        problems.append(f"layers of the model not in the file: {', '.join(named)}")
    if unexpected:
        problems.append(f"layers of the file the model has no place for: {', '.join(unexpected)}")
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
            try:
                state[name] = convert(array).astype(dtypes[name])
            except ValueError:  # a transpose of an array with the wrong number of axes
                problems.append(f"{keras_name}/{keras_weight}: an array of shape {array.shape} cannot be {name}")
    if problems:
        raise ValueError(f"load_keras_weights: {path}: nothing was loaded:\n  " + "\n  ".join(problems))
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"load_keras_weights: {path}: the file's weights do not fit this model "
                         f"(built with other options?): {err}") from err


def _state_dtypes(model):
    """(name, dtype) for every parameter and buffer of the model."""
    yield from ((name, p.dtype) for name, p in model.named_parameters())
    yield from ((name, array.dtype) for name, array in model.named_buffers())
