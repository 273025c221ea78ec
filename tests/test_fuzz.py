"""Chapter: reliability under random input. Hypothesis throws shapes, dtypes, strides, paddings, groups and plain
garbage at every public op of ``tinyxception.functional``, at ``tx.tensor``, at every layer of ``tinyxception.nn``
and at two Xceptions.

Each test writes down, next to the call, what the documentation promises: the rules the inputs must follow and
the shape and dtype of the result (the window formula for convolutions and pools, NumPy's broadcasting for
arithmetic ...). ``fuzzing.judge`` then requires the call to return exactly that, or, when a rule is broken, to
raise ValueError or TypeError from a check with a message: never another exception, never an error from inside
an op's arithmetic, never a hang, never a silently wrong shape. At the end a summary line counts the calls and
the distinct error messages.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinyxception as tx
import tinyxception.functional as F
from tinyxception import nn

from fuzzing import (FLOATS, OUTCOMES, RETURNS, arrays_near, garbage, ints, is_float_array, is_image_batch, is_int,
                     is_number, is_padding, judge, kernel_sizes, make_array, mostly, numbers, paddings, seeds, seen,
                     strides, window_shape)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=40)
small_sizes = st.integers(1, 6)
kernels = st.tuples(*[mostly(st.integers(1, 3), st.just(0), odds=6)] * 2)
"""Kernel shapes (kh, kw) for weights, now and then with a zero length."""
float_dtypes = st.sampled_from(FLOATS)


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary(request):
    """After the module: print how many calls ran and how many distinct error messages they met."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # past pytest's output capture, straight to the terminal
            reporter.ensure_newline()
            reporter.write_line(OUTCOMES.summary(request.session.testsfailed))


def test_every_public_op_is_fuzzed():
    """The fuzz tests below cover every public function of tinyxception.functional (a new op must join them)."""
    public = {name for name in dir(F) if not name.startswith("_") and callable(getattr(F, name))}
    assert public == FUZZED_OPS


# --- convolutions and pools ------------------------------------------------------------------------------

def conv_ready(x, w, stride, padding) -> bool:
    """The rules every convolution shares: a float NCHW batch, a 4-D float weight of its dtype, no empty axis,
    a positive int stride and a valid padding."""
    return (is_image_batch(x) and is_float_array(w) and w.ndim == 4 and 0 not in w.shape and x.dtype == w.dtype
            and is_int(stride) and is_padding(padding))


def expectation(shape, dtype):
    """(shape, dtype), or None when the formula gave no shape (the kernel does not fit)."""
    return None if shape is None else (shape, dtype)


@FUZZ
@given(data=st.data(), n=small_sizes, g=st.integers(1, 3), c=st.integers(1, 2), co=st.integers(1, 2), h=small_sizes,
       w=small_sizes, k=kernels, dtype=float_dtypes)
def test_conv2d(data, n, g, c, co, h, w, k, dtype):
    """conv2d(x, w, stride, padding, groups): (N, C_out, H_out, W_out) with H_out = (H + 2p - kh) // s + 1
    (ceil(H / s) for "same"), or a refusal when C_in != w.shape[1] * groups, groups does not divide C_out ..."""
    x = data.draw(arrays_near((n, g * c, h, w), dtype))
    weight = data.draw(arrays_near((g * co, c, *k), dtype))
    stride, padding, groups = data.draw(strides), data.draw(paddings), data.draw(st.one_of(st.just(g), ints(-1, 4)))
    X, W = seen(x), seen(weight)
    expected = None
    if conv_ready(X, W, stride, padding) and is_int(groups) and W.shape[0] % groups == 0 \
            and W.shape[1] * groups == X.shape[1]:
        expected = expectation(window_shape(X.shape, W.shape[0], W.shape[2:], stride, padding), X.dtype)
    judge("conv2d", lambda: F.conv2d(x, weight, stride, padding, groups), expected)


@FUZZ
@given(data=st.data(), n=small_sizes, c=st.integers(1, 4), h=small_sizes, w=small_sizes,
       k=kernels, dtype=float_dtypes)
def test_depthwise_conv2d(data, n, c, h, w, k, dtype):
    """depthwise_conv2d(x, w (C, 1, kh, kw)): (N, C, H_out, W_out) by the window formula, or a refusal."""
    x, weight = data.draw(arrays_near((n, c, h, w), dtype)), data.draw(arrays_near((c, 1, *k), dtype))
    stride, padding = data.draw(strides), data.draw(paddings)
    X, W = seen(x), seen(weight)
    expected = None
    if conv_ready(X, W, stride, padding) and W.shape[:2] == (X.shape[1], 1):
        expected = expectation(window_shape(X.shape, X.shape[1], W.shape[2:], stride, padding), X.dtype)
    judge("depthwise_conv2d", lambda: F.depthwise_conv2d(x, weight, stride, padding), expected)


