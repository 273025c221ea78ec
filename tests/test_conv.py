"""Chapter 2, convolutions: depthwise, pointwise and grouped conv2d.

Exercise: write the depthwise and pointwise kernels, forward and backward, in ``tinyxception/exercises/conv.py``
and run ``pytest --exercises -m ch2_conv`` until this chapter passes (notebooks 02 and 03).

Xception's separable convolution is a depthwise conv (one k x k filter per channel) followed by a pointwise
(1x1) conv. These tests check the three ops against the definition written as plain loops (tests/naive.py),
their gradients against float64 central differences, the parameter savings the paper is about, TensorFlow's
"same" padding, dtypes, and the error messages a learner sees on bad input.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import naive
import tinyxception as tx
import tinyxception.functional as F
from gradcheck import check_gradients
from tinyxception.functional.conv import GroupedConv2dFunction

pytestmark = pytest.mark.ch2_conv

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GRAD_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PADDINGS = [0, 1, 2, "valid", "same"]


def reference_pads(size, kernel, stride, padding):
    """((top, bottom), (left, right)) written out from the meaning of an int, "valid" and "same"."""
    if padding == "same":
        return tuple(naive.same_padding(n, k, stride) for n, k in zip(size, kernel))
    p = 0 if padding == "valid" else padding
    return (p, p), (p, p)


@st.composite
def conv_problems(draw, kind="grouped"):
    """(x_shape, w_shape, stride, padding, groups) for which the op is defined; kind picks the weight layout.

    Sizes 1..7 give odd and even images; paddings cover int, "valid" and "same"; strides 1..3.
    """
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride, padding = draw(st.integers(1, 3)), draw(st.sampled_from(PADDINGS))
    if kind == "pointwise":
        c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        return (n, c_in, h, w), (c_out, c_in, 1, 1), 1, 0, 1
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if kind == "depthwise":
        groups = c_in = c_out = draw(st.integers(1, 4))
    else:
        groups = draw(st.integers(1, 3))
        c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    pads = reference_pads((h, w), kernel, stride, padding)
    assume(h + sum(pads[0]) >= kernel[0] and w + sum(pads[1]) >= kernel[1])
    return (n, c_in, h, w), (c_out, c_in // groups) + kernel, stride, padding, groups


def random_arrays(seed, *shapes, dtype=np.float64):
    """Standard normal arrays of the given shapes, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def run_op(kind, x, w, stride, padding, groups):
    """Call the op that `kind` names with its own signature (pointwise has no stride or padding)."""
    if kind == "pointwise":
        return F.pointwise_conv2d(x, w)
    if kind == "depthwise":
        return F.depthwise_conv2d(x, w, stride, padding)
    return F.conv2d(x, w, stride, padding, groups)


# --- forward against the definition ---------------------------------------------------------------------------

EXAMPLES = {  # always-run cases: stride 2 with "same" at even and odd sizes, each path conv2d dispatches to, and
    # both ways the depthwise backward computes dL/dx (a conv with the flipped kernel at stride 1, else tap by tap)
    "same-even": ((1, 2, 6, 6), (2, 2, 3, 3), 2, "same", 1),
    "same-odd": ((2, 2, 7, 5), (4, 1, 3, 3), 2, "same", 2),
    "depthwise-via-groups": ((1, 3, 5, 6), (3, 1, 3, 3), 1, "same", 3),
    "depthwise-stride-2": ((2, 3, 7, 6), (3, 1, 3, 3), 2, "same", 3),
    "depthwise-pad-beyond-kernel": ((1, 2, 4, 5), (2, 1, 2, 2), 1, 2, 2),
    "shortcut-1x1-stride-2": ((2, 3, 6, 5), (4, 3, 1, 1), 2, "valid", 1),
}


@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise"])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_matches_naive_loops(device, kind, data, seed, dtype):
    """Each op equals the loop over (n, c_out, y, x) of the definition, for hypothesis-drawn shapes,
    strides, paddings and groups (depthwise = groups C, pointwise = 1x1 with groups 1)."""
    x_shape, w_shape, stride, padding, groups = data.draw(conv_problems(kind), label="x, w, stride, padding, groups")
    x, w = random_arrays(seed, x_shape, w_shape, dtype=dtype)
    out = run_op(kind, tx.tensor(x, device=device), tx.tensor(w, device=device), stride, padding, groups)
    expected = naive.conv2d(x, w, stride, reference_pads(x_shape[2:], w_shape[2:], stride, padding), groups)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", EXAMPLES)
