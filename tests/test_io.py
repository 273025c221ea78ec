"""Chapter 4, Xception: weights on disk, our .npz files and Keras' HDF5 files converted to our layouts.

Exercise: work out by hand how a Keras (kh, kw, C_in, C_out) kernel becomes our (C_out, C_in, kh, kw) one.

The Keras tests write small HDF5 files in Keras' legacy layout themselves (root attribute
``layer_names``; per layer ``weight_names``; arrays in Keras' layouts: HWIO kernels, (kh, kw, C, 1)
depthwise kernels, (in, out) dense kernels), then check that every array lands in the right place,
both by its transposition and by computing layer outputs with independent NHWC references.
"""
import sys

import numpy as np
import pytest

import tinyxception as tx

pytestmark = pytest.mark.ch4_xception

h5py = pytest.importorskip("h5py")

SMALL = {"middle_blocks": 1, "width": 1 / 8}
SHORTCUT_CONV_NAMES = ["conv2d_7", "conv2d_3", "conv2d", "conv2d_12"]  # automatic names, numbering shuffled
SHORTCUT_BN_NAMES = ["batch_normalization_2", "batch_normalization", "batch_normalization_9",
                     "batch_normalization_1"]


def states_equal(a, b):
    """True when two state dicts hold the same names and bit-identical arrays."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def trained_state(model):
    """Make the BN running statistics non-trivial with one training-mode forward pass, then return the state."""
    model.train()(np.random.default_rng(0).standard_normal((2, 3, 71, 71)).astype(np.float32))
    return model.state_dict()


# --- .npz save / load --------------------------------------------------------------------------------

def test_save_load_round_trip_is_exact(tmp_path):
    """Every parameter and BN statistic comes back bit for bit, under the exact file name given."""
    source, target = tx.Xception(seed=1, **SMALL), tx.Xception(seed=2, **SMALL)
    state = trained_state(source)
    path = tmp_path / "weights.bin"
    tx.save(source, path)
    assert path.exists() and not (tmp_path / "weights.bin.npz").exists()
    tx.load(target, path)
    assert states_equal(target.state_dict(), state)
    x = np.random.default_rng(3).standard_normal((1, 3, 71, 71)).astype(np.float32)
    np.testing.assert_array_equal(source.eval()(x).numpy(), target.eval()(x).numpy())


def test_load_onto_a_device(tmp_path, device):
    """A file saved from the CPU loads into a model living on any device (host arrays are copied over)."""
    source = tx.Xception(seed=1, **SMALL)
    tx.save(source, tmp_path / "w.npz")
    target = tx.Xception(seed=2, **SMALL).to(device)
    tx.load(target, tmp_path / "w.npz")
    assert states_equal({k: tx.backend.asnumpy(v) for k, v in target.state_dict().items()}, source.state_dict())
    target.to("cpu")


def test_load_missing_file(tmp_path):
    """A missing file is a FileNotFoundError naming the path."""
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        tx.load(tx.Xception(**SMALL), tmp_path / "nope.npz")


def test_corrupt_file_leaves_the_model_untouched(tmp_path):
    """Random bytes are not an archive: ValueError, and the model keeps its weights."""
    path = tmp_path / "corrupt.npz"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    model = tx.Xception(seed=0, **SMALL)
    before = model.state_dict()
    with pytest.raises(ValueError, match="not a weight file"):
        tx.load(model, path)
    assert states_equal(model.state_dict(), before)


def test_pickled_arrays_are_refused(tmp_path):
    """allow_pickle=False: an archive holding an object array (which needs pickle) is rejected, model unchanged."""
    path = tmp_path / "pickled.npz"
    model = tx.Xception(seed=0, **SMALL)
    state = model.state_dict()
    state["predictions.bias"] = np.array([{"evil": 1}], dtype=object)
    np.savez(path, **state)
    before = model.state_dict()
    with pytest.raises(ValueError, match="pickle"):
        tx.load(model, path)
    assert states_equal(model.state_dict(), before)


def test_mismatched_file_lists_the_problems_and_changes_nothing(tmp_path):
    """Weights of another configuration in a file without a stored architecture (as written before checkpoints
    stored it): each kind of problem is counted and its first names are listed, in a message of a few lines that
    names the file; nothing is loaded."""
    np.savez(tmp_path / "other.npz", **tx.Xception(num_classes=10, middle_blocks=2, width=1 / 8).state_dict())
    model = tx.Xception(seed=0, **SMALL)
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        tx.load(model, tmp_path / "other.npz")
    message = str(info.value)
    assert "other.npz" in message and "shape/dtype mismatches (" in message and "more" in message
    assert "unexpected keys" in message and "block6.sepconv1" in message  # the second middle block
    assert len(message) - len(str(tmp_path)) < 600, message  # 16,120 characters before the lists were cut
    assert states_equal(model.state_dict(), before)


# --- Keras HDF5 ----------------------------------------------------------------------------------------

def keras_xception_layers(rng, width=1 / 8, middle_blocks=1, num_classes=1000, include_top=True):
    """Keras' Xception as its weight file lists it: [(layer name, {weight name: array in Keras' layout})].

    Written from Keras' model definition (layer names, order, shapes), independently of the package.
    Weightless layers (activations, pools, adds) have no weights, as in the real files.
    """
    a, b, c1, c2, c3, c4, c5, c6 = (max(1, round(n * width)) for n in (32, 64, 128, 256, 728, 1024, 1536, 2048))
    layers, shortcut_convs, shortcut_bns = [("input_1", {})], iter(SHORTCUT_CONV_NAMES), iter(SHORTCUT_BN_NAMES)

    def conv(name, c_in, c_out, k):
        layers.append((name, {"kernel": rng.standard_normal((k, k, c_in, c_out)).astype(np.float32)}))

    def bn(name, c):
        layers.append((name, {"gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
                              "beta": rng.standard_normal(c).astype(np.float32),
                              "moving_mean": rng.standard_normal(c).astype(np.float32),
                              "moving_variance": rng.uniform(0.5, 2.0, c).astype(np.float32)}))

    def sep(name, c_in, c_out):
        layers.append((name, {"depthwise_kernel": rng.standard_normal((3, 3, c_in, 1)).astype(np.float32),
                              "pointwise_kernel": rng.standard_normal((1, 1, c_in, c_out)).astype(np.float32)}))

    def weightless(name):
        layers.append((name, {}))

    def down_block(n, c_in, c_mid, c_out, leading_relu=True):
        if leading_relu:
            weightless(f"block{n}_sepconv1_act")
        sep(f"block{n}_sepconv1", c_in, c_mid)
        bn(f"block{n}_sepconv1_bn", c_mid)
        weightless(f"block{n}_sepconv2_act")
        sep(f"block{n}_sepconv2", c_mid, c_out)
        bn(f"block{n}_sepconv2_bn", c_out)
        conv(next(shortcut_convs), c_in, c_out, 1)
        weightless(f"block{n}_pool")
        bn(next(shortcut_bns), c_out)
        weightless(f"add_{n}")

    conv("block1_conv1", 3, a, 3)
    bn("block1_conv1_bn", a)
    weightless("block1_conv1_act")
    conv("block1_conv2", a, b, 3)
    bn("block1_conv2_bn", b)
    weightless("block1_conv2_act")
    down_block(2, b, c1, c1, leading_relu=False)
    down_block(3, c1, c2, c2)
    down_block(4, c2, c3, c3)
    for n in range(5, 5 + middle_blocks):
        for i in (1, 2, 3):
            weightless(f"block{n}_sepconv{i}_act")
            sep(f"block{n}_sepconv{i}", c3, c3)
            bn(f"block{n}_sepconv{i}_bn", c3)
        weightless(f"add_{n}")
    n = 5 + middle_blocks
    down_block(n, c3, c3, c4)
    for i, (c_in, c_out) in enumerate(((c4, c5), (c5, c6)), start=1):
        sep(f"block{n + 1}_sepconv{i}", c_in, c_out)
        bn(f"block{n + 1}_sepconv{i}_bn", c_out)
        weightless(f"block{n + 1}_sepconv{i}_act")
    weightless("avg_pool")
    if include_top:
        layers.append(("predictions", {"kernel": rng.standard_normal((c6, num_classes)).astype(np.float32),
                                       "bias": rng.standard_normal(num_classes).astype(np.float32)}))
    return layers


def write_keras_file(path, layers, suffix=":0", nested=True, chunked=False):
    """The legacy Keras HDF5 layout. Keras 2: weight names 'layer/kernel:0' (suffix ':0'); Keras 3: no suffix.
    nested=True stores weight 'layer/kernel:0' at f[layer][layer][kernel:0], as Keras does. chunked=True
    splits layer_names into layer_names0 and layer_names1, as Keras does with attributes over 64 kB."""
    with h5py.File(path, "w") as f:
        names = np.array([name.encode() for name, _ in layers])
        if chunked:
            f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:10], names[10:]
        else:
            f.attrs["layer_names"] = names
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for name, weights in layers:
            group = f.create_group(name)
            names = [f"{name}/{w}{suffix}" if nested else f"{w}{suffix}" for w in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names]) if names else np.array([])
            for full_name, array in zip(names, weights.values()):
                group.create_dataset(full_name, data=array)


def our_layer_path(model, keras_name):
    """Where Keras layer 'blockN_rest' lives in our model: entry_flow (blocks 1-4), middle_flow, exit_flow."""
    if keras_name == "predictions":
        return "predictions"
    block, rest = keras_name.split("_", 1)
    number = int(block.removeprefix("block"))
    flow = "entry_flow" if number <= 4 else "middle_flow" if number < 5 + len(model.middle_flow) else "exit_flow"
    return f"{flow}.{block}.{rest}"


EXPECTED_LAYOUT = {  # Keras weight -> (our name inside the layer, conversion), as stated in the docs
    "kernel4": ("weight", lambda k: k.transpose(3, 2, 0, 1)),          # HWIO -> OIHW
    "kernel2": ("weight", lambda k: k.T),                              # (in, out) -> (out, in)
    "bias": ("bias", lambda b: b),
    "depthwise_kernel": ("depthwise.weight", lambda k: k.transpose(2, 3, 0, 1)),  # (kh, kw, C, 1) -> (C, 1, kh, kw)
    "pointwise_kernel": ("pointwise.weight", lambda k: k.transpose(3, 2, 0, 1)),  # (1, 1, in, out) -> (out, in, 1, 1)
    "gamma": ("gamma", lambda g: g), "beta": ("beta", lambda b: b),
    "moving_mean": ("running_mean", lambda m: m), "moving_variance": ("running_var", lambda v: v),
}


def expected_state(model, layers):
    """Our state dict as the Keras layers say it should be (shortcuts matched to blocks in file order)."""
    shortcut_paths = [f"{path}.shortcut" for path, block in model.blocks() if hasattr(block, "shortcut")]
    places = dict(zip(SHORTCUT_CONV_NAMES, shortcut_paths))
    places.update(zip(SHORTCUT_BN_NAMES, [p + "_bn" for p in shortcut_paths]))
    state = {}
    for name, weights in layers:
        path = places.get(name) or our_layer_path(model, name)
        for weight, array in weights.items():
            key = f"kernel{array.ndim}" if weight == "kernel" else weight
            ours, convert = EXPECTED_LAYOUT[key]
            state[f"{path}.{ours}"] = convert(array)
    return state


@pytest.mark.parametrize("suffix, nested, chunked", [(":0", True, False), ("", True, False), ("", False, False),
                                                     (":0", False, False), (":0", True, True)],
                         ids=["keras2", "keras3", "flat", "flat-suffixed", "chunked-names"])
def test_keras_file_lands_every_array_in_place(tmp_path, suffix, nested, chunked):
    """Each Keras array, transposed to our layout, lands in exactly one place; every model entry is covered.
    Shortcut convs/BNs with shuffled automatic numbering are matched by their order in the file."""
    layers = keras_xception_layers(np.random.default_rng(0))
    write_keras_file(tmp_path / "x.h5", layers, suffix, nested, chunked)
    model = tx.Xception(seed=0, **SMALL)
    tx.load_keras_weights(model, tmp_path / "x.h5")
    expected, state = expected_state(model, [layer for layer in layers if layer[1]]), model.state_dict()
    assert expected.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)


def reference_conv_nhwc(x, kernel, stride=1):
    """Keras' "valid" convolution by its definition, NHWC with an HWIO kernel:
    out[n, r, c, o] = sum over i, j, ci of x[n, s r + i, s c + j, ci] K[i, j, ci, o]."""
    kh, kw = kernel.shape[:2]
    rows, cols = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[3]))
    for r in range(rows):
        for c in range(cols):
            patch = x[:, r * stride:r * stride + kh, c * stride:c * stride + kw, :]
            out[:, r, c] = np.einsum("nijc,ijco->no", patch, kernel)
    return out


def reference_depthwise_nhwc(x, kernel):
    """Keras' depthwise conv ("same", stride 1, 3x3) with a (kh, kw, C, 1) kernel:
    out[n, r, c, ch] = sum over i, j of xpad[n, r + i, c + j, ch] K[i, j, ch, 0]."""
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows, cols = x.shape[1] - 2, x.shape[2] - 2
    return sum(x[:, i:i + rows, j:j + cols, :] * kernel[i, j, :, 0] for i in range(3) for j in range(3))


def test_converted_keras_weights_compute_what_keras_computes(tmp_path):
    """Our layers with loaded weights equal Keras' formulas applied to the original (HWIO ...) arrays, in NHWC."""
    layers = dict(keras_xception_layers(np.random.default_rng(1)))
    write_keras_file(tmp_path / "x.h5", list(layers.items()))
    model = tx.Xception(seed=0, **SMALL).eval()
    tx.load_keras_weights(model, tmp_path / "x.h5")
    rng = np.random.default_rng(2)

    def ours(layer, x_nhwc):  # run one of our layers on NHWC data, answer in NHWC
        return layer(x_nhwc.transpose(0, 3, 1, 2).astype(np.float32)).numpy().transpose(0, 2, 3, 1)

    x = rng.standard_normal((2, 9, 9, 3))
    np.testing.assert_allclose(ours(model.entry_flow.block1.conv1, x),
                               reference_conv_nhwc(x, layers["block1_conv1"]["kernel"], stride=2), rtol=1e-4, atol=1e-4)
    sep = layers["block3_sepconv1"]
    x = rng.standard_normal((2, 6, 6, sep["depthwise_kernel"].shape[2]))
    np.testing.assert_allclose(ours(model.entry_flow.block3.sepconv1.depthwise, x),
                               reference_depthwise_nhwc(x, sep["depthwise_kernel"]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours(model.entry_flow.block3.sepconv1.pointwise, x),
                               reference_conv_nhwc(x, sep["pointwise_kernel"]), rtol=1e-4, atol=1e-4)
    short = layers[SHORTCUT_CONV_NAMES[2]]["kernel"]  # the third shortcut belongs to block 4
    x = rng.standard_normal((2, 5, 5, short.shape[2]))
    np.testing.assert_allclose(ours(model.entry_flow.block4.shortcut, x),
                               reference_conv_nhwc(x, short, stride=2), rtol=1e-4, atol=1e-4)
    bn = layers["block6_sepconv2_bn"]
    x = rng.standard_normal((2, 3, 3, bn["gamma"].size))
    keras_bn = (x - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-3) * bn["gamma"] + bn["beta"]
    np.testing.assert_allclose(ours(model.exit_flow.block6.sepconv2_bn, x), keras_bn, rtol=1e-4, atol=1e-4)
    dense = layers["predictions"]
    x = rng.standard_normal((2, dense["kernel"].shape[0])).astype(np.float32)
    np.testing.assert_allclose(model.predictions(x).numpy(), x @ dense["kernel"] + dense["bias"], rtol=1e-4, atol=1e-4)


def test_notop_file_and_headless_model(tmp_path):
    """The _notop file fits include_top=False; a full file fits it too (its predictions layer is ignored);
    a _notop file cannot fill a model with a classifier: error naming 'predictions', model unchanged."""
    rng = np.random.default_rng(0)
    notop, full = keras_xception_layers(rng, include_top=False), keras_xception_layers(rng)
    write_keras_file(tmp_path / "notop.h5", notop)
    write_keras_file(tmp_path / "full.h5", full)
    headless = tx.Xception(include_top=False, seed=0, **SMALL)
    tx.load_keras_weights(headless, tmp_path / "notop.h5")
    from_notop = headless.state_dict()
    tx.load_keras_weights(headless, tmp_path / "full.h5")
    assert states_equal(headless.state_dict(), expected_state(headless, [layer for layer in full[:-1] if layer[1]]))
    assert not states_equal(headless.state_dict(), from_notop)
    model = tx.Xception(seed=0, **SMALL)
    before = model.state_dict()
    with pytest.raises(ValueError, match="predictions"):
        tx.load_keras_weights(model, tmp_path / "notop.h5")
    assert states_equal(model.state_dict(), before)


@pytest.mark.parametrize("damage, match", [
    ("drop_layer", "block5_sepconv2"),
    ("drop_shortcut", "shortcut conv"),
    ("other_width", "do not fit"),
    ("extra_layer", "block99_conv9"),
])
def test_bad_keras_files_leave_the_model_untouched(tmp_path, damage, match):
    """A missing layer, a missing shortcut, another width, an unknown layer: ValueError naming it, nothing loaded."""
    rng = np.random.default_rng(0)
    layers = keras_xception_layers(rng, width=1 / 4 if damage == "other_width" else 1 / 8)
    if damage == "drop_layer":
        layers = [layer for layer in layers if layer[0] != "block5_sepconv2"]
    elif damage == "drop_shortcut":
        layers = [layer for layer in layers if layer[0] != SHORTCUT_CONV_NAMES[1]]
    elif damage == "extra_layer":
        layers.append(("block99_conv9", {"depthwise_kernel": np.zeros((3, 3, 1, 1), dtype=np.float32)}))
    write_keras_file(tmp_path / "bad.h5", layers)
    model = tx.Xception(seed=0, **SMALL)
    before = model.state_dict()
    with pytest.raises(ValueError, match=match):
        tx.load_keras_weights(model, tmp_path / "bad.h5")
    assert states_equal(model.state_dict(), before)


def test_files_that_are_not_keras_weights(tmp_path):
    """Missing file: FileNotFoundError; not HDF5, or HDF5 without layer_names: ValueError saying so."""
    model = tx.Xception(**SMALL)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        tx.load_keras_weights(model, tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        tx.load_keras_weights(model, tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("something")
    with pytest.raises(ValueError, match="layer_names"):
        tx.load_keras_weights(model, tmp_path / "empty.h5")


def test_missing_h5py_gives_the_install_command(tmp_path, monkeypatch):
    """h5py is an optional extra, imported only when needed; without it the error says what to install."""
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'tinyxception\[weights\]'"):
        tx.load_keras_weights(tx.Xception(**SMALL), tmp_path / "x.h5")


@pytest.mark.parametrize("size", [75, 299])
def test_against_keras_itself(tmp_path, size):
    """With weights written by Keras' own Xception, our logits equal Keras' to float32 rounding on the same
    image (NHWC for Keras, NCHW for us). At 75 and 299 some stride-2 pools see an even size (18 -> 9,
    74 -> 37), where TensorFlow's "same" padding puts the extra pixel at the end.

    Random weights alone make a weak test: with BN statistics (0, 1) far from the real ones the signal
    fades layer by layer and the logits hardly depend on the image. So gamma and beta are random and the
    moving statistics are set to real batch statistics (one training-mode call with momentum 0)."""
    keras = pytest.importorskip("keras")
    keras_model = keras.applications.Xception(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.8, 1.2, gamma.shape), rng.normal(0, 0.1, beta.shape), mean, var])
            layer.momentum = 0.0
    keras_model(rng.uniform(-1, 1, (4, size, size, 3)).astype(np.float32), training=True)
    path = tmp_path / "keras.h5"
    try:
        from keras.src.legacy.saving import legacy_h5_format  # Keras 3
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, keras_model)
    except ImportError:  # Keras 2 writes the legacy layout for a .h5 name
        keras_model.save_weights(str(path))
    model = tx.Xception().eval()
    tx.load_keras_weights(model, path)
    image = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32) / 127.5 - 1  # Keras' preprocessing
    expected = np.asarray(keras_model(image, training=False))
    ours = model(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