@FUZZ
@given(data=st.data(), n=small_sizes, c=st.integers(1, 4), co=st.integers(1, 4), h=small_sizes, w=small_sizes,
       dtype=float_dtypes)
def test_pointwise_conv2d(data, n, c, co, h, w, dtype):
    """pointwise_conv2d(x, w (C_out, C_in, 1, 1)): (N, C_out, H, W), or a refusal."""
    x, weight = data.draw(arrays_near((n, c, h, w), dtype)), data.draw(arrays_near((co, c, 1, 1), dtype))
    X, W = seen(x), seen(weight)
    expected = None
    if conv_ready(X, W, 1, 0) and W.shape[1:] == (X.shape[1], 1, 1):
        expected = ((X.shape[0], W.shape[0], *X.shape[2:]), X.dtype)
    judge("pointwise_conv2d", lambda: F.pointwise_conv2d(x, weight), expected)


def kernel_pair(kernel_size):
    """(kh, kw) for an int or a pair of positive ints, else None."""
    pair = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    return pair if len(pair) == 2 and all(is_int(k) for k in pair) else None


def pool_expectation(x, kernel_size, stride, padding):
    """max_pool2d's documented result: the window formula, with int padding at most half the kernel."""
    kernel = kernel_pair(kernel_size)
    if not (is_image_batch(x) and kernel and is_int(stride) and is_padding(padding)):
        return None
    if is_int(padding, 0) and padding > min(kernel) // 2:
        return None
    return expectation(window_shape(x.shape, x.shape[1], kernel, stride, padding), x.dtype)


@FUZZ
@given(data=st.data(), n=small_sizes, c=small_sizes, h=small_sizes, w=small_sizes, dtype=float_dtypes)
def test_max_pool2d(data, n, c, h, w, dtype):
    """max_pool2d(x, kernel_size, stride, padding): (N, C, H_out, W_out) by the window formula, or a refusal."""
    x = data.draw(arrays_near((n, c, h, w), dtype))
    kernel_size, stride, padding = data.draw(kernel_sizes), data.draw(strides), data.draw(paddings)
    judge("max_pool2d", lambda: F.max_pool2d(x, kernel_size, stride, padding),
          pool_expectation(seen(x), kernel_size, stride, padding))


@FUZZ
@given(data=st.data(), n=small_sizes, c=small_sizes, h=small_sizes, w=small_sizes, dtype=float_dtypes)
def test_global_avg_pool2d(data, n, c, h, w, dtype):
    """global_avg_pool2d(x): (N, C) for a float NCHW batch with at least one pixel, else a refusal."""
    x = data.draw(arrays_near((n, c, h, w), dtype))
    X = seen(x)
    judge("global_avg_pool2d", lambda: F.global_avg_pool2d(x), (X.shape[:2], X.dtype) if is_image_batch(X) else None)


# --- normalisation, activations, the classifier ------------------------------------------------------------

def batch_norm_expectation(x, params: dict, training, momentum, eps):
    """batch_norm's documented result: x's shape and dtype, given per-channel (C,) parameters of x's dtype,
    momentum in [0, 1], eps > 0 and, in training, more than one value per channel, array statistics and no
    float16 (whose sums would overflow)."""
    arrays = {name: seen(p) for name, p in params.items()}
    if not (is_float_array(x) and x.ndim in (2, 4) and 0 not in x.shape):
        return None
    if not all(is_float_array(p) and p.shape == (x.shape[1],) and p.dtype == x.dtype for p in arrays.values()):
        return None
    if not (is_number(momentum, 0, 1) and is_number(eps, 0, math.inf, "()")):
        return None
    if training and (x.size < 2 * x.shape[1] or x.dtype == np.float16 or not all(isinstance(params[name], np.ndarray)
                                                         for name in ("running_mean", "running_var"))):
        return None
    return x.shape, x.dtype


@FUZZ
@given(data=st.data(), n=small_sizes, c=st.integers(1, 4), hw=st.sampled_from([(), (1, 1), (2, 3)]),
       dtype=float_dtypes, training=st.booleans())
