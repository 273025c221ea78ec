"""Chapter 3, normalisation and pooling: max pooling and global average pooling.

Exercise: write the backward passes of max pooling (ties!) and global average pooling in
``tinyxception/exercises/pool.py`` and run ``pytest --exercises -m ch3_norm_pool`` (notebook 04).

Max pooling and global average pooling: naive references, TensorFlow "same" padding, gradients, errors.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients
from naive import same_padding

pytestmark = pytest.mark.ch3_norm_pool

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def reference_pads(size, k, stride, padding):
    """(before, after) padding of one axis, from the definitions ("same": TensorFlow's rule in naive.py)."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return same_padding(size, k, stride)
    return padding, padding


def reference_max_pool(x, kernel, stride, padding):
    """Max pooling by a loop over output positions on an explicitly -inf padded copy."""
    (kh, kw), (h, w) = kernel, x.shape[2:]
    ph, pw = reference_pads(h, kh, stride, padding), reference_pads(w, kw, stride, padding)
    xpad = np.pad(x, ((0, 0), (0, 0), ph, pw), constant_values=-np.inf)
    out_h, out_w = (xpad.shape[2] - kh) // stride + 1, (xpad.shape[3] - kw) // stride + 1
    out = np.empty(x.shape[:2] + (out_h, out_w))
    for r in range(out_h):
        for c in range(out_w):
            window = xpad[:, :, r * stride:r * stride + kh, c * stride:c * stride + kw]
            out[:, :, r, c] = window.max(axis=(2, 3))
    return out


@st.composite
def pool_problems(draw):
    """A shape, kernel (int or pair; 2 and 3 included), stride and padding for which the pool is defined."""
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kernel = draw(st.sampled_from([2, 3, (3, 2), (1, 3)]))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["same", "valid", 0, 1]))
    pads = [reference_pads(h, kh, stride, padding), reference_pads(w, kw, stride, padding)]
    assume(not isinstance(padding, int) or padding <= min(kh, kw) // 2)
    assume(h + sum(pads[0]) >= kh and w + sum(pads[1]) >= kw)
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel, stride, padding


@SETTINGS
@given(problem=pool_problems(), seed=st.integers(0, 100))
def test_max_pool_matches_naive_loops(device, problem, seed):
    """max_pool2d equals a loop over windows, for odd/even sizes, kernels 2 and 3, strides 1-3, all paddings."""
    shape, kernel, stride, padding = problem
    note(f"x {shape}, kernel {kernel}, stride {stride}, padding {padding!r}")
    x = np.random.default_rng(seed).normal(size=shape)
    pair = (kernel, kernel) if isinstance(kernel, int) else kernel
    out = F.max_pool2d(tx.tensor(x, device=device), kernel, stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference_max_pool(x, pair, stride, padding))


def test_same_padding_at_even_size_puts_the_extra_pixel_bottom_right(device):
    """74 -> 37 with 3x3 stride 2 "same" pads (0, 1), unlike PyTorch-style symmetric padding 1: outputs differ."""
    x = np.random.default_rng(0).normal(size=(1, 2, 74, 74))
    same = F.max_pool2d(tx.tensor(x, device=device), 3, 2, "same").numpy()
    symmetric = F.max_pool2d(tx.tensor(x, device=device), 3, 2, 1).numpy()
    assert same.shape == symmetric.shape == (1, 2, 37, 37)
    np.testing.assert_array_equal(same[..., 0, 0], x[..., 0:3, 0:3].max(axis=(2, 3)))
    np.testing.assert_array_equal(same[..., -1, -1], x[..., 72:74, 72:74].max(axis=(2, 3)))
    np.testing.assert_array_equal(symmetric[..., 0, 0], x[..., 0:2, 0:2].max(axis=(2, 3)))
    assert not np.array_equal(same, symmetric)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=pool_problems(), seed=st.integers(0, 100))
def test_max_pool_gradient(device, problem, seed):
    """The gradient of x matches float64 central differences (distinct values, so every max is unique)."""
    shape, kernel, stride, padding = problem
    note(f"x {shape}, kernel {kernel}, stride {stride}, padding {padding!r}")
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) * 0.1
    check_gradients(lambda x: F.max_pool2d(x, kernel, stride, padding), x, device=device)


