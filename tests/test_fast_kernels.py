"""The fast tier against the reference tier (not a chapter: nothing here is asked of a learner).

Every kernel of ``tinyxception/kernels/fast/`` must return what its reference in ``kernels/reference/`` returns:
the same values (to rounding), shape and dtype, on Xception's real shapes and on hypothesis-drawn shapes, strides,
paddings and groups. This is also the only place that may look at how the fast tier does it (which path ran,
how the result is stored, cache tiles), because none of that is a contract with any other kernel.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyxception as tx
from test_conv import conv_problems, reference_pads
from tinyxception import kernels

FAST, REFERENCE = kernels.tier("fast"), kernels.tier("reference")
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_same(fast, reference, rtol=1e-10):
    """fast equals reference: arrays (or tuples of arrays) of one shape and dtype, values to `rtol`."""
    if isinstance(reference, tuple):
        assert isinstance(fast, tuple) and len(fast) == len(reference)
        for a, b in zip(fast, reference):
            assert_same(a, b, rtol)
        return
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    np.testing.assert_allclose(tx.backend.asnumpy(fast), tx.backend.asnumpy(reference), rtol=rtol, atol=rtol)


def both(name, *args):
    """The fast and the reference result of kernel `name` on copies of the same arguments (some kernels update
    arguments in place, e.g. the running statistics)."""
    copies = [[a.copy(order="K") if isinstance(a, np.ndarray) else a for a in args] for _ in range(2)]  # layout kept
    return FAST[name](*copies[0]), REFERENCE[name](*copies[1]), copies


def check_conv(kind, x_shape, w_shape, stride, pads, groups, seed, dtype=np.float64):
    """Forward and backward of one convolution kernel pair, fast against reference."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    args = {"depthwise": (x, w, stride, pads), "pointwise": (x, w), "grouped": (x, w, stride, pads, groups)}[kind]
    prefix = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d", "grouped": "conv2d"}[kind]
    fast, reference, _ = both(f"{prefix}_forward", *args)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert_same(fast, reference, rtol)
    grad = rng.standard_normal(reference.shape).astype(dtype)
    fast, reference, _ = both(f"{prefix}_backward", grad, *args)
    assert_same(fast, reference, rtol)


XCEPTION_CONVS = {  # (kind, x shape, w shape, stride, pads, groups): the network's layers at batch 1 (299x299)
    "stem-conv1": ("grouped", (1, 3, 299, 299), (32, 3, 3, 3), 2, ((0, 0), (0, 0)), 1),
    "stem-conv2": ("grouped", (1, 32, 149, 149), (64, 32, 3, 3), 1, ((0, 0), (0, 0)), 1),
    "block2-depthwise": ("depthwise", (1, 64, 147, 147), (64, 1, 3, 3), 1, ((1, 1), (1, 1)), 64),
    "block3-depthwise": ("depthwise", (1, 128, 74, 74), (128, 1, 3, 3), 1, ((1, 1), (1, 1)), 128),
    "middle-depthwise": ("depthwise", (2, 728, 19, 19), (728, 1, 3, 3), 1, ((1, 1), (1, 1)), 728),
    "exit-depthwise": ("depthwise", (1, 1536, 10, 10), (1536, 1, 3, 3), 1, ((1, 1), (1, 1)), 1536),
    "middle-pointwise": ("pointwise", (2, 728, 19, 19), (728, 728, 1, 1), 1, None, 1),
    "exit-pointwise": ("pointwise", (1, 1536, 10, 10), (2048, 1536, 1, 1), 1, None, 1),
}


@pytest.mark.parametrize("name", XCEPTION_CONVS)
def test_fast_convolutions_equal_the_reference_on_xception_shapes(name):
    """Every convolution of the paper network, forward and backward, in float32 as the network runs."""
    check_conv(*XCEPTION_CONVS[name], seed=1, dtype=np.float32)


@pytest.mark.parametrize("kind", ["grouped", "depthwise", "pointwise"])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 1000))
def test_fast_convolutions_equal_the_reference_on_drawn_shapes(kind, data, seed):
    """Hypothesis-drawn shapes, strides, int/"valid"/"same" paddings and groups, forward and backward (float64)."""
    x_shape, w_shape, stride, padding, groups = data.draw(conv_problems(kind))
    check_conv(kind, x_shape, w_shape, stride, reference_pads(x_shape[2:], w_shape[2:], stride, padding),
               groups, seed)