def test_batch_norm(data, n, c, hw, dtype, training):
    """batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps): x's shape and dtype, or
    a refusal for a wrong rank, (C,) parameters that do not match x (NHWC x included), a bad option ..."""
    x = data.draw(arrays_near((n, c, *hw), dtype))
    params = {name: data.draw(arrays_near((c,), dtype)) for name in ("gamma", "beta", "running_mean", "running_var")}
    momentum, eps = data.draw(numbers(0, 1)), data.draw(numbers(0, 0.01))
    judge("batch_norm", lambda: F.batch_norm(x, *params.values(), training, momentum=momentum, eps=eps),
          batch_norm_expectation(seen(x), params, training, momentum, eps))


any_shape = st.lists(st.integers(0, 4), max_size=4).map(tuple)


@FUZZ
@given(data=st.data(), shape=any_shape)
def test_relu_and_elu(data, shape):
    """relu(x) and elu(x, alpha): x's shape and dtype for any float array, a refusal for other dtypes or a
    non-finite alpha."""
    x, alpha = data.draw(arrays_near(shape)), data.draw(numbers(-2, 2))
    X = seen(x)
    same = (X.shape, X.dtype) if is_float_array(X) else None
    judge("relu", lambda: F.relu(x), same)
    judge("elu", lambda: F.elu(x, alpha), same if is_number(alpha, -math.inf, math.inf, "()") else None)


@FUZZ
@given(data=st.data(), n=st.integers(0, 3), fin=st.integers(0, 4), fout=st.integers(0, 4), dtype=float_dtypes,
       bias=st.booleans())
def test_linear(data, n, fin, fout, dtype, bias):
    """linear(x (N, in), w (out, in), b (out,) or None): (N, out), or a refusal for mismatched features,
    wrong ranks, a bias of another length or mixed dtypes. Empty axes are fine (a matrix product of zeros)."""
    x, w = data.draw(arrays_near((n, fin), dtype)), data.draw(arrays_near((fout, fin), dtype))
    b = data.draw(arrays_near((fout,), dtype)) if bias else None
    X, W, B = seen(x), seen(w), seen(b) if bias else None
    ok = is_float_array(X) and is_float_array(W) and X.ndim == W.ndim == 2 and X.shape[1] == W.shape[1] \
        and X.dtype == W.dtype and (not bias or (is_float_array(B) and B.shape == (W.shape[0],) and B.dtype == X.dtype))
    judge("linear", lambda: F.linear(x, w, b), ((X.shape[0], W.shape[0]), X.dtype) if ok else None)


@FUZZ
@given(data=st.data(), shape=any_shape, training=st.booleans())
def test_dropout(data, shape, training):
    """dropout(x, p, training, rng): x's shape and dtype for p in [0, 1) and rng None or a Generator."""
    x, p = data.draw(arrays_near(shape)), data.draw(numbers(0, 1))
    rng = data.draw(st.sampled_from([None, np.random.default_rng(0), 3, "seed"]))
    X = seen(x)
    ok = is_float_array(X) and is_number(p, 0, 1, "[)") and (rng is None or isinstance(rng, np.random.Generator))
    judge("dropout", lambda: F.dropout(x, p, training, rng=rng), (X.shape, X.dtype) if ok else None)


@FUZZ
@given(data=st.data(), n=st.integers(0, 4), k=st.integers(0, 4), dtype=float_dtypes)
def test_cross_entropy(data, n, k, dtype):
    """cross_entropy(logits (N, K), labels (N,)): a scalar of the logits' dtype, or a refusal for empty logits,
    non-integer labels, labels of another length or outside [0, K)."""
    logits = data.draw(arrays_near((n, k), dtype))
    labels = data.draw(st.one_of(
        st.lists(st.integers(-1, k), min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.int64)),
        st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n),
        arrays_near((n,), np.int64), garbage))
    L, Y = seen(logits), seen(labels)
    ok = is_float_array(L) and L.ndim == 2 and 0 not in L.shape and Y is not None and Y.dtype.kind in "iu" \
        and Y.shape == (L.shape[0],) and Y.min() >= 0 and Y.max() < L.shape[1]
    judge("cross_entropy", lambda: F.cross_entropy(logits, labels), ((), L.dtype) if ok else None)


@FUZZ
@given(data=st.data(), shape=any_shape)
def test_log_softmax(data, shape):
    """log_softmax(x): x's shape and dtype, for a float array with a non-empty last axis."""
    x = data.draw(arrays_near(shape))
    X = seen(x)
    ok = is_float_array(X) and X.ndim >= 1 and X.shape[-1] >= 1
    judge("log_softmax", lambda: F.log_softmax(x), (X.shape, X.dtype) if ok else None)


# --- arithmetic and shapes ------------------------------------------------------------------------------------

