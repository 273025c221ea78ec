"""Chapter 5, training: batches, a train/validation split and two datasets that need no download.

Exercise: name the silent bug each test would catch in a batch iterator.

A training loop silently trusts its data: a batch iterator that drops or repeats
samples, or a dataset whose classes are unbalanced, trains "fine" and reports
wrong numbers. These tests pin the properties down.
"""
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyxception import data

pytestmark = pytest.mark.ch5_training


@settings(deadline=None, max_examples=25)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 17), shuffle=st.booleans(), drop_last=st.booleans())
def test_batches_visit_every_sample_exactly_once(n, batch_size, shuffle, drop_last):
    """One pass yields each sample once (all but the n % batch_size left over with drop_last), pairs kept together."""
    x, y = np.arange(n) * 10, np.arange(n)
    seen = list(data.batches(x, y, batch_size, shuffle=shuffle, seed=0, drop_last=drop_last))
    expected = n - n % batch_size if drop_last else n
    xs = np.concatenate([b[0] for b in seen] + [np.zeros(0, int)])
    ys = np.concatenate([b[1] for b in seen] + [np.zeros(0, int)])
    np.testing.assert_array_equal(xs, ys * 10)
    assert len(ys) == len(set(ys.tolist())) == expected
    assert [len(b) for b, _ in seen[:-1]] == [batch_size] * (len(seen) - 1)
    assert all(1 <= len(b) <= batch_size for b, _ in seen)
    if not shuffle:
        np.testing.assert_array_equal(ys, np.arange(expected))


def test_batches_are_deterministic_for_a_seed_and_differ_across_seeds():
    """The same integer seed gives the same order; another seed (almost surely) another order."""
    x = y = np.arange(100)
    order = lambda seed: np.concatenate([b for _, b in data.batches(x, y, 16, seed=seed)])
    np.testing.assert_array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))


def test_one_generator_across_epochs_reshuffles_reproducibly():
    """Passing one Generator for all epochs gives a new order each epoch, and the same sequence of orders per seed."""
    x = y = np.arange(50)

    def two_epochs(seed):
        rng = np.random.default_rng(seed)
        return [np.concatenate([b for _, b in data.batches(x, y, 8, seed=rng)]) for _ in range(2)]

    first, second = two_epochs(7)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.stack(two_epochs(7)), np.stack([first, second]))


def test_batches_reject_mismatched_inputs():
    """x and y of different lengths, or a batch size of 0, are refused with the numbers in the message."""
    with pytest.raises(ValueError, match="same length"):
        next(data.batches(np.zeros(3), np.zeros(4), 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(np.zeros(3), np.zeros(3), 0))


def test_train_val_split_partitions_the_data():
    """Train and validation are disjoint, together cover everything, and the validation size is the fraction."""
    x, y = np.arange(100) * 2, np.arange(100)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.25, seed=0)
    assert len(yv) == 25 and len(yt) == 75
    np.testing.assert_array_equal(np.sort(np.concatenate([yt, yv])), y)
    np.testing.assert_array_equal(xt, yt * 2)
    (_, yt2), _ = data.train_val_split(x, y, val_fraction=0.25, seed=0)
    np.testing.assert_array_equal(yt, yt2)


def test_bilinear_upsampling_matrix_rows_are_convex_and_preserve_ramps():
    """Each output pixel is a weighted mean (rows >= 0 summing to 1), and a linear ramp stays linear inside."""
    a = data._bilinear_matrix(8, 32)
    assert a.shape == (32, 8) and (a >= 0).all()
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    ramp = a @ np.arange(8.0)
    # away from the clamped edges, output pixel i sits at input position (i + 0.5) / 4 - 0.5
    inner = np.arange(2, 30)
    np.testing.assert_allclose(ramp[inner], (inner + 0.5) / 4 - 0.5)


def test_load_digits_shape_dtype_and_range():
    """Digits come as float32 (1797, 1, 32, 32) in [0, 1] with int64 labels 0..9, every class present."""
    pytest.importorskip("sklearn")
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 32, 32) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.9
    assert sorted(set(y.tolist())) == list(range(10))


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    """When scikit-learn cannot be imported the error tells the user which extra to install.

    A ``None`` entry in ``sys.modules`` makes ``import`` of that name fail, as if it were not installed.
    """
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'tinyxception\[digits\]'"):
        data.load_digits()


def test_make_shapes_is_deterministic_and_balanced():
    """Same seed, same images; other seed, other images; class counts differ by at most one."""
    x, y = data.make_shapes(203, seed=5)
    x2, y2 = data.make_shapes(203, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, data.make_shapes(203, seed=6)[0])
    counts = np.bincount(y, minlength=len(data.SHAPES))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 203
    assert x.shape == (203, 1, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64


def test_make_shapes_draws_the_named_shape():
    """Without noise, a circle covers about pi r^2 / (2r)^2 = 79% of its bounding box, a cross far less."""
    x, y = data.make_shapes(400, size=64, seed=0, noise=0.0)
    fill = {}
    for label, name in enumerate(data.SHAPES):
        masks = x[y == label, 0] > 0
        rows, cols = masks.any(axis=2), masks.any(axis=1)
        fill[name] = np.mean(masks.sum(axis=(1, 2)) / (rows.sum(axis=1) * cols.sum(axis=1)))
    assert 0.7 < fill["circle"] < 0.85
    assert fill["square"] > 0.95
    assert 0.4 < fill["triangle"] < 0.6
    assert fill["cross"] < 0.5


def test_load_dataset_dispatches_and_lists_valid_names():
    """load_dataset("shapes") is make_shapes; an unknown name raises a ValueError listing the valid ones."""
    x, y = data.load_dataset("shapes", n=8, seed=1)
    np.testing.assert_array_equal(x, data.make_shapes(8, seed=1)[0])
    with pytest.raises(ValueError, match="digits, shapes"):
        data.load_dataset("nope")