def check_pool(shape, kernel, stride, pads, seed, ties=False):
    """Max pool forward and backward, and the global average pool's backward, fast against reference."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.standard_normal(shape)
    fast, reference, _ = both("max_pool2d_forward", x, kernel, stride, pads)
    assert_same(fast, reference)
    grad = rng.standard_normal(reference.shape)
    assert_same(*both("max_pool2d_backward", grad, x, reference, kernel, stride, pads)[:2])
    assert_same(*both("global_avg_pool2d_backward", grad[:, :, 0, 0], shape)[:2])


@pytest.mark.parametrize("shape, pads", [((1, 128, 147, 147), ((0, 1), (0, 1))), ((2, 256, 74, 74), ((0, 1), (0, 1))),
                                         ((1, 728, 37, 37), ((1, 1), (1, 1))), ((2, 1024, 19, 19), ((1, 1), (1, 1)))],
                         ids=["block2", "block3", "block4", "block13"])
def test_fast_max_pool_equals_the_reference_on_xception_shapes(shape, pads):
    """The four 3x3 stride-2 "same" pools of the paper network (74 -> 37 pads (0, 1): TensorFlow's rule)."""
    check_pool(shape, (3, 3), 2, pads, seed=2)


@pytest.mark.parametrize("shape, stride", [((4, 16, 32, 32), 2), ((4, 32, 16, 16), 2), ((4, 91, 8, 8), 2),
                                           ((4, 128, 4, 4), 1)], ids=["block2", "block3", "block4", "block13"])
def test_fast_max_pool_equals_the_reference_on_the_small_networks_shapes(shape, stride):
    """The pools of Xception.small on 32x32 images (block 13 at stride 1); their short output rows (8 pixels or
    fewer) take the fast tier's channels-last backward, whose values must still be the reference's."""
    pads = tuple(reference_pads(shape[2:], (3, 3), stride, "same"))
    check_pool(shape, (3, 3), stride, pads, seed=6, ties=True)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 20),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.integers(1, 3),
       padding=st.sampled_from([0, 1, "valid", "same"]), ties=st.booleans(), seed=st.integers(0, 1000))
def test_fast_max_pool_equals_the_reference_on_drawn_shapes(n, c, h, w, kernel, stride, padding, ties, seed):
    """Drawn sizes, kernels, strides and paddings, with and without ties (the first maximum takes the gradient);
    widths up to 20, so that both the short-row and the long-row backward of the fast tier are drawn."""
    pads = tuple(reference_pads((h, w), kernel, stride, padding))
    if padding == 1 and min(kernel) < 3 or h + sum(pads[0]) < kernel[0] or w + sum(pads[1]) < kernel[1]:
        return  # a geometry max_pool2d refuses
    check_pool((n, c, h, w), kernel, stride, pads, seed, ties)


@pytest.mark.parametrize("shape", [(8, 32, 149, 149), (4, 728, 19, 19), (3, 5)], ids=["stem", "middle", "flat"])
def test_fast_batch_norm_equals_the_reference(shape):
    """Training forward (with the in-place running statistics), backward, and the evaluation-mode pair."""
    rng = np.random.default_rng(3)
    c = shape[1]
    x, gamma, beta = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.random(c) + 0.5
    fast, reference, (fast_args, reference_args) = both("batch_norm_forward", x, gamma, beta, mean, var, 0.1, 1e-3)
    assert_same(fast, reference)
    assert_same((fast_args[3], fast_args[4]), (reference_args[3], reference_args[4]))  # running statistics
    grad, (_, batch_mean, inv_std) = rng.standard_normal(shape), reference
    assert_same(*both("batch_norm_backward", grad, x, batch_mean, inv_std, gamma)[:2])
    assert_same(*both("batch_norm_inference_forward", x, gamma, beta, mean, var, 1e-3)[:2])
    assert_same(*both("batch_norm_inference_backward", grad, x, mean, 1 / np.sqrt(var + 1e-3), gamma)[:2])


@pytest.mark.parametrize("x_layout, grad_layout", [("channels-last", "nchw"), ("nchw", "channels-last"),
                                                    ("channels-last", "channels-last")])
def test_fast_batch_norm_reads_any_memory_layout(x_layout, grad_layout):
    """The fast batch norm sums along channels-last storage without a copy (small maps reach it that way from the
    pointwise conv), and x and the incoming gradient may be stored differently: the values must not depend on
    either layout (a layout mix-up would pair each value of x with another pixel's gradient)."""
    rng = np.random.default_rng(4)
    shape, c = (3, 12, 4, 5), 12

    def stored(a, layout):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) if layout == "channels-last" else a

    x, grad = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    fast, reference, _ = both("batch_norm_forward", stored(x, x_layout), gamma, beta, np.zeros(c), np.ones(c), 0.1,
                              1e-3)
    assert_same(fast, reference)
    _, mean, inv_std = reference
    assert_same(*both("batch_norm_backward", stored(grad, grad_layout), stored(x, x_layout), mean, inv_std,
                      gamma)[:2])