def arithmetic_expectation(a, b):
    """add/mul: float operands of one dtype (a Python number takes the other operand's) that broadcast; the
    result has NumPy's broadcast shape. An array operand decides the dtype first."""
    first, second = (b, a) if isinstance(b, np.ndarray) else (a, b)
    first = seen(first)
    if not is_float_array(first):
        return None
    second = np.asarray(second, dtype=first.dtype) if isinstance(second, (int, float)) else seen(second)
    if not is_float_array(second) or second.dtype != first.dtype:
        return None
    try:
        return np.broadcast_shapes(first.shape, second.shape), first.dtype
    except ValueError:
        return None


operands = st.one_of(st.floats(-3, 3), st.integers(-3, 3))


@FUZZ
@given(data=st.data(), shape=st.lists(st.integers(1, 3), max_size=3), dtype=float_dtypes)
def test_add_and_mul(data, shape, dtype):
    """add(a, b) and mul(a, b): NumPy's broadcast shape, or a refusal for non-float or mixed dtypes and
    shapes that do not broadcast."""
    other = [data.draw(mostly(st.sampled_from([1, n]), st.just(n + 1))) for n in shape]
    a = data.draw(st.one_of(arrays_near(tuple(shape), dtype), operands))
    b = data.draw(st.one_of(arrays_near(tuple(other), dtype), operands))
    expected = arithmetic_expectation(a, b)
    judge("add", lambda: F.add(a, b), expected)
    judge("mul", lambda: F.mul(a, b), expected)


def reshape_expectation(x, shape):
    """reshape: ints >= 0 with at most one -1 that together hold x.size values; the -1 takes the rest."""
    target = (shape,) if is_int(shape, -1) else tuple(shape) if isinstance(shape, (tuple, list)) else None
    if x is None or target is None or not all(is_int(n, -1) for n in target) or target.count(-1) > 1:
        return None
    known = math.prod(n for n in target if n != -1)
    if -1 not in target:
        return (target, x.dtype) if known == x.size else None
    if known == 0 or x.size % known:
        return None
    return tuple(x.size // known if n == -1 else n for n in target), x.dtype


@FUZZ
@given(data=st.data(), shape=any_shape)
def test_reshape_and_flatten(data, shape):
    """reshape(x, shape) and flatten(x) for any numeric x: the target shape (its -1 filled in), and
    (N, everything else) for flatten; refusals for sizes that do not fit or garbage shapes."""
    x = data.draw(arrays_near(shape))
    target = data.draw(st.one_of(st.integers(-2, 8), st.lists(st.integers(-2, 4), max_size=4),
                                 st.lists(st.integers(-2, 4), max_size=4).map(tuple), garbage))
    X = seen(x)
    judge("reshape", lambda: F.reshape(x, target), reshape_expectation(X, target))
    flat = None if X is None or X.ndim == 0 else ((X.shape[0], math.prod(X.shape[1:])), X.dtype)
    judge("flatten", lambda: F.flatten(x), flat)


def mean_expectation(x, axis, keepdims):
    """mean: a float x; axis None, an int or a tuple of distinct ints in [-ndim, ndim), averaging at least one value."""
    if not is_float_array(x):
        return None
    axes = tuple(range(x.ndim)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    if not all(is_int(a, -x.ndim) and a < x.ndim for a in axes):
        return None
    axes = {a % x.ndim for a in axes}
    if len(axes) < (x.ndim if axis is None else len(axis) if isinstance(axis, tuple) else 1):
        return None
    if math.prod(x.shape[a] for a in axes) == 0:
        return None
    shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape) if keepdims or a not in axes)
    return shape, x.dtype


@FUZZ
@given(data=st.data(), shape=any_shape, keepdims=st.booleans())
def test_mean(data, shape, keepdims):
    """mean(x, axis, keepdims): the reduced shape, or a refusal for integer x, bad axes or no values to average."""
    x = data.draw(arrays_near(shape))
    axis = data.draw(st.one_of(st.none(), st.integers(-4, 4), st.lists(st.integers(-4, 4), max_size=3).map(tuple),
                               garbage))
    judge("mean", lambda: F.mean(x, axis, keepdims), mean_expectation(seen(x), axis, keepdims))


FUZZED_OPS = {"conv2d", "depthwise_conv2d", "pointwise_conv2d", "max_pool2d", "global_avg_pool2d", "batch_norm",
              "relu", "elu", "linear", "dropout", "cross_entropy", "log_softmax", "add", "mul", "reshape", "flatten",
              "mean"}


# --- tensors -------------------------------------------------------------------------------------------------

