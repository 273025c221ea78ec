"""Chapter: checkpoints that survive accidents. ``tx.save`` never destroys the previous file, and a damaged,
foreign or malicious file is refused by ``tx.load`` and ``tx.load_keras_weights`` with a ValueError while the
model stays exactly as it was, bit for bit.

``save`` writes a temporary file beside the target, flushes it to the disk and renames it over the target
(``os.replace`` is atomic), so an interruption at any point leaves either the old file or the new one.
The tests interrupt it on purpose (a full disk while writing, a failing fsync, Ctrl-C) and damage files in
the ways disks and downloads do (truncation, flipped bits).
"""
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
