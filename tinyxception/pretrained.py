"""ImageNet weights by name, Keras' preprocessing, the 1000 class names, and ``python -m tinyxception predict``.

``tx.Xception(weights="imagenet")`` builds the paper network and fills it with the weights Keras'
``applications.Xception`` uses: the file is fetched from Keras' own storage by pooch, its md5 checksum
is verified (the ones Keras publishes), and it is kept in a cache folder, so later calls need no network.
The cache is ``pooch.os_cache("tinyxception")`` (``~/.cache/tinyxception`` on Linux) unless the
environment variable ``TINYXCEPTION_CACHE`` names another folder. ``weights=PATH`` loads a local file.

Those weights expect Keras' "tf" preprocessing, pixels scaled to [-1, 1] (``preprocess_input``), and
their 1000 outputs are the ImageNet-1k classes in the standard synset order (``class_names``).

    python -m tinyxception predict photo.jpg                  # Keras' ImageNet weights (fetched once, cached)
    python -m tinyxception predict a.jpg b.png --top 3 --weights my_keras_weights.h5

``predict`` reads each image with Pillow, converts it to RGB and resizes it to 299x299 as Keras' own
example does (``keras.utils.load_img(path, target_size=(299, 299))``, whose default interpolation is
Pillow's "nearest"), so a file gives the same pixels here and in Keras; then ``preprocess_input``, one
forward pass in evaluation mode, and ``decode_predictions``: per class its index, name and probability.
"""
import functools
import os
from importlib import resources

from . import backend, functional as F
from .autograd import Tensor, no_grad
from .data import import_extra
from .keras import load_keras_weights
from .models import Xception

np = backend.cpu_module()

# Keras' weight files at KERAS_URL, include_top -> (file name, its md5): with the 1000-way classifier, or without.
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
IMAGENET_WEIGHTS = {True: ("xception_weights_tf_dim_ordering_tf_kernels.h5", "0a58e3b7378bc2990ea3b43d5981f1f6"),
                    False: ("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "b0042744bf5b25fce3cb969f33bebb97")}
CACHE_ENV = "TINYXCEPTION_CACHE"
DOWNLOAD_TIMEOUT_S = 15  # for the connection, and for each next piece of data: an unreachable host fails in this
# The options a model must have for Keras' weights to fit it (num_classes only with the top).
PAPER = {"num_classes": 1000, "in_channels": 3, "middle_blocks": 8, "width": 1, "residual": True, "groups": None}


def cache_dir() -> str:
    """The folder that keeps downloaded weights: $TINYXCEPTION_CACHE, else pooch.os_cache("tinyxception")."""
    pooch = import_extra("pooch", "weights", "fetching the ImageNet weights")
    return os.environ.get(CACHE_ENV) or str(pooch.os_cache("tinyxception"))


def fetch_weights(include_top: bool = True) -> str:
    """The local path of Keras' ImageNet weight file, downloaded and checksum-verified on first use.

    A download goes to a temporary file that is renamed into the cache only when its checksum is right,
    so a failed, truncated or corrupted download never stays there. Failing that, OSError naming the
    URL, the expected checksum and where the file can be put by hand.
    """
    (name, md5), folder = IMAGENET_WEIGHTS[bool(include_top)], cache_dir()  # cache_dir checks for pooch
    import pooch

    url = KERAS_URL + name
    try:  # a checksum mismatch is a ValueError; network errors (requests') are OSErrors
        downloader = pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S)
        return pooch.retrieve(url, f"md5:{md5}", fname=name, path=folder, downloader=downloader)
    except (ValueError, OSError) as err:
        raise OSError(f"could not get the ImageNet weights from {url} ({type(err).__name__}: {err}). Download the "
                      f"file by other means, check that its md5 is {md5}, and put it at {os.path.join(folder, name)}"
                      " (or pass weights=PATH)") from err


def load_weights(model, weights) -> None:
    """Fill `model` (a tx.Xception) with ``weights="imagenet"`` (fetched, cached) or a Keras file at a path."""
    if weights == "imagenet":  # refuse a model they cannot fit before downloading 88 MB
        wrong = {k: getattr(model.config, k) for k, v in PAPER.items()
                 if getattr(model.config, k) != v and (model.config.include_top or k != "num_classes")}
        if wrong:
            raise ValueError(f"Xception: weights='imagenet' need the paper's options {PAPER}, got {wrong}")
    load_keras_weights(model, fetch_weights(model.config.include_top) if weights == "imagenet" else weights)


def preprocess_input(images):
    """Keras' "tf" preprocessing: pixels 0..255 to ``x / 127.5 - 1`` in [-1, 1], as the ImageNet weights expect.

    `images` is a batch of RGB images, (N, H, W, 3) as images are read (uint8 from Pillow or imageio) or
    already (N, 3, H, W); any integer or float dtype. Returns the model's input: a float32 (N, 3, H, W)
    array on the same device. A single image needs its batch axis: ``image[None]``.
    """
    images = backend.array_module(images).asarray(images)
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[3]):
        raise ValueError(f"preprocess_input: expected a batch of RGB images (N, H, W, 3) or (N, 3, H, W), got "
                         f"shape {images.shape}" + ("; for one image use image[None]" if images.ndim == 3 else ""))
    if images.dtype.kind not in "uif":
        raise TypeError(f"preprocess_input: expected pixel values 0..255 (uint8 or float), got dtype {images.dtype}")
    if images.shape[3] == 3:  # NHWC, the layout images are read in; (N, 3, H, 3) counts as NHWC too
        images = images.transpose(0, 3, 1, 2)
    return images.astype("float32", order="C") / 127.5 - 1


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in Keras' order (0 "tench", 1 "goldfish", ..., 999 "toilet_tissue")."""
    text = resources.files("tinyxception").joinpath("data/imagenet_classes.txt").read_text(encoding="utf8")
    return tuple(text.splitlines())