@FUZZ
@given(data=st.data(), shape=any_shape, requires_grad=st.booleans())
def test_tensor_creation(data, shape, requires_grad):
    """tx.tensor(data, requires_grad, dtype, device): a Tensor of the data's shape (Python floats become float32),
    or a refusal for text, objects, complex numbers, ragged lists, gradients of non-floats, unknown devices."""
    value = data.draw(st.one_of(arrays_near(shape), st.just([[1.0], [2.0, 3.0]]), st.just({"a": 1})))
    dtype = data.draw(st.sampled_from([None, None, "float64", np.float16, "int32", "float33"]))
    device = data.draw(st.sampled_from([None, None, "cpu", "gpu", 0]))
    array = seen(value)
    if array is not None and dtype is not None:
        array = array.astype(dtype) if dtype != "float33" else None
    ok = array is not None and device in (None, "cpu") and (not requires_grad or array.dtype in FLOATS)
    judge("tensor", lambda: tx.tensor(value, requires_grad=requires_grad, dtype=dtype, device=device),
          (array.shape, array.dtype) if ok else None)


# --- layers ----------------------------------------------------------------------------------------------------

def layer_forward(target, layer, x, expected):
    """Judge layer(x) in training and in evaluation mode."""
    for mode in (True, False):
        layer.train(mode)
        judge(target, lambda: layer(x), expected)


@FUZZ
@given(data=st.data(), n=small_sizes, h=small_sizes, w=small_sizes)
def test_conv_layers(data, n, h, w):
    """Conv2d, DepthwiseConv2d, PointwiseConv2d and SeparableConv2d refuse bad options when built, and then map
    float32 (N, C_in, H, W) to (N, C_out, H_out, W_out) by the window formula or refuse the input."""
    kind = data.draw(st.sampled_from(["Conv2d", "DepthwiseConv2d", "PointwiseConv2d", "SeparableConv2d"]))
    c_in, c_out, groups = data.draw(ints(0, 4)), data.draw(ints(0, 4)), data.draw(st.one_of(st.just(1), ints(0, 3)))
    kernel_size, stride, padding = data.draw(kernel_sizes), data.draw(strides), data.draw(paddings)
    kernel = kernel_pair(kernel_size)
    built = is_int(c_in) and is_int(stride) and is_padding(padding) and kernel is not None
    if kind == "Conv2d":
        built = built and is_int(c_out) and is_int(groups) and c_in % groups == 0 and c_out % groups == 0
        make = lambda: nn.Conv2d(c_in, c_out, kernel_size, stride, padding, groups=groups)  # noqa: E731
    elif kind == "DepthwiseConv2d":
        c_out = c_in
        make = lambda: nn.DepthwiseConv2d(c_in, kernel_size, stride, padding)  # noqa: E731
    elif kind == "PointwiseConv2d":
        built, kernel, stride, padding = is_int(c_in) and is_int(c_out), (1, 1), 1, 0
        make = lambda: nn.PointwiseConv2d(c_in, c_out)  # noqa: E731
    else:
        groups = data.draw(st.one_of(st.none(), st.just(groups)))
        built = built and is_int(c_out) and (groups is None or (is_int(groups) and c_in % groups == 0))
        make = lambda: nn.SeparableConv2d(c_in, c_out, kernel_size, stride, padding, groups=groups)  # noqa: E731
    layer = judge(kind, make, RETURNS if built else None)
    if layer is None:
        return
    x = data.draw(arrays_near((n, c_in, h, w), np.float32))
    X = seen(x)
    ok = is_image_batch(X) and X.dtype == np.float32 and X.shape[1] == c_in
    layer_forward(kind, layer, x, expectation(window_shape(X.shape, c_out, kernel, stride, padding), X.dtype)
                  if ok else None)


@FUZZ
@given(data=st.data(), n=small_sizes, hw=st.sampled_from([(), (1, 1), (3, 2)]))
def test_batch_norm_layer(data, n, hw):
    """BatchNorm2d(num_features, eps, momentum) refuses bad options, then keeps a float32 (N, C, ...) batch's shape
    (training needs more than one value per channel) or refuses it."""
    c, eps, momentum = data.draw(ints(0, 4)), data.draw(numbers(0, 0.01)), data.draw(numbers(0, 1))
    built = is_int(c) and is_number(eps, 0, math.inf, "()") and is_number(momentum, 0, 1)
    layer = judge("BatchNorm2d", lambda: nn.BatchNorm2d(c, eps=eps, momentum=momentum), RETURNS if built else None)
    if layer is None:
        return
    x = data.draw(arrays_near((n, c, *hw), np.float32))
    X = seen(x)
    ok = is_float_array(X) and X.ndim in (2, 4) and 0 not in X.shape and X.dtype == np.float32 and X.shape[1] == c
    for training in (True, False):
        layer.train(training)
        fits = ok and (not training or X.size >= 2 * c)
        judge("BatchNorm2d", lambda: layer(x), (X.shape, X.dtype) if fits else None)


