"""Saving and loading weights: our own .npz files (the HDF5 files of Keras' Xception: ``tinyxception.keras``).

``save``/``load`` write and read ``model.state_dict()`` as a NumPy .npz archive (no pickle, so
loading a file can never run code), together with the model's architecture (its weight-free options,
see ``architecture``), which ``load`` compares with the model's.

Every loader checks everything before it writes anything: on an error the model is unchanged. This loader and
the Keras one apply one policy to the arrays they read (``bad_values``): real floating point, finite, no negative
variance.
"""
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import signal
import threading
import uuid

from . import backend
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
            pathlib.Path(folder, match[0]).unlink(missing_ok=True)
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
    _remove_stale_temporaries(real)
    folder, name = os.path.split(real)
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
            pathlib.Path(temporary).unlink(missing_ok=True)
            raise


def existing_file(path, who: str) -> str:
    """path as a str, or FileNotFoundError saying which loader looked for it (TypeError/ValueError as target_path)."""
    if not os.path.isfile(target_path(path, who)):
        raise FileNotFoundError(f"{who}: no such file: {os.fsdecode(path)!r}")
    return os.fsdecode(path)


def bad_values(name: str, array) -> str | None:
    """The loaders' policy for one array read from a file: what is wrong with it, or None when it may be loaded.
    Weights are real floating point numbers, finite, and variances are never negative."""
    if array.dtype.kind != "f":
        return f"{name} has dtype {array.dtype}, not a floating point type"
    if not np.isfinite(array).all():
        return f"{name} holds {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} infinite values"
    if name.endswith(("running_var", "moving_variance")) and (array < 0).any():
        return f"{name} holds {int((array < 0).sum())} negative variances"
    return None


def refuse(who: str, path, problems: list[str]) -> None:
    """ValueError naming the file and (a few of) the problems, unless there are none."""
    if problems:
        raise ValueError(f"{who}: {os.fspath(path)!r}: nothing was loaded; {listing('problems', problems)}")


def load(model, path) -> None:
    """Load weights written by ``save`` into `model` (``allow_pickle=False``), exactly.

    Raises FileNotFoundError for a missing file, ValueError for a file that is not such an archive, whose
    architecture differs from the model's, whose names, shapes or dtypes do not fit the model, or whose values
    break the loaders' policy (``bad_values``); the model is then unchanged. Files written before the
    architecture was stored load with the checks of names, shapes and dtypes only.
    """
    check_module(model, "tinyxception.load")
    path = existing_file(path, "tinyxception.load")
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
    refuse("tinyxception.load", path, [f"the file's architecture differs ({', '.join(differ)})"] if differ else
            [problem for name, array in state.items() if (problem := bad_values(name, array))])
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise ValueError(f"tinyxception.load: {path!r}: {err}") from err
