"""Saving and loading weights: our own .npz files, and the HDF5 files of Keras' Xception.

``save``/``load`` write and read ``model.state_dict()`` as a NumPy .npz archive (no pickle, so
loading a file can never run code), together with the model's architecture (its weight-free options,
see ``architecture``), which ``load`` compares with the model's. ``load_keras_weights`` reads the files that
``keras.applications.Xception`` downloads and converts Keras' layouts to ours:

    Conv2D kernel            (kh, kw, in, out)  ->  (out, in, kh, kw)
    depthwise_kernel         (kh, kw, C, 1)     ->  (C, 1, kh, kw)
    pointwise_kernel         (1, 1, in, out)    ->  (out, in, 1, 1)
    Dense kernel             (in, out)          ->  (out, in)
    BatchNorm gamma, beta, moving_mean, moving_variance  ->  gamma, beta, running_mean, running_var

Every loader checks everything before it writes anything: on an error the model is unchanged. Both loaders
apply one policy to the arrays they read (``_bad_values``): real floating point, finite, no negative variance.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import threading
import uuid

from . import backend
from .models import Xception
from .nn import BatchNorm2d, Conv2d, Linear, SeparableConv2d
from .nn.module import check_module, listing

np = backend.cpu_module()

ARCHITECTURE_KEY = "__architecture__"  # the archive entry of the architecture, JSON text; no state name starts "_"
TRAINING_ONLY = ("dropout", "bn_momentum")  # options that change how a model trains, not what its weights compute


def architecture(model) -> dict:
    """The weight-free options that decide what a model's weights compute, as a plain dict (JSON types only):
    its configuration (``model.config``, a dataclass) without ``TRAINING_ONLY``; {} for other modules.
    Two Xceptions whose weights have the same names and shapes can still differ here (an ``"elu"`` inside the
    separable convolutions, another stem stride), which is why a checkpoint stores it."""
    config = getattr(model, "config", None)
    config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    chosen = {name: value for name, value in config.items() if name not in TRAINING_ONLY}
    return json.loads(json.dumps(chosen, default=lambda value: value.item()))  # NumPy ints become Python ints


def target_path(path, who: str) -> str:
    """The real file that writing to `path` must replace (symlinks resolved), after checking up front that it can:
    a str or os.PathLike (bytes are decoded), not empty, in an existing folder, and not a folder, FIFO or device."""
    try:
        path = os.fsdecode(path)
    except TypeError:
        raise TypeError(f"{who}: path must be a str or os.PathLike, got {type(path).__name__} {path!r}") from None
    if not path:
        raise ValueError(f"{who}: path is empty; give a file name such as 'model.npz'")
    real = os.path.realpath(path)
    if not os.path.isdir(os.path.dirname(real)):
        raise FileNotFoundError(f"{who}: the folder {os.path.dirname(real)!r} of {path!r} does not exist")
    if os.path.isdir(real):
        raise IsADirectoryError(f"{who}: {path!r} is a directory; give a file name")
    if os.path.exists(real) and not os.path.isfile(real):
        raise ValueError(f"{who}: {path!r} exists and is not a regular file (a FIFO, socket or device?); "
                         "choose another name")
    return real


class _Terminated(BaseException):
    """SIGTERM arrived during a save (raised by the handler that ``_sigterm_raises`` installs)."""


@contextlib.contextmanager
def _sigterm_raises():
    """Inside the block, SIGTERM raises _Terminated (so cleanup code runs); afterwards the previous handler is back
    and the signal is delivered to it again. Only on the main thread, and only when SIGTERM is not ignored."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return

    def handler(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)  # the default action ends the process here, as it would have
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale_temporaries(real: str) -> None:
    """Delete the temporary files of earlier saves of `real` whose process is gone (killed with -9, a power cut).
    The process id is in the name; signal 0 delivers nothing, it only asks whether the process exists (POSIX)."""
    folder, name = os.path.split(real)
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)-[0-9a-f]{{12}}\.tmp")
    for match in filter(None, map(pattern.fullmatch, os.listdir(folder) if os.name == "posix" else ())):
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, match[0]))
        except OSError:  # a live process of another user
            pass