@FUZZ
@given(data=st.data(), n=small_sizes, c=small_sizes, h=small_sizes, w=small_sizes)
def test_pooling_and_activation_layers(data, n, c, h, w):
    """MaxPool2d, GlobalAvgPool2d, GlobalMaxPool2d, ReLU, ELU and Dropout: bad options refused when built; then
    the pool formulas, (N, C) for the global pools, x's shape for the others, or a refusal."""
    x = data.draw(arrays_near((n, c, h, w)))
    X = seen(x)
    kernel_size, stride, padding = data.draw(kernel_sizes), data.draw(strides), data.draw(paddings)
    alpha, p = data.draw(numbers(-2, 2)), data.draw(numbers(0, 1))
    same = (X.shape, X.dtype) if is_float_array(X) else None
    pooled = (X.shape[:2], X.dtype) if is_image_batch(X) else None
    layers = {
        "MaxPool2d": (lambda: nn.MaxPool2d(kernel_size, stride, padding),
                      kernel_pair(kernel_size) and is_int(stride) and is_padding(padding),
                      pool_expectation(X, kernel_size, stride, padding)),
        "GlobalAvgPool2d": (nn.GlobalAvgPool2d, True, pooled),
        "GlobalMaxPool2d": (nn.GlobalMaxPool2d, True, pooled),
        "ReLU": (nn.ReLU, True, same),
        "ELU": (lambda: nn.ELU(alpha), is_number(alpha, -math.inf, math.inf, "()"), same),
        "Dropout": (lambda: nn.Dropout(p, rng=np.random.default_rng(0)), is_number(p, 0, 1, "[)"), same),
    }
    for name, (make, built, expected) in layers.items():
        layer = judge(name, make, RETURNS if built else None)
        if layer is not None:
            layer_forward(name, layer, x, expected)


@FUZZ
@given(data=st.data(), n=st.integers(0, 3))
def test_linear_layer(data, n):
    """Linear(in_features, out_features, bias): positive sizes; then float32 (N, in) -> (N, out) or a refusal."""
    fin, fout, bias = data.draw(ints(0, 4)), data.draw(ints(0, 4)), data.draw(st.booleans())
    layer = judge("Linear", lambda: nn.Linear(fin, fout, bias), RETURNS if is_int(fin) and is_int(fout) else None)
    if layer is None:
        return
    x = data.draw(arrays_near((n, fin), np.float32))
    X = seen(x)
    ok = is_float_array(X) and X.ndim == 2 and X.dtype == np.float32 and X.shape[1] == fin
    layer_forward("Linear", layer, x, ((X.shape[0], fout), X.dtype) if ok else None)


# --- whole networks ---------------------------------------------------------------------------------------------

def final_size(size: int, stem_stride: int, stem_padding, exit_stride: int):
    """Side of the exit flow's last map for a size x size input, from Fig. 5: two 3x3 stem convs, three stride-2
    "same" pools, the exit block's pool; None when a stem conv does not fit."""
    n = _out(size, 3, stem_stride, stem_padding)
    n = None if n is None else _out(n, 3, 1, stem_padding)
    if n is None:
        return None
    for stride in (2, 2, 2, exit_stride):
        n = math.ceil(n / stride)
    return n


def _out(size, kernel, stride, padding):
    """One axis of the window formula (see fuzzing.window_out)."""
    shape = window_shape((1, 1, size, size), 1, (kernel, kernel), stride, padding)
    return None if shape is None else shape[2]


SMALL = tx.Xception.small(num_classes=4, seed=0)
PAPER_LIKE = tx.Xception(num_classes=5, width=1 / 16, middle_blocks=1, seed=0)


@FEW
@given(data=st.data(), which=st.sampled_from(["small", "paper-like"]), n=st.integers(1, 2),
       side=st.integers(14, 20), training=st.booleans())