def test_ties_send_the_gradient_to_the_first_maximum_only(device):
    """With equal values in a window the whole gradient goes to its first (top-left) element, once."""
    x = tx.tensor(np.zeros((1, 2, 4, 6)), requires_grad=True, device=device)
    grad = np.random.default_rng(1).normal(size=(1, 2, 2, 3))
    F.max_pool2d(x, 2, 2, "valid").backward(tx.tensor(grad, device=device).data)
    expected = np.zeros((1, 2, 4, 6))
    expected[..., ::2, ::2] = grad
    np.testing.assert_array_equal(tx.backend.asnumpy(x.grad), expected)


def test_ties_in_overlapping_windows_are_not_counted_twice(device):
    """A constant input under 3x3 stride-2 "same" windows: each window passes on its gradient exactly once."""
    x = tx.tensor(np.ones((2, 3, 8, 7)), requires_grad=True, device=device)
    out = F.max_pool2d(x, 3, 2, "same")
    grad = np.random.default_rng(2).uniform(1, 2, size=out.shape)
    out.backward(tx.tensor(grad, device=device).data)
    dx = tx.backend.asnumpy(x.grad)
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), grad.sum(axis=(2, 3)))
    assert np.count_nonzero(dx) == grad[0, 0].size * 6


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 1), (3, 1, 6, 6)])
def test_global_avg_pool_matches_plain_mean(device, shape):
    """global_avg_pool2d returns (N, C): the sum of every channel's pixels divided by their number."""
    x = np.random.default_rng(3).normal(size=shape)
    expected = np.array([[x[n, c].sum() / (shape[2] * shape[3]) for c in range(shape[1])] for n in range(shape[0])])
    np.testing.assert_allclose(F.global_avg_pool2d(tx.tensor(x, device=device)).numpy(), expected, rtol=1e-12)


def test_global_avg_pool_gradient(device):
    """The gradient of x (each pixel gets grad / (H*W)) matches float64 central differences."""
    x = np.random.default_rng(4).normal(size=(2, 3, 3, 5))
    check_gradients(F.global_avg_pool2d, x, device=device)


@pytest.mark.parametrize("pool", [lambda x: F.max_pool2d(x, 3, 2, "same"), F.global_avg_pool2d],
                         ids=["max", "global_avg"])
def test_float32_stays_float32(device, pool):
    """float32 input gives float32 output and a float32 gradient."""
    x = tx.tensor(np.random.default_rng(5).normal(size=(2, 3, 6, 5)).astype(np.float32), requires_grad=True,
                  device=device)
    out = pool(x)
    out.sum().backward()
    assert out.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("call, error, words", [
    (lambda: F.max_pool2d(np.zeros((3, 6, 6), np.float32)), ValueError, ["(N, C, H, W)", "(3, 6, 6)"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 6, 6), np.int64)), TypeError, ["floating point", "int64"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 5, 1, "valid"), ValueError,
     ["kernel 5x5", "padded input 3x3"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 3, 1, 2), ValueError, ["at most half", "got 2"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 0), ValueError, ["kernel_size", "0"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), (3,)), ValueError, ["kernel_size", "(3,)"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 2, 0), ValueError, ["stride", "0"]),
    (lambda: F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 2, 1, "full"), ValueError, ["padding", "'full'"]),
    (lambda: F.global_avg_pool2d(np.zeros((2, 3), np.float32)), ValueError, ["(N, C, H, W)", "(2, 3)"]),
    (lambda: F.global_avg_pool2d(np.zeros((2, 3, 2, 2), np.int32)), TypeError, ["floating point", "int32"]),
])
def test_bad_input_is_rejected_with_a_clear_message(call, error, words):
    """Wrong rank, integer dtype, a kernel larger than the padded input, bad kernel/stride/padding: clear errors."""
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), (2, 2, 0), (3, 1, 0), ((3, 2), 2, 1)])
def test_max_pool_matches_torch(kernel, stride, padding):
    """With int padding, output and gradient agree with torch.nn.functional.max_pool2d."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).normal(size=(2, 3, 9, 8))
    ours = tx.tensor(x, requires_grad=True)
    out = F.max_pool2d(ours, kernel, stride, padding)
    (out * out).sum().backward()
    theirs = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.max_pool2d(theirs, kernel, stride, padding)
    (ref * ref).sum().backward()
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)