def decode_predictions(logits, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """For each image, its `top` classes as ``(class_id, name, probability)``, most probable first.

    `logits` is the model's (N, 1000) output (a Tensor or an array); the probabilities are its softmax.
    Keras' ``decode_predictions`` gives the synset id (like "n03763968") in the first place; ours is the
    class index, what a label array holds.
    """
    z = logits.numpy() if isinstance(logits, Tensor) else backend.asnumpy(logits)
    if z.ndim != 2 or z.shape[1] != len(class_names()) or not isinstance(top, int) or not 1 <= top <= z.shape[1]:
        raise ValueError(f"decode_predictions: expected logits of shape (N, 1000) and top from 1 to 1000, got "
                         f"shape {z.shape} and top={top!r}")
    with no_grad():
        probabilities = np.exp(F.log_softmax(z.astype("float64")).numpy())
    return [[(int(k), class_names()[k], float(p[k])) for k in p.argsort()[::-1][:top]] for p in probabilities]


def load_image(path, size: int = 299):
    """The image at `path` as a (size, size, 3) uint8 RGB array, resized with Pillow's nearest neighbour."""
    import_extra("PIL", "image", "reading images")  # Pillow's package
    from PIL import Image
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {os.fspath(path)!r}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.NEAREST), dtype="uint8")
    except OSError as err:  # Pillow's UnidentifiedImageError, or a damaged file
        raise ValueError(f"{os.fspath(path)!r} is not an image Pillow can read: {err}") from err


def add_predict_arguments(parser) -> None:
    """The options of ``python -m tinyxception predict``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' (the default: Keras' weights) or a file")
    parser.add_argument("--top", type=int, default=5, help="classes to print per image (default: 5)")


def run_predict(args) -> int:
    """Read every image first (a bad file stops the run before the model is built), then classify them."""
    images = np.stack([load_image(path) for path in args.images])
    model = Xception(weights=args.weights).eval()
    with no_grad():
        logits = model(preprocess_input(images))
    for path, top in zip(args.images, decode_predictions(logits, args.top)):
        print(path + "".join(f"\n  {class_id:>4}  {name:<30} {p:.6f}" for class_id, name, p in top))
    return 0