def test_xception_forward(data, which, n, side, training):
    """Xception.small and a narrow paper network: a float32 (N, 3, H, W) array with H, W large enough for the exit
    flow to end on at least 3x3 gives (N, num_classes); lists, NHWC, wrong channels, small images, other dtypes
    are refused."""
    model, (stem_stride, stem_padding, exit_stride) = (SMALL, (1, "same", 1)) if which == "small" else \
        (PAPER_LIKE, (2, "valid", 2))
    side = side if which == "small" else side + 56  # around each network's minimum
    x = data.draw(arrays_near((n, 3, side, data.draw(st.sampled_from([side, side + 1]))), np.float32))
    X = seen(x)
    ok = isinstance(x, np.ndarray) and is_image_batch(X) and X.dtype == np.float32 and X.shape[1] == 3 and \
        all((final_size(s, stem_stride, stem_padding, exit_stride) or 0) >= 3 for s in X.shape[2:])
    model.train(training)
    judge(f"Xception({which})", lambda: model(x), ((X.shape[0], model.config.num_classes), np.float32) if ok
          else None)


@FEW
@given(num_classes=ints(0, 3), in_channels=ints(0, 3), middle_blocks=ints(-1, 1),
       width=st.sampled_from([1 / 32, 1 / 16, 0, -1, "1", None]), dropout=numbers(0, 1),
       pooling=st.sampled_from(["avg", "max", None, "sum"]), include_top=st.booleans(),
       strides_=st.tuples(strides, strides), stem_padding=paddings, bn_momentum=numbers(0, 1),
       groups=st.one_of(st.none(), ints(0, 2)), activation=st.sampled_from([None, "relu", "elu", "tanh"]))
def test_xception_options(num_classes, in_channels, middle_blocks, width, dropout, pooling, include_top, strides_,
                          stem_padding, bn_momentum, groups, activation):
    """Xception(...) builds with valid options and refuses every invalid one with ValueError/TypeError (a bad
    stem_padding used to loop forever while computing the minimum input size)."""
    valid = (is_int(num_classes) and is_int(in_channels) and is_int(middle_blocks, 0) and all(map(is_int, strides_))
             and is_number(width, 0, math.inf, "()") and is_number(dropout, 0, 1, "[)") and is_padding(stem_padding)
             and is_number(bn_momentum, 0, 1) and activation in (None, "relu", "elu")
             and pooling in ("avg", "max", None) and not (include_top and pooling is None))
    if valid and groups is not None:
        channels = [max(1, round(c * width)) for c in (64, 128, 256, 728, 1024, 1536)]  # every separable conv's input
        valid = is_int(groups) and all(c % groups == 0 for c in channels)
    judge("Xception(options)", lambda: tx.Xception(
        num_classes=num_classes, in_channels=in_channels, middle_blocks=middle_blocks, width=width, dropout=dropout,
        pooling=pooling, include_top=include_top, stem_stride=strides_[0], exit_stride=strides_[1],
        stem_padding=stem_padding, bn_momentum=bn_momentum, groups=groups, intermediate_activation=activation,
        seed=0), RETURNS if valid else None)


# --- debug mode ---------------------------------------------------------------------------------------------------

NAN_CASES = {
    "relu": ((2, 3, 5, 5), F.relu),
    "conv2d": ((2, 3, 5, 5), lambda x: F.conv2d(x, np.ones((2, 3, 3, 3), np.float32), padding="same")),
    "max_pool2d": ((2, 3, 5, 5), F.max_pool2d),
    "batch_norm": ((2, 3, 5, 5), lambda x: F.batch_norm(x, *(np.ones(3, np.float32) for _ in range(4)), True)),
    "Xception.small": ((2, 3, 17, 17), SMALL),
}


@FUZZ
@given(case=st.sampled_from(sorted(NAN_CASES)), bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       where=st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 4), st.integers(0, 4)),
       debug=st.booleans(), seed=seeds)
def test_debug_mode_refuses_nan_and_inf(case, bad, where, debug, seed):
    """With debug mode on, a NaN or inf in an input is refused with a ValueError giving its index; with it off,
    the same call runs (no scan) and returns its usual result."""
    shape, call = NAN_CASES[case]
    x = make_array(shape, np.float32, seed)
    x[where] = bad
    with tx.debug_mode(debug), np.errstate(invalid="ignore", over="ignore"):
        out = judge(f"debug mode: {case}", lambda: call(x), None if debug else RETURNS)
    if debug:
        message = OUTCOMES.last_message
        assert str(where) in message and ("NaN" if math.isnan(bad) else "infinite") in message, message
    else:
        assert out.shape[0] == 2


# --- round two: operators, backward(grad), optimiser settings, save paths -----------------------------------------

def operator_expectation(t, other):
    """t OP other for a float Tensor t: an array operand must have t's dtype; a number or list of numbers adopts
    t's dtype; anything else (None, text, objects) is refused; the shapes must broadcast."""
    if isinstance(other, np.ndarray):
        if other.dtype != t.dtype:
            return None
    elif seen(other) is None:
        return None
    try:
        return np.broadcast_shapes(t.shape, np.shape(other)), t.dtype
    except ValueError:
        return None


OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


@FUZZ
@given(data=st.data(), shape=st.lists(st.integers(1, 3), max_size=3), dtype=float_dtypes,
       symbol=st.sampled_from(sorted(OPERATORS)), reverse=st.booleans())
def test_operators_with_any_operand(data, shape, dtype, symbol, reverse):
    """t + x, x * t ... for a float Tensor t and any x: NumPy's broadcast shape in t's dtype, or a refusal by the
    shared operand check (None and text used to become NaN)."""
    t = tx.tensor(make_array(tuple(shape), dtype, data.draw(seeds)))
    other = data.draw(st.one_of(arrays_near(tuple(shape), dtype), operands, garbage))
    a, b = (other, t) if reverse else (t, other)
    with np.errstate(all="ignore"):
        judge(f"operator {symbol}", lambda: OPERATORS[symbol](a, b), operator_expectation(t, other))


@FUZZ
@given(data=st.data(), shape=st.lists(st.integers(1, 3), max_size=3), dtype=float_dtypes)
def test_backward_with_any_gradient(data, shape, dtype):
    """y.backward(grad) for y = 2 * x: a gradient of y's shape (an array of any real dtype, or a list) gives x.grad
    in x's dtype; None means 1 for a single-element y; another shape, text or garbage is refused."""
    x = tx.tensor(make_array(tuple(shape), dtype, data.draw(seeds)), requires_grad=True)
    grad = data.draw(st.one_of(arrays_near(tuple(shape)), garbage))
    array = seen(grad)
    ok = x.size == 1 if grad is None else array is not None and array.shape == x.shape
    with np.errstate(over="ignore"):  # float64 values beyond float16's range become inf when converted
        judge("backward(grad)", lambda: (x * 2.0).backward(grad), RETURNS if ok else None)
    assert x.grad is None if not ok else x.grad.dtype == x.dtype


@FUZZ
@given(lr=numbers(0, 1), momentum=numbers(0, 1), weight_decay=numbers(0, 1), decay=numbers(0, 1), eps=numbers(0, 1),
       factor=numbers(0, 1), every=ints(0, 3), params=st.sampled_from(["list", "model", "arrays", "empty", "none"]))
def test_optimiser_settings(lr, momentum, weight_decay, decay, eps, factor, every, params):
    """SGD, RMSProp and StepDecay build with documented settings (lr > 0, momentum and weight decay >= 0, decay in
    [0, 1), eps >= 0, factor in (0, 1], every a positive int, parameters as Tensors or a Module) and refuse any
    other with ValueError/TypeError (text and NaN used to raise comparison errors or be accepted)."""
    given = {"list": list(SMALL.parameters())[:2], "model": SMALL, "arrays": [np.ones(2)], "empty": [],
             "none": None}[params]
    good_params = params in ("list", "model")
    sgd_ok = good_params and is_number(lr, 0, math.inf, "()") and is_number(momentum, 0, math.inf) and \
        is_number(weight_decay, 0, math.inf)
    sgd = judge("SGD", lambda: tx.optim.SGD(given, lr=lr, momentum=momentum, weight_decay=weight_decay),
                RETURNS if sgd_ok else None)
    rms_ok = good_params and is_number(lr, 0, math.inf, "()") and is_number(decay, 0, 1, "[)") and \
        is_number(momentum, 0, math.inf) and is_number(eps, 0, math.inf)
    judge("RMSProp", lambda: tx.optim.RMSProp(given, lr=lr, decay=decay, momentum=momentum, eps=eps),
          RETURNS if rms_ok else None)
    if sgd is not None:
        judge("StepDecay", lambda: tx.optim.StepDecay(sgd, factor=factor, every=every),
              RETURNS if is_number(factor, 0, 1, "(]") and is_int(every) else None)


PATH_GARBAGE = (None, "", b"", 3, 1.5, object(), ["m.npz"], ("m.npz",))


@FEW
@given(path=st.sampled_from(PATH_GARBAGE), which=st.sampled_from(["save", "load"]))
def test_save_and_load_with_paths_that_are_no_paths(path, which):
    """tx.save and tx.load with an empty path or a value that is no path at all: ValueError or TypeError from the
    path check, never a raw error from os.path or from writing a temporary file somewhere."""
    call = tx.save if which == "save" else tx.load
    judge(f"{which}(path)", lambda: call(SMALL, path), None)