def test_conv2d_special_cases_match_naive_loops(device, name):
    """The cases conv2d hands to a fast path (depthwise, strided 1x1) and "same" at stride 2 equal the definition."""
    x_shape, w_shape, stride, padding, groups = EXAMPLES[name]
    x, w = random_arrays(1, x_shape, w_shape)
    out = F.conv2d(tx.tensor(x, device=device), tx.tensor(w, device=device), stride, padding, groups)
    expected = naive.conv2d(x, w, stride, reference_pads(x_shape[2:], w_shape[2:], stride, padding), groups)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(half=st.integers(2, 6), odd=st.booleans(), seed=st.integers(0, 1000))
def test_same_padding_puts_the_extra_pixel_bottom_right(device, half, odd, seed):
    """TensorFlow "same", 3x3 stride 2: an even size n needs (n/2 - 1)*2 + 3 - n = 1 pixel of padding, all of it
    at the bottom/right, so pads are (0, 1); an odd size needs 2, split (1, 1). PyTorch-style symmetric padding 1
    gives the same output shape at even sizes but different values (the Keras weights expect TF's)."""
    size = 2 * half + odd
    x, w = random_arrays(seed, (1, 2, size, size), (3, 2, 3, 3))
    same = F.conv2d(tx.tensor(x, device=device), tx.tensor(w, device=device), 2, "same").numpy()
    pads = ((1, 1), (1, 1)) if odd else ((0, 1), (0, 1))
    np.testing.assert_allclose(same, naive.conv2d(x, w, 2, pads), rtol=1e-12, atol=1e-12)
    if not odd:
        symmetric = F.conv2d(tx.tensor(x, device=device), tx.tensor(w, device=device), 2, 1).numpy()
        assert symmetric.shape == same.shape == (1, 3, half, half)
        assert not np.allclose(symmetric, same)


# --- gradients -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise"])
@GRAD_SETTINGS
@given(data=st.data(), seed=st.integers(0, 1000))
def test_gradients_match_central_differences(device, kind, data, seed):
    """Autograd's gradients of x and w match float64 central differences for drawn shapes, strides, paddings."""
    x_shape, w_shape, stride, padding, groups = data.draw(conv_problems(kind), label="x, w, stride, padding, groups")
    x, w = random_arrays(seed, x_shape, w_shape)
    check_gradients(lambda x, w: run_op(kind, x, w, stride, padding, groups), x, w, device=device)


@pytest.mark.parametrize("name", EXAMPLES)
def test_conv2d_special_cases_gradients(device, name):
    """Gradients through each path conv2d dispatches to (incl. the strided 1x1 shortcut) match central differences."""
    x_shape, w_shape, stride, padding, groups = EXAMPLES[name]
    x, w = random_arrays(2, x_shape, w_shape)
    check_gradients(lambda x, w: F.conv2d(x, w, stride, padding, groups), x, w, device=device)


def test_separable_conv_on_small_maps_gradients():
    """Depthwise then pointwise on a small map: the pointwise conv reads the depthwise's channels-last output
    as it is (no copy) in forward and in backward; the gradients of x and of both weights must still match
    central differences."""
    x, w_depth, w_point = random_arrays(6, (2, 8, 2, 3), (8, 1, 3, 3), (5, 8, 1, 1))
    check_gradients(lambda x, wd, wp: F.pointwise_conv2d(F.depthwise_conv2d(x, wd, 1, "same"), wp),
                    x, w_depth, w_point)


