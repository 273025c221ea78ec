"""Chapter 4, Xception: the ImageNet weights by name, Keras' preprocessing, the class names, and ``predict``.

Exercise: work out by hand what ``preprocess_input`` makes of the pixel values 0, 127 and 255, and why the
ImageNet weights need exactly that.

No test reaches the internet. The download tests serve files from a small HTTP server on 127.0.0.1 (a good
weight file, a corrupted one, a truncated one) and point the weight table at it; everything between the
table and the cache is the real code path (pooch's download, checksum and cache). The weight files are
synthetic, written in Keras' layout by the helpers of tests/test_io.py.
"""
import hashlib
import http.server
import re
import socket
import sys
import threading
import time

import numpy as np
import pytest

import tinyxception as tx
from tinyxception import cli, pretrained

pytestmark = pytest.mark.ch4_xception

pytest.importorskip("h5py")
pytest.importorskip("pooch")
from test_io import SMALL, expected_state, keras_xception_layers, write_keras_file  # noqa: E402

TOP = "xception_weights_tf_dim_ordering_tf_kernels.h5"
NOTOP = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_the_real_urls_and_checksums():
    """The table points at Keras' own files with the md5 checksums Keras publishes for them (the tests below
    patch it to a local server; this pins the values a user's download is checked against)."""
    assert pretrained.KERAS_URL == "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
    assert pretrained.IMAGENET_WEIGHTS == {True: (TOP, "0a58e3b7378bc2990ea3b43d5981f1f6"),
                                           False: (NOTOP, "b0042744bf5b25fce3cb969f33bebb97")}


# --- class names, preprocessing, decoding -------------------------------------------------------------

def test_class_names_are_the_1000_imagenet_classes_in_keras_order():
    """1000 names in the standard synset order, as Keras' imagenet_class_index.json spells them; a shifted or
    truncated list would label every prediction wrongly."""
    names = tx.class_names()
    assert len(names) == 1000 and all(name and name == name.strip() for name in names)
    known = {0: "tench", 1: "goldfish", 2: "great_white_shark", 145: "king_penguin", 207: "golden_retriever",
             281: "tabby", 652: "military_uniform", 817: "sports_car", 954: "banana", 999: "toilet_tissue"}
    assert {i: names[i] for i in known} == known
    assert names[134] == names[517] == "crane"  # the bird and the machine: ImageNet has both, as Keras does


def test_preprocess_input_is_keras_tf_mode_in_our_layout():
    """uint8 NHWC (as images are read) becomes float32 NCHW with x / 127.5 - 1: 0 -> -1, 255 -> 1; an NCHW
    batch gives the same values without the transpose; floats 0..255 give the same as their uint8 values."""
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    out = tx.preprocess_input(nhwc)
    assert out.dtype == np.float32 and out.shape == (2, 3, 5, 7) and out.flags.c_contiguous
    expected = nhwc.transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert tx.preprocess_input(np.array([[[[0, 255, 255]]]], dtype=np.uint8)).ravel().tolist() == [-1, 1, 1]
    np.testing.assert_array_equal(tx.preprocess_input(nhwc.transpose(0, 3, 1, 2)), out)
    np.testing.assert_array_equal(tx.preprocess_input(nhwc.astype(np.float64)), out)


@pytest.mark.parametrize("images, error, match", [
    (np.zeros((5, 7, 3), np.uint8), ValueError, r"\(5, 7, 3\).*image\[None\]"),
    (np.zeros((2, 5, 7, 4), np.uint8), ValueError, r"\(2, 5, 7, 4\)"),
    (np.zeros((2, 1, 7, 7), np.uint8), ValueError, "RGB"),
    (np.zeros((1, 5, 5, 3), bool), TypeError, "bool"),
], ids=["one-image", "four-channels", "grey", "bool"])
def test_preprocess_input_refuses_what_is_not_an_rgb_batch(images, error, match):
    """Anything but a 4-d RGB batch of numbers is refused with its shape or dtype in the message."""
    with pytest.raises(error, match=match):
        tx.preprocess_input(images)