def test_every_kernel_has_a_reference_and_the_fast_tier_covers_the_heavy_ones():
    """The registry: both tiers name the same kernels; the fast tier has its own version of every convolution,
    max-pool and batch-norm kernel and of the average pool's backward. The reference serves the rest (the
    topological order, the linear layer, ReLU, the average pool's forward, the loss and the optimiser step), being
    already a few whole-array NumPy calls."""
    assert FAST.keys() == REFERENCE.keys() == {k for names in kernels.KERNELS.values() for k in names}
    own = {name for name in FAST if FAST[name] is not REFERENCE[name]}
    plain = {"topological_order", "linear_forward", "linear_backward", "relu_forward", "relu_backward",
             "global_avg_pool2d_forward", *kernels.KERNELS["training"]}
    assert own == set(FAST) - plain


# --- how the fast tier does it ---------------------------------------------------------------------------------

SMALL_MAPS = {  # fewer pixels than channels, like Xception's 19x19x728: computed channels-last on the CPU
    "3x3-same": ((2, 40, 5, 6), (3, 3), ((1, 1), (1, 1))),
    "even-kernel-same": ((1, 30, 4, 5), (2, 3), ((0, 1), (1, 1))),
    "1x3-valid": ((3, 20, 3, 4), (1, 3), ((0, 0), (0, 0))),
    "one-pixel-wide": ((1, 9, 6, 1), (3, 3), ((1, 1), (1, 1))),
}


@pytest.mark.parametrize("name", SMALL_MAPS)
def test_fast_depthwise_on_small_maps_runs_channels_last_with_the_reference_values(name):
    """On the CPU, maps with fewer pixels than channels are convolved channels-last (one einsum over a strided
    view of all taps): the result is an NCHW view of channels-last storage, which tells that this path ran, and
    its values equal the reference's; the layout is internal, so the pointwise kernels of both tiers, fed that
    view, still give the reference's result."""
    x_shape, kernel, pads = SMALL_MAPS[name]
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((x_shape[1], 1) + kernel)
    out = FAST["depthwise_conv2d_forward"](x, w, 1, pads)
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous and not out.flags.c_contiguous
    assert_same(out, REFERENCE["depthwise_conv2d_forward"](x, w, 1, pads))
    w_point = rng.standard_normal((3, x_shape[1], 1, 1))
    expected = REFERENCE["pointwise_conv2d_forward"](np.ascontiguousarray(out), w_point)
    for tier in (FAST, REFERENCE):
        assert_same(tier["pointwise_conv2d_forward"](out, w_point), expected)


def test_fast_window_kernels_give_the_same_result_with_one_channel_per_cache_tile(monkeypatch):
    """The fast depthwise conv and max pool work one cache-sized tile of channels at a time; with a 100-byte
    budget (tiles of a single channel) forward and backward must still equal the reference."""
    monkeypatch.setattr(tx.backend, "CPU_CACHE_TILE_BYTES", 100)
    check_conv("depthwise", (2, 5, 6, 7), (5, 1, 3, 3), 1, ((1, 1), (1, 1)), 5, seed=3)
    check_conv("depthwise", (2, 5, 6, 7), (5, 1, 3, 3), 2, ((0, 1), (1, 1)), 5, seed=4)
    for stride, pads in ((2, ((0, 1), (1, 1))), (1, ((0, 0), (0, 0))), (3, ((1, 1), (1, 1)))):
        check_pool((2, 3, 10, 9), (3, 3), stride, pads, seed=stride)


def test_the_reference_tier_runs_the_whole_network_to_the_fast_tiers_logits():
    """Switched with tx.kernels.use("reference"), the paper network computes the same logits (float32) as on
    the fast tier, and training-mode batch norm the same running statistics."""
    model = tx.Xception.small(seed=0)
    x = np.random.default_rng(6).standard_normal((2, 3, 32, 32)).astype(np.float32)
    results = []
    try:
        for tier in ("fast", "reference"):
            kernels.use(tier)
            trained = tx.Xception.small(seed=0)
            logits = trained(x)
            logits.sum().backward()
            with tx.no_grad():
                results.append((logits.numpy(), trained.entry_flow.block1.conv1.weight.grad,
                                trained.entry_flow.block1.conv1_bn.running_var, model.eval()(x).numpy()))
    finally:
        kernels.use("fast")
    for fast, reference in zip(*results):
        np.testing.assert_allclose(tx.backend.asnumpy(fast), tx.backend.asnumpy(reference), rtol=2e-4, atol=2e-5)
