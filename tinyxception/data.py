"""Small image datasets that need no download, a train/validation split and a batch iterator.

Everything here runs on the host with NumPy; ``train.fit`` moves each batch to the
model's device. Images are float32 NCHW arrays, labels int64 class indices.

* ``load_digits()``: scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  10 classes), upsampled to 32x32. Needs the optional extra ``tinyxception[digits]``.
* ``make_shapes(n)``: circles, squares, triangles and crosses drawn at random
  positions and sizes with pixel noise; built in, any size, deterministic for a seed.
"""

import importlib

from . import backend

np = backend.cpu_module()


def import_extra(module: str, extra: str, purpose: str):
    """Import an optional dependency, or raise an ImportError that says which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                          f"pip install 'tinyxception[{extra}]'") from err


def batches(x, y, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False, shard=(0, 1)):
    """Yield ``(x_batch, y_batch)`` pairs that visit every sample exactly once.

    With ``shuffle`` the order is a random permutation drawn from ``seed`` (an int
    gives the same order every time; pass one ``numpy.random.Generator`` across
    epochs to get a new order each epoch that is still reproducible). The last
    batch may be smaller unless ``drop_last``. ``shard=(rank, size)`` keeps every
    size-th sample of the order from position rank on, after dropping the last
    ``len(x) % size``: with one seed, the ranks of a distributed run get disjoint
    shards of the same order, of equal sizes.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (rank, size) with 0 <= rank < size, got {shard}")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    order = order[:len(x) - len(x) % shard[1]][shard[0]::shard[1]]
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def train_val_split(x, y, val_fraction: float = 0.2, seed=0):
    """Shuffle once with ``seed`` and split: ``(x_train, y_train), (x_val, y_val)``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def _bilinear_matrix(n_in: int, n_out: int):
    """The (n_out, n_in) matrix that resizes a signal linearly, pixel centres aligned (half-pixel rule).

    Output pixel i samples the input at position (i + 0.5) * n_in / n_out - 0.5,
    a weighted mean of its two neighbours (clamped at the edges), so every row sums to 1.
    Column j is input pixel j's weight at every output position: np.interp of the j-th unit signal there.
    """
    position = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.stack([np.interp(position, np.arange(n_in), unit) for unit in np.eye(n_in)], axis=1)


def load_digits(size: int = 32):
    """scikit-learn's 8x8 digits, bilinearly upsampled: ``x`` float32 (1797, 1, size, size) in [0, 1], ``y`` int64.

    Upsampling is ``A @ image @ A.T`` with the bilinear matrix A, one matmul for
    all images. Needs ``pip install 'tinyxception[digits]'``.
    """
    digits = import_extra("sklearn.datasets", "digits", "load_digits").load_digits()
    images = digits.images / 16.0  # pixel values are 0..16
    a = _bilinear_matrix(images.shape[-1], size)
    x = a @ images @ a.T
    return x[:, None].astype(np.float32), digits.target.astype(np.int64)


def _circle(dx, dy, r):
    return dx * dx + dy * dy <= r * r


def _square(dx, dy, r):
    return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r


def _triangle(dx, dy, r):
    """Apex at the top (dy = -r), base at the bottom (dy = r): half-width grows from 0 to r."""
    return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)


def _cross(dx, dy, r):
    arm = r / 4
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


SHAPES = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross}


def make_shapes(n: int = 2000, size: int = 32, seed=0, noise: float = 0.1):
    """A procedurally drawn dataset: ``x`` float32 (n, 1, size, size), ``y`` int64 index into ``SHAPES``.

    Classes are balanced (counts differ by at most one). Each image is one
    shape of random radius (size/8 to size/3) and position (fully inside the
    image), random brightness in [0.5, 1], plus Gaussian pixel noise of std ``noise``.
    """
    if n < 1 or size < 8:
        raise ValueError(f"make_shapes needs n >= 1 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(SHAPES)).astype(np.int64)
    r = rng.uniform(size / 8, size / 3, n)
    cx, cy = (rng.uniform(r, size - 1 - r) for _ in range(2))
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    r = r[:, None, None]
    x = np.zeros((n, size, size))
    for label, draw in enumerate(SHAPES.values()):
        pick = y == label
        x[pick] = draw(dx[pick], dy[pick], r[pick])
    x *= rng.uniform(0.5, 1.0, (n, 1, 1))
    x += rng.normal(0.0, noise, x.shape)
    return x[:, None].astype(np.float32), y


DATASETS = {"digits": load_digits, "shapes": make_shapes}


def load_dataset(name: str, **options):
    """``(x, y)`` of the dataset called ``name`` (see ``DATASETS``); options go to its loader."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name](**options)