def save(model, path) -> None:
    """Write ``model.state_dict()`` and ``architecture(model)`` to `path` as an uncompressed .npz archive, atomically.

    The archive goes to a temporary file ``.NAME.PID-RANDOM.tmp`` beside the real target (a symlink at `path` is
    followed and stays a link), is flushed to the disk (fsync), gets the mode of the file it replaces, and only
    then is renamed over the target by ``os.replace``, which is atomic. A save that is interrupted (an error, a
    full disk, Ctrl-C, SIGTERM) leaves the previous file as it was and removes the temporary file; one killed
    outright (kill -9) leaves it behind, and the next save of the same path removes it. A folder, FIFO or device
    at `path`, an empty path or a missing folder is refused before anything is written.
    """
    check_module(model, "tinyxception.save")
    real = target_path(path, "tinyxception.save")
    state = {name: backend.asnumpy(array) for name, array in model.state_dict().items()}
    state[ARCHITECTURE_KEY] = np.array(json.dumps(architecture(model)))
    folder, name = os.path.split(real)
    _remove_stale_temporaries(real)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    with _sigterm_raises():
        try:
            with open(temporary, "xb") as file:
                np.savez(file, **state)
                file.flush()
                if os.path.exists(real):
                    os.chmod(temporary, os.stat(real).st_mode & 0o7777)
                os.fsync(file.fileno())
            os.replace(temporary, real)
        except BaseException:  # also Ctrl-C and SIGTERM: never leave the temporary file behind
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise


def _existing(path, who: str) -> str:
    """path as a str, or FileNotFoundError saying which loader looked for it (TypeError/ValueError as target_path)."""
    if not os.path.isfile(target_path(path, who)):
        raise FileNotFoundError(f"{who}: no such file: {os.fsdecode(path)!r}")
    return os.fsdecode(path)


def _bad_values(name: str, array) -> str | None:
    """The loaders' policy for one array read from a file: what is wrong with it, or None when it may be loaded.
    Weights are real floating point numbers, finite, and variances are never negative."""
    if array.dtype.kind != "f":
        return f"{name} has dtype {array.dtype}, not a floating point type"
    if not np.isfinite(array).all():
        return f"{name} holds {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} infinite values"
    if name.endswith(("running_var", "moving_variance")) and (array < 0).any():
        return f"{name} holds {int((array < 0).sum())} negative variances"
    return None


def _refuse(who: str, path, problems: list[str]) -> None:
    """ValueError naming the file and (a few of) the problems, unless there are none."""
    if problems:
        raise ValueError(f"{who}: {os.fspath(path)!r}: nothing was loaded; {listing('problems', problems)}")


def load(model, path) -> None:
    """Load weights written by ``save`` into `model` (``allow_pickle=False``), exactly.

    Raises FileNotFoundError for a missing file, ValueError for a file that is not such an archive, whose
    architecture differs from the model's, whose names, shapes or dtypes do not fit the model, or whose values
    break the loaders' policy (``_bad_values``); the model is then unchanged. Files written before the
    architecture was stored load with the checks of names, shapes and dtypes only.
    """
    check_module(model, "tinyxception.load")
    path = _existing(path, "tinyxception.load")
    try:
        with open(path, "rb") as file:  # ours to close, also when numpy fails half-way through a damaged file
            archive = np.load(file, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise ValueError("it holds a single array, not a state dict")
            state = {name: archive[name] for name in archive.files}
            stored = json.loads(str(state.pop(ARCHITECTURE_KEY))) if ARCHITECTURE_KEY in state else None
    except Exception as err:  # whatever a damaged archive makes numpy, zipfile, zlib or json raise
        raise ValueError(f"tinyxception.load: {path!r} is not a weight file written by tinyxception.save: {err}") \
            from err
    ours = architecture(model)
    differ = [f"{key}: file {stored.get(key)!r}, model {ours.get(key)!r}" for key in sorted(stored.keys() | ours)
              if stored.get(key) != ours.get(key)] if stored and ours else []
    _refuse("tinyxception.load", path, [f"the file's architecture differs ({', '.join(differ)})"] if differ else
            [problem for name, array in state.items() if (problem := _bad_values(name, array))])
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"tinyxception.load: {path!r}: {err}") from err


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
            bad = _bad_values(f"{keras_name}/{keras_weight}", array)
            if bad is not None:
                problems.append(bad)
                continue
            try:
                state[name] = convert(array).astype(dtypes[name])
            except ValueError:  # a transpose of an array with the wrong number of axes
                problems.append(f"{keras_name}/{keras_weight}: an array of shape {array.shape} cannot be {name}")
    _refuse("load_keras_weights", path, problems)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"load_keras_weights: {path!r}: the file's weights do not fit this model "
                         f"(built with other options?): {err}") from err


def _state_dtypes(model):
    """(name, dtype) for every parameter and buffer of the model."""
    yield from ((name, p.dtype) for name, p in model.named_parameters())
    yield from ((name, array.dtype) for name, array in model.named_buffers())