def test_preprocess_and_decode_on_any_device(device):
    """preprocess_input keeps a batch on its device (where the model's input must be); decode_predictions takes
    logits from any device and gives the same answer as from the CPU."""
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    out = tx.preprocess_input(tx.backend.to_device(pixels, device))
    assert tx.backend.device_of(out) == device
    np.testing.assert_array_equal(tx.backend.asnumpy(out), tx.preprocess_input(pixels))
    logits = np.random.default_rng(1).standard_normal((2, 1000)).astype(np.float32)
    assert tx.decode_predictions(tx.tensor(logits, device=device)) == tx.decode_predictions(logits)


def test_decode_predictions_gives_the_top_classes_with_softmax_probabilities():
    """One list per image of (class_id, name, probability), most probable first; the probabilities are the
    softmax of the logits (checked against a direct computation), so a top-1000 list sums to 1."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 1000)).astype(np.float32) * 3
    logits[1, 652] = 50.0
    decoded = tx.decode_predictions(tx.tensor(logits), top=5)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert len(decoded) == 3 and all(len(row) == 5 for row in decoded)
    for row, p in zip(decoded, softmax):
        assert [k for k, _, _ in row] == list(np.argsort(p)[::-1][:5])
        assert [name for _, name, _ in row] == [tx.class_names()[k] for k, _, _ in row]
        np.testing.assert_allclose([q for _, _, q in row], p[[k for k, _, _ in row]], rtol=1e-5)
    assert decoded[1][0][:2] == (652, "military_uniform") and decoded[1][0][2] > 0.999
    assert sum(q for _, _, q in tx.decode_predictions(logits[:1], top=1000)[0]) == pytest.approx(1)


@pytest.mark.parametrize("logits, top", [(np.zeros((2, 10)), 5), (np.zeros(1000), 5), (np.zeros((1, 1000)), 0),
                                         (np.zeros((1, 1000)), 1001)], ids=["10-classes", "1-d", "top-0", "top-1001"])
def test_decode_predictions_refuses_other_shapes_and_tops(logits, top):
    """Only (N, 1000) logits and a top from 1 to 1000; the message names both."""
    with pytest.raises(ValueError, match=r"\(N, 1000\).*top"):
        tx.decode_predictions(logits, top=top)


# --- the download path, against a local server --------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files {path: (body, declared length)}; a declared length above len(body) makes a
    truncated download (the connection closes early). Records every request in server.requests."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.files:
            self.send_error(404)
            return
        body, length = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 at a free port, shut down after the test."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def serve_weights(monkeypatch, server, tmp_path, body, md5, include_top=True, declared=None):
    """Point the weight table at `server`, which serves `body`, and the cache at an empty tmp folder."""
    name = TOP if include_top else NOTOP
    server.files[f"/weights/{name}"] = (body, len(body) if declared is None else declared)
    monkeypatch.setattr(pretrained, "KERAS_URL", f"http://127.0.0.1:{server.server_port}/weights/")
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, include_top, (name, md5))
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / name


@pytest.fixture(scope="module")
def small_weight_file(tmp_path_factory):
    """(bytes, md5) of a Keras-layout weight file; the download tests only care that the bytes arrive intact."""
    path = tmp_path_factory.mktemp("small") / "x.h5"
    write_keras_file(path, keras_xception_layers(np.random.default_rng(0)))
    body = path.read_bytes()
    return body, hashlib.md5(body).hexdigest()


def test_download_is_verified_cached_and_reused_without_the_network(monkeypatch, server, tmp_path,
                                                                    small_weight_file):
    """The first call downloads into the cache folder ($TINYXCEPTION_CACHE) and returns the file, byte for
    byte; the second call returns the cached file without a request, and still does with the server gone."""
    body, md5 = small_weight_file
    cached = serve_weights(monkeypatch, server, tmp_path, body, md5)
    assert pretrained.fetch_weights() == str(cached) and cached.read_bytes() == body
    assert server.requests == [f"/weights/{TOP}"]
    server.shutdown()
    server.server_close()
    assert pretrained.fetch_weights() == str(cached)
    assert server.requests == [f"/weights/{TOP}"]


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_bad_download_is_refused_and_nothing_stays_in_the_cache(monkeypatch, server, tmp_path,
                                                                  small_weight_file, damage):
    """A file whose bytes differ from the checksum, or whose transfer stops half-way: OSError naming the URL,
    the expected md5 and where to put the file by hand; the cache folder holds no file afterwards."""
    body, md5 = small_weight_file
    if damage == "corrupted":
        cached = serve_weights(monkeypatch, server, tmp_path, body[:1000] + b"x" + body[1001:], md5)
    else:
        cached = serve_weights(monkeypatch, server, tmp_path, body[: len(body) // 2], md5, declared=len(body))
    with pytest.raises(OSError) as info:
        pretrained.fetch_weights()
    message = str(info.value)
    assert f"http://127.0.0.1:{server.server_port}/weights/{TOP}" in message and md5 in message
    assert str(cached) in message
    assert not cached.parent.exists() or list(cached.parent.iterdir()) == []


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_clearly_and_quickly(monkeypatch, tmp_path):
    """Nothing listening at the URL: OSError with the URL and the checksum well within 30 s, nothing cached."""
    monkeypatch.setattr(pretrained, "KERAS_URL", f"http://127.0.0.1:{_closed_port()}/weights/")
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    start = time.monotonic()
    with pytest.raises(OSError, match="0a58e3b7378bc2990ea3b43d5981f1f6") as info:
        pretrained.fetch_weights()
    assert time.monotonic() - start < 30
    assert pretrained.KERAS_URL + TOP in str(info.value)
    assert not (tmp_path / "cache" / TOP).exists()


def test_a_server_that_never_answers_times_out(monkeypatch, tmp_path):
    """A host that accepts the connection but sends nothing fails after DOWNLOAD_TIMEOUT_S (shortened here),
    instead of hanging: the timeout really reaches the download."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(pretrained, "KERAS_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/")
        monkeypatch.setattr(pretrained, "DOWNLOAD_TIMEOUT_S", 0.5)
        monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
        start = time.monotonic()
        with pytest.raises(OSError, match="Timeout"):
            pretrained.fetch_weights()
        assert time.monotonic() - start < 10