def test_pointwise_gives_the_same_result_for_either_memory_layout(device):
    """An (N, C, H, W) array stored channels-last holds the same numbers as its NCHW copy, so the pointwise
    conv and its gradients must not change with the storage (the channels-last one is read without a copy)."""
    pixels_major, w, grad = random_arrays(7, (2, 3, 4, 6), (4, 6, 1, 1), (2, 4, 3, 4))
    channels_last = tx.backend.to_device(pixels_major, device).transpose(0, 3, 1, 2)  # (2, 6, 3, 4)
    assert channels_last.shape == (2, 6, 3, 4) and not channels_last.flags.c_contiguous
    results = []
    nchw = tx.backend.to_device(np.ascontiguousarray(pixels_major.transpose(0, 3, 1, 2)), device)
    for layout in (channels_last, nchw):
        xt, wt = tx.tensor(layout, requires_grad=True), tx.tensor(w, requires_grad=True, device=device)
        y = F.pointwise_conv2d(xt, wt)
        (y * tx.tensor(grad, device=device)).sum().backward()
        results.append([tx.backend.asnumpy(a) for a in (y.data, xt.grad, wt.grad)])
    for ours, reference in zip(*results):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, c_out", [((2, 5, 1, 2), 6), ((2, 2, 3, 3), 2), ((1, 3, 2, 2), 4)],
                         ids=["one-product-over-all-images", "per-image-products", "single-image"])
def test_pointwise_weight_gradient_both_ways(device, x_shape, c_out):
    """dW = sum_n dY_n X_n^T is computed in one of two ways depending on shapes (few pixels and many channels,
    or the reverse); each way must match central differences."""
    x, w = random_arrays(3, x_shape, (c_out, x_shape[1], 1, 1))
    check_gradients(F.pointwise_conv2d, x, w, device=device)


@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise"])
def test_gradient_of_one_input_when_the_other_is_constant(device, kind):
    """The gradient of the weight alone, and of x alone when w is constant, must be right (the network's input
    image needs no gradient and meets only the regular (grouped) conv)."""
    x_shape, w_shape = {"grouped": ((2, 4, 5, 5), (2, 2, 3, 3)), "depthwise": ((2, 3, 5, 4), (3, 1, 3, 3)),
                        "pointwise": ((2, 3, 4, 4), (2, 3, 1, 1))}[kind]
    groups = 2 if kind == "grouped" else 1
    x, w = random_arrays(4, x_shape, w_shape)
    x_const, w_const = tx.tensor(x, device=device), tx.tensor(w, device=device)
    check_gradients(lambda w: run_op(kind, x_const, w, 2, "same", groups), w, device=device)
    check_gradients(lambda x: run_op(kind, x, w_const, 2, "same", groups), x, device=device)


# --- what separable convolutions save ----------------------------------------------------------------------

@SETTINGS
@given(k=st.sampled_from([1, 3, 5]), c_in=st.integers(1, 24), c_out=st.integers(1, 24), seed=st.integers(0, 100))
def test_separable_weight_count_versus_regular(device, k, c_in, c_out, seed):
    """A depthwise + pointwise pair has k^2 C_in + C_in C_out weights, a regular conv k^2 C_in C_out; counted
    from the weight arrays the ops accept, and both map (N, C_in, H, W) to (N, C_out, H, W) with "same"."""
    x, depthwise, pointwise, regular = random_arrays(
        seed, (1, c_in, 4, 4), (c_in, 1, k, k), (c_out, c_in, 1, 1), (c_out, c_in, k, k), dtype=np.float32)
    x = tx.tensor(x, device=device)
    separable = F.pointwise_conv2d(F.depthwise_conv2d(x, tx.tensor(depthwise, device=device), 1, "same"),
                                   tx.tensor(pointwise, device=device))
    full = F.conv2d(x, tx.tensor(regular, device=device), 1, "same")
    assert separable.shape == full.shape == (1, c_out, 4, 4)
    assert depthwise.size + pointwise.size == k * k * c_in + c_in * c_out
    assert regular.size == k * k * c_in * c_out


def test_seed_example_weight_counts():
    """The seeds' example: k=3, C_in=32, C_out=64 costs 18,432 weights as a regular conv and 2,336 as depthwise
    separable (288 + 2,048), about 8x fewer."""
    regular, depthwise, pointwise = np.zeros((64, 32, 3, 3)), np.zeros((32, 1, 3, 3)), np.zeros((64, 32, 1, 1))
    x = np.zeros((1, 32, 5, 5))
    assert F.conv2d(x, regular, 1, "same").shape == F.pointwise_conv2d(F.depthwise_conv2d(x, depthwise, 1, "same"),
                                                                       pointwise).shape
    assert (regular.size, depthwise.size + pointwise.size) == (18_432, 2_336)


