"""Chapter: checkpoints that survive accidents. ``tx.save`` never destroys the previous file, and a damaged,
foreign or malicious file is refused by ``tx.load`` and ``tx.load_keras_weights`` with a ValueError while the
model stays exactly as it was, bit for bit.

``save`` writes a temporary file beside the target, flushes it to the disk and renames it over the target
(``os.replace`` is atomic), so an interruption at any point leaves either the old file or the new one.
The tests interrupt it on purpose (a full disk while writing, a failing fsync, Ctrl-C) and damage files in
the ways disks and downloads do (truncation, flipped bits).
"""
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import tinyxception as tx

SMALL = {"middle_blocks": 1, "width": 1 / 16}


def exact_state(model) -> dict:
    """{name: (shape, dtype, bytes)} of every parameter and buffer: equal only when the model is bit-identical."""
    return {name: (a.shape, a.dtype, a.tobytes()) for name, a in model.state_dict().items()}


def trained(seed: int):
    """A small Xception whose BN statistics moved away from their initial values (one training-mode pass)."""
    model = tx.Xception(seed=seed, **SMALL)
    model(np.random.default_rng(seed).standard_normal((2, 3, 71, 71)).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, bytes, exact state) of a checkpoint written by tx.save."""
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model = trained(1)
    tx.save(model, path)
    return path, path.read_bytes(), exact_state(model)


# --- atomic saving -----------------------------------------------------------------------------------------

def _savez_that_dies(file, **arrays):
    """np.savez that writes half an archive, then fails like a full disk."""
    file.write(b"PK\x03\x04" + bytes(1000))
    raise OSError(28, "No space left on device")


def _savez_interrupted(file, **arrays):
    """np.savez interrupted by Ctrl-C halfway."""
    file.write(b"PK\x03\x04" + bytes(1000))
    raise KeyboardInterrupt


def _fsync_fails(fd):
    """os.fsync failing like a disk that went away."""
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("where, replacement, error", [
    ("savez", _savez_that_dies, OSError),
    ("savez", _savez_interrupted, KeyboardInterrupt),
    ("fsync", _fsync_fails, OSError),
], ids=["disk-full-while-writing", "ctrl-c-while-writing", "fsync-fails"])
def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where, replacement, error):
    """A save that dies half way leaves the previous checkpoint byte for byte, loadable, and no temporary file.

    Writing in place (open(path, "wb")) would have truncated the old file first and left half an archive.
    """
    path = tmp_path / "ckpt.npz"
    old_model = trained(1)
    tx.save(old_model, path)
    before = path.read_bytes()
    if where == "savez":
        monkeypatch.setattr(tx.io.np, "savez", replacement)
    else:
        monkeypatch.setattr(tx.io.os, "fsync", replacement)
    with pytest.raises(error):
        tx.save(trained(2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    restored = tx.Xception(seed=3, **SMALL)
    tx.load(restored, path)
    assert exact_state(restored) == exact_state(old_model)


def test_a_completed_save_replaces_the_file_and_leaves_nothing_else(tmp_path):
    """Saving over a checkpoint gives the new weights under the same name, and only that file in the folder."""
    path = tmp_path / "ckpt.npz"
    tx.save(trained(1), path)
    newer = trained(2)
    tx.save(newer, path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
    restored = tx.Xception(seed=3, **SMALL)
    tx.load(restored, path)
    assert exact_state(restored) == exact_state(newer)


def test_save_refuses_impossible_targets(tmp_path):
    """A missing folder, a folder as the target, or something that is not a model: a clear error, no file."""
    model = tx.Xception(seed=0, **SMALL)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tx.save(model, tmp_path / "missing" / "m.npz")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        tx.save(model, tmp_path)
    with pytest.raises(TypeError, match="Module.*dict"):
        tx.save({"w": np.ones(3)}, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


# --- refusing damaged files --------------------------------------------------------------------------------

def _pickled(raw: bytes, tmp_path) -> bytes:
    """An archive with the right names whose first array is an object array (loading it would need pickle)."""
    state = dict(np.load(_write(tmp_path / "src.npz", raw)))
    state[next(iter(state))] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", **state)
    return (tmp_path / "pickled.npz").read_bytes()


def _write(path, raw: bytes):
    """path, after writing raw bytes to it."""
    path.write_bytes(raw)
    return path


def _other_architecture(raw: bytes, tmp_path) -> bytes:
    """A valid checkpoint of a different configuration (two middle blocks, 7 classes)."""
    tx.save(tx.Xception(num_classes=7, middle_blocks=2, width=1 / 16), tmp_path / "other.npz")
    return (tmp_path / "other.npz").read_bytes()


def _float64(raw: bytes, tmp_path) -> bytes:
    """The same names and shapes, every array float64."""
    state = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
             for k, v in np.load(_write(tmp_path / "src.npz", raw)).items()}
    np.savez(tmp_path / "f64.npz", **state)
    return (tmp_path / "f64.npz").read_bytes()


def _single_array(raw: bytes, tmp_path) -> bytes:
    """A .npy file (one array) instead of an archive."""
    np.save(tmp_path / "one.npy", np.ones(3, np.float32))
    return (tmp_path / "one.npy").read_bytes()


DAMAGE = {
    "empty": lambda raw, tmp: b"",
    "text": lambda raw, tmp: b"these are not the weights you are looking for\n",
    "truncated-to-1%": lambda raw, tmp: raw[:len(raw) // 100],
    "truncated-to-half": lambda raw, tmp: raw[:len(raw) // 2],
    "last-byte-missing": lambda raw, tmp: raw[:-1],
    "zeroed-middle": lambda raw, tmp: raw[:len(raw) // 2] + bytes(4096) + raw[len(raw) // 2 + 4096:],
    "pickled-object-array": _pickled,
    "other-architecture": _other_architecture,
    "float64-arrays": _float64,
    "single-npy-array": _single_array,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_is_refused_and_the_model_is_untouched(saved, tmp_path, damage):
    """Truncated, corrupted, pickled, foreign or wrongly typed files: ValueError naming the file, and every
    parameter and BatchNorm statistic of the model bit-identical to before the call."""
    _, raw, _ = saved
    path = _write(tmp_path / "bad.npz", DAMAGE[damage](raw, tmp_path))
    model = trained(5)
    before = exact_state(model)
    with pytest.raises(ValueError, match="bad.npz|refused"):
        tx.load(model, path)
    assert exact_state(model) == before


def test_flipped_bits_are_caught_or_harmless(saved, tmp_path):
    """40 single-bit flips anywhere in a checkpoint: each load either refuses (ValueError, model untouched) or,
    when the bit sat in a field nothing reads, loads exactly the saved weights: never something in between.
    The archive's CRC-32 checksums are what catch a flip inside the arrays."""
    _, raw, saved_state = saved
    rng = np.random.default_rng(0)
    model = trained(5)
    refused = 0
    for _ in range(40):
        damaged = bytearray(raw)
        damaged[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        before = exact_state(model)
        try:
            tx.load(model, _write(tmp_path / "flipped.npz", bytes(damaged)))
        except ValueError:
            refused += 1
            assert exact_state(model) == before
        else:
            assert exact_state(model) == saved_state
            model = trained(5)
    assert refused >= 30, "nearly every byte of the archive is array data under a checksum"


# --- Keras files -------------------------------------------------------------------------------------------

@pytest.fixture
def keras_file(tmp_path):
    """A complete Keras-layout weight file for the SMALL configuration (written by test_io's helpers)."""
    pytest.importorskip("h5py")
    from test_io import keras_xception_layers, write_keras_file
    layers = keras_xception_layers(np.random.default_rng(0), width=SMALL["width"],
                                   middle_blocks=SMALL["middle_blocks"])
    write_keras_file(tmp_path / "keras.h5", layers)
    return tmp_path / "keras.h5"


def _drop_group(path):
    """Delete a layer group that layer_names still lists."""
    import h5py
    with h5py.File(path, "r+") as f:
        del f["block5_sepconv1"]


def _drop_dataset(path):
    """Delete one weight array that its layer's weight_names still lists."""
    import h5py
    with h5py.File(path, "r+") as f:
        del f["block1_conv1"]["block1_conv1"]


def _truncate(path):
    """Cut the file in half."""
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize("damage, words", [
    (_truncate, "HDF5"), (_drop_group, "block5_sepconv1"), (_drop_dataset, "damaged"),
], ids=["truncated", "listed-layer-missing", "listed-weight-missing"])
def test_a_damaged_keras_file_is_refused_and_the_model_is_untouched(keras_file, damage, words):
    """A truncated HDF5 file, or one whose lists name groups or arrays that are gone: ValueError (not a KeyError
    from deep inside h5py), and the model bit-identical."""
    model = tx.Xception(seed=0, **SMALL)
    tx.load_keras_weights(model, keras_file)  # the intact file loads
    damage(keras_file)
    model = tx.Xception(seed=1, **SMALL)
    before = exact_state(model)
    with pytest.raises(ValueError, match=words):
        tx.load_keras_weights(model, keras_file)
    assert exact_state(model) == before


def test_keras_weights_need_an_xception(keras_file):
    """load_keras_weights into a plain layer: a TypeError saying it needs a tx.Xception."""
    with pytest.raises(TypeError, match="tx.Xception"):
        tx.load_keras_weights(tx.nn.Linear(2, 2), keras_file)


# --- odd targets (symlinks, modes, FIFOs, empty and wrongly typed paths) ------------------------------------

def test_a_save_through_a_symlink_replaces_the_real_file_and_keeps_the_link(tmp_path):
    """``latest.npz -> run1/ckpt.npz``: saving to latest.npz must update run1/ckpt.npz and leave latest.npz a link
    to it (os.replace on the link itself would turn it into a plain file and leave the real checkpoint stale)."""
    (tmp_path / "run1").mkdir()
    real, link = tmp_path / "run1" / "ckpt.npz", tmp_path / "latest.npz"
    tx.save(trained(1), real)
    link.symlink_to(real)
    newer = trained(2)
    tx.save(newer, link)
    assert link.is_symlink() and link.resolve() == real.resolve()
    restored = tx.Xception(seed=3, **SMALL)
    tx.load(restored, real)
    assert exact_state(restored) == exact_state(newer)
    assert sorted(p.name for p in (tmp_path / "run1").iterdir()) == ["ckpt.npz"]


def test_a_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    """A checkpoint made private (0600) stays private after the next save, instead of coming back 0644."""
    path = tmp_path / "ckpt.npz"
    tx.save(trained(1), path)
    path.chmod(0o600)
    tx.save(trained(2), path)
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_save_refuses_a_fifo_and_leaves_it_alone(tmp_path):
    """A FIFO (or a device) at the path is not a checkpoint: ValueError naming the path, and the FIFO is still a
    FIFO afterwards (as root, os.replace would even have replaced /dev/null by a regular file)."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="pipe.npz.*not a regular file"):
        tx.save(trained(1), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.npz"]


@pytest.mark.parametrize("path, error, words", [
    ("", ValueError, "path is empty"),
    (None, TypeError, "str or os.PathLike.*NoneType"),
    (3, TypeError, "str or os.PathLike.*int"),
], ids=["empty", "None", "int"])
def test_save_and_load_refuse_paths_that_are_no_paths(tmp_path, monkeypatch, path, error, words):
    """An empty path used to write its temporary file into the parent of the working directory and end with a raw
    FileNotFoundError; None gave a raw TypeError from os.path. Both functions now say what a path must be, and
    nothing is written anywhere."""
    monkeypatch.chdir(tmp_path / "..")
    before = sorted(os.listdir("."))
    for call in (tx.save, tx.load):
        with pytest.raises(error, match=words):
            call(tx.Xception(seed=0, **SMALL), path)
    assert sorted(os.listdir(".")) == before


def test_a_bytes_path_is_a_path(tmp_path):
    """os.fsencode(path) names the same file as path: save and load accept it (bytes paths used to fail)."""
    model = trained(1)
    tx.save(model, os.fsencode(tmp_path / "m.npz"))
    restored = tx.Xception(seed=3, **SMALL)
    tx.load(restored, os.fsencode(tmp_path / "m.npz"))
    assert exact_state(restored) == exact_state(model)


# --- interrupted saves leave no debris -----------------------------------------------------------------------

SAVER = """
import sys, numpy as np, tinyxception as tx
model = tx.Xception(seed=1, width=0.5)  # about 6 M parameters: writing 25 MB takes a moment
print("ready", flush=True)
while True:
    tx.save(model, sys.argv[1])
"""


def _kill_while_saving(path, signum) -> subprocess.CompletedProcess:
    """Start a process that saves to `path` over and over; send it `signum` once a temporary file of that path
    exists (a save is under way); return the finished process."""
    child = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    while not list(path.parent.glob(f".{path.name}.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signum)
    child.wait(timeout=120)
    return child


def test_sigterm_during_a_save_leaves_no_temporary_file_and_the_old_checkpoint(tmp_path):
    """SIGTERM (what kill, systemd and job schedulers send) in the middle of a save: the process still ends by
    SIGTERM, no hidden temporary file of the model's size is left, and the checkpoint at the path is a complete
    one (the old one or the new one, never half of one). Before, 5 of 8 such runs left their temporary file."""
    path = tmp_path / "ckpt.npz"
    tx.save(tx.Xception(seed=1, width=0.5), path)
    child = _kill_while_saving(path, signal.SIGTERM)
    assert child.returncode == -signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    restored = tx.Xception(seed=3, width=0.5)
    tx.load(restored, path)
    assert exact_state(restored) == exact_state(tx.Xception(seed=1, width=0.5))


def test_the_next_save_removes_what_a_kill_9_left_behind(tmp_path):
    """kill -9 cannot be caught, so its save leaves a temporary file; the next save of the same path removes it
    (the file names carry the dead process's id) and leaves only the checkpoint."""
    path = tmp_path / "ckpt.npz"
    child = _kill_while_saving(path, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    debris = list(tmp_path.glob(".ckpt.npz.*.tmp"))
    (tmp_path / ".other.npz.1-0123456789ab.tmp").write_bytes(b"")  # another path's temporary: not ours to remove
    model = trained(2)
    tx.save(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.1-0123456789ab.tmp", "ckpt.npz"], debris


# --- checkpoints know their architecture ---------------------------------------------------------------------

@pytest.mark.parametrize("saved_options, loading_options, words", [
    ({"intermediate_activation": "elu"}, {}, "intermediate_activation: file 'elu', model None"),
    ({"stem_stride": 2}, {}, "stem_stride: file 2, model 1"),
    ({"pooling": "max"}, {}, "pooling: file 'max', model 'avg'"),
], ids=["elu-into-plain", "stem-stride", "pooling"])
def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, saved_options, loading_options, words):
    """Weight-free options change what the weights compute but not their names or shapes: a checkpoint of
    Xception.small(intermediate_activation="elu") used to load into Xception.small() without a word. Now the
    architecture is stored and compared: a short ValueError naming the file and the differing option, and the
    model is untouched."""
    tx.save(tx.Xception.small(seed=0, **saved_options), tmp_path / "elsewhere.npz")
    model = tx.Xception.small(seed=1, **loading_options)
    before = exact_state(model)
    with pytest.raises(ValueError) as info:
        tx.load(model, tmp_path / "elsewhere.npz")
    message = str(info.value)
    assert "elsewhere.npz" in message and words in message and len(message) - len(str(tmp_path)) < 500, message
    assert exact_state(model) == before


def test_training_only_options_and_older_checkpoints_still_load(tmp_path):
    """Dropout and BatchNorm momentum change how a model trains, not what its weights compute: a checkpoint loads
    across them. A file written before checkpoints stored their architecture (a plain state dict) loads too."""
    model = tx.Xception.small(seed=0, dropout=0.3, bn_momentum=0.5)
    tx.save(model, tmp_path / "m.npz")
    restored = tx.Xception.small(seed=1)
    tx.load(restored, tmp_path / "m.npz")
    assert exact_state(restored) == exact_state(model)
    np.savez(tmp_path / "old.npz", **model.state_dict())
    older = tx.Xception.small(seed=2)
    tx.load(older, tmp_path / "old.npz")
    assert exact_state(older) == exact_state(model)


# --- one policy for the values of every weight file ----------------------------------------------------------

BAD_VALUES = {
    "bool-kernel": ("block1_conv1", "kernel", lambda a: a > 0, "dtype bool"),
    "int-kernel": ("block1_conv1", "kernel", lambda a: a.astype(np.int32), "dtype int32"),
    "complex-kernel": ("block1_conv1", "kernel", lambda a: a + 1j, "dtype complex"),
    "nan-gamma": ("block1_conv1_bn", "gamma", lambda a: np.where(np.arange(a.size) == 1, np.nan, a), "1 NaN"),
    "inf-beta": ("block1_conv1_bn", "beta", lambda a: np.full_like(a, np.inf), "infinite"),
    "negative-variance": ("block1_conv1_bn", "moving_variance", lambda a: -a, "negative variances"),
}


def _keras_file_with(tmp_path, layer: str, weight: str, change):
    """A complete Keras-layout file for SMALL in which one weight array is replaced by change(array)."""
    pytest.importorskip("h5py")
    from test_io import keras_xception_layers, write_keras_file
    layers = keras_xception_layers(np.random.default_rng(0), width=SMALL["width"],
                                   middle_blocks=SMALL["middle_blocks"])
    layers = [(name, {w: change(a) if (name, w) == (layer, weight) else a for w, a in weights.items()})
              for name, weights in layers]
    write_keras_file(tmp_path / "odd.h5", layers)
    return tmp_path / "odd.h5"


@pytest.mark.parametrize("case", BAD_VALUES)
def test_keras_files_are_checked_not_cast(tmp_path, case):
    """load_keras_weights used to astype whatever it found: bool and int kernels loaded silently, complex ones with
    only NumPy's warning, NaN and negative variances went straight into the model. Now the policy tx.load uses
    refuses them: ValueError naming the file, the layer and what is wrong; the model bit-identical."""
    layer, weight, change, words = BAD_VALUES[case]
    path = _keras_file_with(tmp_path, layer, weight, change)
    model = tx.Xception(seed=1, **SMALL)
    before = exact_state(model)
    with pytest.raises(ValueError) as info:
        tx.load_keras_weights(model, path)
    message = str(info.value)
    assert "odd.h5" in message and f"{layer}/{weight}" in message and words in message, message
    assert exact_state(model) == before


@pytest.mark.parametrize("name, change, words", [
    ("entry_flow.block1.conv1_bn.running_var", lambda a: -a, "negative variances"),
    ("entry_flow.block1.conv1.weight", lambda a: np.full_like(a, np.nan), "NaN"),
])
def test_tx_load_applies_the_same_policy(tmp_path, name, change, words):
    """The same arrays in our own format: tx.load refuses them with the same words, naming the entry and file."""
    state = trained(1).state_dict()
    state[name] = change(state[name])
    np.savez(tmp_path / "odd.npz", **state)
    model = trained(5)
    before = exact_state(model)
    with pytest.raises(ValueError, match=f"odd.npz.*{name}.*{words}"):
        tx.load(model, tmp_path / "odd.npz")
    assert exact_state(model) == before