def test_missing_pooch_gives_the_install_command(monkeypatch):
    """pooch is in the `weights` extra, imported only when weights are fetched; without it, what to install."""
    monkeypatch.setitem(sys.modules, "pooch", None)
    with pytest.raises(ImportError, match=r"pip install 'tinyxception\[weights\]'"):
        pretrained.fetch_weights()


# --- Xception(weights=...) ----------------------------------------------------------------------------

def realistic_keras_layers(seed=0):
    """Keras' full Xception file contents, with kernels scaled by 1/sqrt(fan-in) so that activations stay
    of order one through the 36 layers and the softmax is neither uniform nor one-hot."""
    layers = keras_xception_layers(np.random.default_rng(seed), width=1, middle_blocks=8)
    for _, weights in layers:
        for name, array in weights.items():
            if name.endswith("kernel"):
                array /= np.float32(np.sqrt(9 if name == "depthwise_kernel" else np.prod(array.shape[:-1])))
    return layers


@pytest.fixture(scope="module")
def paper_weights(tmp_path_factory):
    """(path, layers, md5) of a full-size synthetic weight file with the classifier (88 MB, as Keras' is)."""
    path, layers = tmp_path_factory.mktemp("paper") / "paper.h5", realistic_keras_layers()
    write_keras_file(path, layers)
    return path, layers, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_imagenet_weights_by_name_land_in_the_paper_network(monkeypatch, server, tmp_path, paper_weights):
    """Xception(weights="imagenet") downloads, verifies and caches the file, and every array of it lands where
    Keras' layer names say (the independent expectation of tests/test_io.py)."""
    path, layers, md5 = paper_weights
    serve_weights(monkeypatch, server, tmp_path, path.read_bytes(), md5)
    model = tx.Xception(weights="imagenet")
    expected, state = expected_state(model, [layer for layer in layers if layer[1]]), model.state_dict()
    assert expected.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
    assert server.requests == [f"/weights/{TOP}"]