@SETTINGS
@given(problem=conv_problems("depthwise"), seed=st.integers(0, 1000))
def test_conv2d_with_groups_equal_to_channels_is_depthwise(device, problem, seed):
    """conv2d(groups=C) with a (C, 1, k, k) weight equals depthwise_conv2d, and both equal the general grouped
    algorithm (im2col + batched matrix product) run on the same weight: values and gradients."""
    x_shape, w_shape, stride, padding, groups = problem
    x, w = random_arrays(seed, x_shape, w_shape)
    out_shape = naive.conv2d(x, w, stride, reference_pads(x_shape[2:], w_shape[2:], stride, padding), groups).shape
    projection = tx.tensor(random_arrays(seed + 1, out_shape)[0], device=device)
    results = []
    for op in (lambda x, w: F.conv2d(x, w, stride, padding, groups),
               lambda x, w: F.depthwise_conv2d(x, w, stride, padding),
               lambda x, w: GroupedConv2dFunction.apply(x, w, stride=stride, groups=groups,
                                                pads=reference_pads(x_shape[2:], w_shape[2:], stride, padding))):
        xt, wt = tx.tensor(x, requires_grad=True, device=device), tx.tensor(w, requires_grad=True, device=device)
        out = op(xt, wt)
        out.backward(projection)
        results.append((out.numpy(), tx.backend.asnumpy(xt.grad), tx.backend.asnumpy(wt.grad)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --- dtypes --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise", "shortcut"])
def test_dtype_is_kept(device, kind, dtype):
    """float32 in gives float32 out and float32 gradients (no silent float64 upcast); float64 stays float64."""
    w_shape = {"grouped": (4, 2, 3, 3), "depthwise": (4, 1, 3, 3), "pointwise": (3, 4, 1, 1),
               "shortcut": (3, 4, 1, 1)}[kind]
    x, w = random_arrays(5, (2, 4, 6, 6), w_shape, dtype=dtype)
    xt, wt = tx.tensor(x, requires_grad=True, device=device), tx.tensor(w, requires_grad=True, device=device)
    stride = 2 if kind == "shortcut" else 1
    out = run_op("grouped" if kind == "shortcut" else kind, xt, wt, stride, "same", 2 if kind == "grouped" else 1)
    out.sum().backward()
    assert (out.dtype, xt.grad.dtype, wt.grad.dtype) == (np.dtype(dtype),) * 3


# --- bad input -----------------------------------------------------------------------------------------------

def zeros(*shape, dtype=np.float32):
    """A zero array, for inputs whose values do not matter."""
    return np.zeros(shape, dtype=dtype)


BAD_INPUTS = {
    "x-rank": (lambda: F.conv2d(zeros(3, 5, 5), zeros(4, 3, 3, 3)), ValueError,
               ["conv2d", "x must have 4 dimensions", "(3, 5, 5)"]),
    "w-rank": (lambda: F.depthwise_conv2d(zeros(1, 3, 5, 5), zeros(3, 3, 3)), ValueError,
               ["depthwise_conv2d", "w must have 4 dimensions", "(3, 3, 3)"]),
    "int-dtype": (lambda: F.conv2d(zeros(1, 3, 5, 5, dtype=np.int64), zeros(4, 3, 3, 3)), TypeError,
                  ["conv2d", "floating point", "int64"]),
    "int-weight": (lambda: F.pointwise_conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 1, 1, dtype=np.int32)), TypeError,
                   ["pointwise_conv2d", "w must be a floating point", "int32"]),
    "dtype-mismatch": (lambda: F.conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 3, 3, dtype=np.float64)), TypeError,
                       ["conv2d", "float32", "float64"]),
    "channels": (lambda: F.conv2d(zeros(1, 3, 5, 5), zeros(4, 2, 3, 3)), ValueError,
                 ["conv2d", "3 channels", "(4, 2, 3, 3)", "C_in = 2 * 1 = 2"]),
    "c-in-groups": (lambda: F.conv2d(zeros(1, 3, 5, 5), zeros(4, 1, 3, 3), groups=2), ValueError,
                    ["conv2d", "C_in = 3", "groups = 2"]),
    "c-out-groups": (lambda: F.conv2d(zeros(1, 4, 5, 5), zeros(3, 2, 3, 3), groups=2), ValueError,
                     ["conv2d", "C_out = 3", "groups = 2"]),
    "groups-zero": (lambda: F.conv2d(zeros(1, 4, 5, 5), zeros(4, 4, 3, 3), groups=0), ValueError,
                    ["conv2d", "groups must be a positive int", "got 0"]),
    "depthwise-weight": (lambda: F.depthwise_conv2d(zeros(1, 3, 5, 5), zeros(3, 2, 3, 3)), ValueError,
                         ["depthwise_conv2d", "(3, 1, kh, kw)", "3 channels", "(3, 2, 3, 3)"]),
    "depthwise-channels": (lambda: F.depthwise_conv2d(zeros(1, 3, 5, 5), zeros(4, 1, 3, 3)), ValueError,
                           ["depthwise_conv2d", "(3, 1, kh, kw)", "(4, 1, 3, 3)"]),
    "pointwise-kernel": (lambda: F.pointwise_conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 3, 3)), ValueError,
                         ["pointwise_conv2d", "(C_out, 3, 1, 1)", "(4, 3, 3, 3)"]),
    "pointwise-channels": (lambda: F.pointwise_conv2d(zeros(1, 3, 5, 5), zeros(4, 2, 1, 1)), ValueError,
                           ["pointwise_conv2d", "3 channels", "(4, 2, 1, 1)"]),
    "kernel-too-large": (lambda: F.conv2d(zeros(1, 1, 2, 2), zeros(1, 1, 3, 3)), ValueError,
                         ["conv2d", "kernel 3x3", "padded input 2x2"]),
    "depthwise-kernel-too-large": (lambda: F.depthwise_conv2d(zeros(1, 2, 4, 1), zeros(2, 1, 3, 3), padding="valid"),
                                   ValueError, ["depthwise_conv2d", "kernel 3x3", "padded input 4x1"]),
    "stride": (lambda: F.conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 3, 3), stride=0), ValueError,
               ["conv2d", "stride must be a positive int", "got 0"]),
    "padding": (lambda: F.depthwise_conv2d(zeros(1, 3, 5, 5), zeros(3, 1, 3, 3), padding="full"), ValueError,
                ["depthwise_conv2d", "padding", "'full'"]),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_with_expected_and_given(name):
    """Each bad input raises ValueError/TypeError whose message starts with the op's name and names the values."""
    call, error, fragments = BAD_INPUTS[name]
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert message.startswith(fragments[0] + ":"), message
    for fragment in fragments[1:]:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise"])
def test_mixed_devices_raise(kind, gpu):
    """x on the CPU and w on the GPU: a ValueError naming both devices (CuPy never meets a NumPy array)."""
    w_shape = {"grouped": (4, 2, 3, 3), "depthwise": (4, 1, 3, 3), "pointwise": (3, 4, 1, 1)}[kind]
    x, w = random_arrays(6, (1, 4, 5, 5), w_shape, dtype=np.float32)
    with pytest.raises(ValueError, match="different devices") as info:
        run_op(kind, x, tx.tensor(w, device=gpu), 1, 1, 2 if kind == "grouped" else 1)
    assert "'cpu'" in str(info.value) and "'cuda'" in str(info.value)


# --- against PyTorch (only where it is installed) -----------------------------------------------------------

@pytest.mark.parametrize("groups, kernel, stride, padding", [
    (1, 3, 1, 1), (1, 3, 2, 0), (2, 3, 2, 1), (4, 3, 1, 1), (4, 3, 2, 1), (1, 1, 2, 0), (2, 5, 1, 2), (1, 1, 1, 0)])
def test_conv2d_matches_torch(groups, kernel, stride, padding):
    """With symmetric int padding, conv2d and its gradients equal torch.nn.functional.conv2d's (float64)."""
    torch = pytest.importorskip("torch")
    x, w = random_arrays(7, (2, 4, 9, 8), (4, 4 // groups, kernel, kernel))
    xt, wt = tx.tensor(x, requires_grad=True), tx.tensor(w, requires_grad=True)
    out = F.conv2d(xt, wt, stride, padding, groups)
    grad = np.random.default_rng(8).standard_normal(out.shape)
    out.backward(grad)
    x_torch = torch.tensor(x, requires_grad=True)
    w_torch = torch.tensor(w, requires_grad=True)
    expected = torch.nn.functional.conv2d(x_torch, w_torch, stride=stride, padding=padding, groups=groups)
    expected.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xt.grad, x_torch.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad, w_torch.grad.numpy(), rtol=1e-10, atol=1e-10)