def test_headless_model_fetches_the_notop_file(monkeypatch, server, tmp_path):
    """include_top=False asks for Keras' _notop file (and accepts any num_classes, which it does not use)."""
    serve_weights(monkeypatch, server, tmp_path, b"not the real thing", "0" * 32, include_top=False)
    with pytest.raises(OSError, match="_notop.h5"):
        tx.Xception(include_top=False, num_classes=10, weights="imagenet")
    assert server.requests == [f"/weights/{NOTOP}"]


@pytest.mark.parametrize("options", [{"num_classes": 10}, {"width": 0.5}, {"middle_blocks": 2}],
                         ids=["classes", "width", "middle"])
def test_imagenet_weights_refuse_another_network_before_downloading(monkeypatch, server, tmp_path, options):
    """A model the ImageNet weights cannot fit is refused (ValueError naming the option) without a request."""
    serve_weights(monkeypatch, server, tmp_path, b"", "0" * 32)
    with pytest.raises(ValueError, match=next(iter(options))):
        tx.Xception(weights="imagenet", **options)
    assert server.requests == []


def test_weights_path_loads_a_local_keras_file(tmp_path):
    """weights=PATH reads a Keras file from disk, exactly as tx.load_keras_weights does, for any configuration."""
    layers = keras_xception_layers(np.random.default_rng(1))
    write_keras_file(tmp_path / "mine.h5", layers)
    model = tx.Xception(weights=tmp_path / "mine.h5", **SMALL)
    expected = expected_state(model, [layer for layer in layers if layer[1]])
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        tx.Xception(weights=tmp_path / "missing.h5", **SMALL)


# --- python -m tinyxception predict ---------------------------------------------------------------------

def nearest_resize(pixels, size):
    """Pillow's nearest-neighbour resize, written out: output pixel i reads input pixel floor((i + 0.5) * in / out)."""
    rows = ((np.arange(size) + 0.5) * pixels.shape[0] / size).astype(int)
    cols = ((np.arange(size) + 0.5) * pixels.shape[1] / size).astype(int)
    return pixels[rows][:, cols]


@pytest.fixture
def photos(tmp_path):
    """Two RGB images of other sizes than 299x299 (a PNG and a greyscale PNG), their pixels, and a text file."""
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    colour, grey = rng.integers(0, 256, (181, 421, 3), dtype=np.uint8), rng.integers(0, 256, (320, 300), np.uint8)
    image.fromarray(colour).save(tmp_path / "colour.png")
    image.fromarray(grey).save(tmp_path / "grey.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return {"colour.png": colour, "grey.png": np.repeat(grey[:, :, None], 3, axis=2), "dir": tmp_path}


def test_load_image_resizes_to_299_with_nearest_neighbour(photos):
    """load_image gives (299, 299, 3) uint8 RGB pixels, each copied from the input pixel that nearest-neighbour
    resizing (Keras' load_img default) picks; a greyscale image becomes three equal channels."""
    for name in ("colour.png", "grey.png"):
        pixels = pretrained.load_image(photos["dir"] / name)
        assert pixels.shape == (299, 299, 3) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, nearest_resize(photos[name], 299), err_msg=name)


@pytest.mark.slow
def test_predict_prints_the_models_probabilities(photos, paper_weights, capsys):
    """`predict IMAGE... --weights FILE --top 3` prints, per image, the 3 classes that the softmax of the model's
    logits ranks first, with index, name and probability, computed here from the same file and pixels."""
    path, _, _ = paper_weights
    files = [str(photos["dir"] / name) for name in ("colour.png", "grey.png")]
    assert cli.main(["predict", *files, "--weights", str(path), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = tx.Xception(weights=path).eval()
    pixels = np.stack([nearest_resize(photos[name], 299) for name in ("colour.png", "grey.png")])
    with tx.no_grad():
        logits = model(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1).numpy().astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert len(lines) == 2 * 4
    for k, file in enumerate(files):
        assert lines[4 * k] == file
        rows = [line.split() for line in lines[4 * k + 1: 4 * k + 4]]
        assert [int(r[0]) for r in rows] == list(np.argsort(p[k])[::-1][:3])
        assert [r[1] for r in rows] == [tx.class_names()[int(r[0])] for r in rows]
        np.testing.assert_allclose([float(r[2]) for r in rows], p[k][[int(r[0]) for r in rows]], atol=1e-6)


@pytest.mark.parametrize("case, match", [
    ("missing", "no such image file.*nowhere.jpg"),
    ("not-an-image", "notes.txt.*not an image"),
    ("no-pillow", r"pip install 'tinyxception\[image\]'"),
    ("missing-weights", "no such file.*absent.h5"),
])
def test_predict_errors_are_one_line(photos, monkeypatch, capsys, case, match):
    """A missing file, a file that is not an image, no Pillow, or a weight file that is not there: exit code 2
    and one line on stderr saying what is wrong, no traceback."""
    image, weights = str(photos["dir"] / "colour.png"), []
    if case == "missing":
        image = str(photos["dir"] / "nowhere.jpg")
    elif case == "not-an-image":
        image = str(photos["dir"] / "notes.txt")
    elif case == "no-pillow":
        monkeypatch.setitem(sys.modules, "PIL", None)
    else:
        weights = ["--weights", str(photos["dir"] / "absent.h5")]
    assert cli.main(["predict", image, *weights]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyxception predict: error:") and err.count("\n") == 1
    assert re.search(match, err), err


def test_predict_without_reachable_weights_says_where_to_put_them(photos, monkeypatch, tmp_path, capsys):
    """`predict` with the default weights="imagenet" and no way to download them: exit 2, one line naming the
    URL and the path in the cache where the file can be put by hand."""
    monkeypatch.setattr(pretrained, "KERAS_URL", f"http://127.0.0.1:{_closed_port()}/weights/")
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    assert cli.main(["predict", str(photos["dir"] / "colour.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and pretrained.KERAS_URL + TOP in err and str(tmp_path / "cache" / TOP) in err


def test_predict_agrees_with_keras_itself(photos, tmp_path, capsys):
    """With weights written by Keras' own Xception and the same image files, the printed probabilities equal
    Keras' pipeline (load_img at 299x299, preprocess_input, predict) to the 6 printed decimals."""
    keras = pytest.importorskip("keras")
    legacy_h5_format = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")  # Keras 3
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    model = keras.applications.Xception(weights=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.8, 1.2, gamma.shape), rng.normal(0, 0.1, beta.shape), mean, var])
            layer.momentum = 0.0
    model(rng.uniform(-1, 1, (4, 299, 299, 3)).astype(np.float32), training=True)  # real BN statistics
    with h5py.File(tmp_path / "keras.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    files = [str(photos["dir"] / name) for name in ("colour.png", "grey.png")]
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(f, target_size=(299, 299))) for f in files])
    expected = np.asarray(model.predict(keras.applications.xception.preprocess_input(x), verbose=0))
    assert cli.main(["predict", *files, "--weights", str(tmp_path / "keras.h5")]) == 0
    lines = capsys.readouterr().out.splitlines()
    for k in range(len(files)):
        rows = [line.split() for line in lines[6 * k + 1: 6 * k + 6]]
        assert [int(r[0]) for r in rows] == list(np.argsort(expected[k])[::-1][:5])
        np.testing.assert_allclose([float(r[2]) for r in rows], expected[k][[int(r[0]) for r in rows]], atol=1e-6)
