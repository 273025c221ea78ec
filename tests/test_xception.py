"""Chapter 4, Xception: the network of the paper's Fig. 5, its numbers, shapes, knobs and gradients.

Exercise: with your kernels from chapters 1-3 in place (``pytest --exercises -m ch4_xception``), the whole network
must still give the paper's numbers and correct gradients (notebook 05).

Expected numbers come from the paper and Keras (22,855,952 trainable parameters, feature maps
149/147/74/37/19/10, ~8.36 G multiply-adds), or from closed forms written here from the architecture.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from tinyxception import nn
from tinyxception.summary import count_buffers, count_conv_layers

pytestmark = pytest.mark.ch4_xception

TINY = {"middle_blocks": 1, "width": 1 / 8, "seed": 0}  # 71x71 inputs run in milliseconds


def closed_form_parameters(width=1.0, middle_blocks=8, num_classes=1000, in_channels=3, include_top=True,
                           residual=True, groups=None):
    """Trainable parameters of Xception written out from Fig. 5 (sep = k^2 C_in [/g C_in] + C_in C_out; BN = 2C)."""
    a, b, c1, c2, c3, c4, c5, c6 = (max(1, round(n * width)) for n in (32, 64, 128, 256, 728, 1024, 1536, 2048))

    def sep_bn(i, o):  # separable conv + its BatchNorm
        spatial = 9 * i if groups is None else 9 * i * i // groups
        return spatial + i * o + 2 * o

    def down(i, m, o):  # two separable convs and the 1x1 shortcut conv + BN
        return sep_bn(i, m) + sep_bn(m, o) + (i * o + 2 * o if residual else 0)

    stem = 9 * in_channels * a + 2 * a + 9 * a * b + 2 * b
    total = (stem + down(b, c1, c1) + down(c1, c2, c2) + down(c2, c3, c3) + middle_blocks * 3 * sep_bn(c3, c3)
             + down(c3, c3, c4) + sep_bn(c4, c5) + sep_bn(c5, c6))
    return total + (c6 * num_classes + num_classes if include_top else 0)


@pytest.fixture(scope="module")
def paper_run():
    """The paper network (eval mode) after one forward pass on a (2, 3, 299, 299) batch, with every module's
    output shape recorded by a forward hook: (model, logits, {module name: output shape})."""
    model = tx.Xception(seed=0).eval()
    names = {id(module): name for name, module in model.named_modules()}
    shapes = {}
    x = np.random.default_rng(0).standard_normal((2, 3, 299, 299)).astype(np.float32)
    with tx.no_grad(), nn.forward_hook(lambda module, out: shapes.__setitem__(names[id(module)], out.shape)):
        logits = model(x)
    return model, logits, shapes


# --- the paper's numbers ------------------------------------------------------------------------

def test_trainable_parameters_match_paper_table_3(paper_run):
    """Table 3: Xception has 22,855,952 trainable parameters (with the 1000-way classifier)."""
    assert tx.count_parameters(paper_run[0]) == 22_855_952


def test_batchnorm_statistics_add_54528_numbers(paper_run):
    """Keras reports 22,910,480 parameters in total: 54,528 of them are BN running means and variances."""
    assert count_buffers(paper_run[0]) == 54_528
    assert tx.count_parameters(paper_run[0]) + count_buffers(paper_run[0]) == 22_910_480


def test_without_the_top_20806952_parameters():
    """Keras' Xception(include_top=False): 20,806,952 trainable parameters (the classifier had 2,049,000)."""
    assert tx.count_parameters(tx.Xception(include_top=False)) == 20_806_952


def test_36_conv_layers_in_14_modules(paper_run):
    """Section 3: "36 convolutional layers structured into 14 modules" (the 4 shortcut 1x1 convs not counted)."""
    assert count_conv_layers(paper_run[0]) == (36, 14)


def test_forward_gives_float32_logits(paper_run):
    """(2, 3, 299, 299) float32 in, (2, 1000) float32 logits out, all finite."""
    logits = paper_run[1]
    assert logits.shape == (2, 1000) and logits.dtype == np.float32 and np.isfinite(logits.numpy()).all()


def test_feature_map_sizes_149_147_74_37_19_10(paper_run):
    """Fig. 5 at 299x299: stem 149 then 147, entry blocks 74, 37, 19, middle flow 19, exit flow 10."""
    model, _, shapes = paper_run
    measured = {name: shapes[name][-2:] for name in
                ("entry_flow.block1.conv1", "entry_flow.block1.conv2", "entry_flow.block2", "entry_flow.block3",
                 "entry_flow.block4", "middle_flow.block12", "exit_flow.block13", "exit_flow.block14")}
    assert [side for side, _ in measured.values()] == [149, 147, 74, 37, 19, 19, 10, 10]
    assert all(h == w for h, w in measured.values())
    assert shapes["exit_flow.block14"][1] == 2048
    assert list(model.feature_sizes(299).values()) == [149, 147, 74, 37, 19, 10]  # the geometry agrees


def test_summary_totals(paper_run):
    """summary(): 22,855,952 trainable, 54,528 BN statistics, ~8.36 G multiply-adds; rows add up; model unchanged."""
    model = paper_run[0]
    model.entry_flow.block2.train()
    before = model.entry_flow.block1.conv1_bn.running_mean.copy()
    printed = []
    result = tx.summary(model, (3, 299, 299), print_fn=printed.append)
    assert (result.trainable, result.non_trainable) == (22_855_952, 54_528)
    assert abs(result.multiply_adds - 8.36e9) < 0.01e9
    assert sum(row.parameters for row in result.rows) == result.trainable
    assert result.rows[-1].name == "predictions" and result.rows[-1].output_shape == (1000,)
    assert "22,855,952" in printed[0] and "entry_flow.block2.sepconv1.depthwise" in printed[0]
    assert model.entry_flow.block2.training and not model.entry_flow.block3.training  # modes restored
    np.testing.assert_array_equal(model.entry_flow.block1.conv1_bn.running_mean, before)
    model.eval()


# --- closed forms ---------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(width=st.sampled_from([1 / 16, 1 / 8, 0.2, 1 / 4, 1 / 3, 1 / 2]), middle_blocks=st.integers(0, 4),
       num_classes=st.integers(1, 20), in_channels=st.integers(1, 4), include_top=st.booleans(),
       residual=st.booleans())
def test_parameter_count_matches_closed_form(width, middle_blocks, num_classes, in_channels, include_top, residual):
    """For any width, depth of the middle flow, head and input channels, the model holds the closed-form count."""
    model = tx.Xception(num_classes=num_classes, in_channels=in_channels, middle_blocks=middle_blocks, width=width,
                        include_top=include_top, residual=residual)
    assert tx.count_parameters(model) == closed_form_parameters(width, middle_blocks, num_classes, in_channels,
                                                                include_top, residual)


def test_grouped_spatial_convolutions_follow_the_grouped_formula():
    """groups=g replaces each depthwise step by a grouped C_in -> C_in conv: k^2 C_in^2 / g weights each."""
    model = tx.Xception(width=1 / 4, middle_blocks=1, groups=2)
    assert tx.count_parameters(model) == closed_form_parameters(1 / 4, 1, groups=2)
    with pytest.raises(ValueError, match="groups=3"):
        tx.Xception(width=1 / 4, groups=3)


def test_intermediate_activation_is_in_every_separable_conv_and_adds_no_parameters():
    """Fig. 10's variant puts an activation inside all 34 separable convs; the parameter count is unchanged."""
    model = tx.Xception(intermediate_activation="elu", width=1 / 8)
    seps = [m for m in model.modules() if isinstance(m, nn.SeparableConv2d)]
    assert len(seps) == 34 and all(isinstance(s.activation, nn.ELU) for s in seps)
    assert tx.count_parameters(model) == closed_form_parameters(1 / 8)


# --- structure and traps --------------------------------------------------------------------------

def test_middle_flow_blocks_hold_distinct_weights(paper_run):
    """8 middle blocks = 8 objects with 8 independent weight arrays (reusing one block would share them)."""
    blocks = list(paper_run[0].middle_flow.children())
    weights = [block.sepconv1.pointwise.weight.data for block in blocks]
    assert len(blocks) == 8 and len({id(b) for b in blocks}) == 8
    assert not any(np.shares_memory(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])
    assert len({a.tobytes() for a in weights}) == 8
    weights[0][0, 0, 0, 0] += 1.0  # changing one block's weight leaves the others alone
    assert all(w[0, 0, 0, 0] != weights[0][0, 0, 0, 0] for w in weights[1:])
    weights[0][0, 0, 0, 0] -= 1.0


def test_no_convolution_has_a_bias(paper_run):
    """Every conv is followed by BN, so none has a bias; the only bias is the classifier's."""
    model = paper_run[0]
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert [name for name, _ in model.named_parameters() if name.endswith("bias")] == ["predictions.bias"]


def test_module_names_follow_the_paper_and_keras(paper_run):
    """Names read like Fig. 5 and Keras: entry/middle/exit flows, blockN, sepconvN, sepconvN_bn, shortcut."""
    names = {name for name, _ in paper_run[0].named_parameters()}
    for expected in ("entry_flow.block1.conv1.weight", "entry_flow.block2.sepconv1.depthwise.weight",
                     "entry_flow.block2.sepconv1_bn.gamma", "entry_flow.block2.shortcut.weight",
                     "middle_flow.block5.sepconv3.pointwise.weight", "middle_flow.block12.sepconv1.depthwise.weight",
                     "exit_flow.block13.shortcut_bn.beta", "exit_flow.block14.sepconv2.pointwise.weight",
                     "predictions.weight"):
        assert expected in names
    modules = dict(paper_run[0].named_modules())
    assert "entry_flow.block2.sepconv1_act" not in modules  # block 2 starts without a ReLU
    assert isinstance(modules["entry_flow.block3.sepconv1_act"], nn.ReLU)


def test_residual_branch_reads_the_input_before_the_relu():
    """With the main path's weights zeroed, a middle block is the identity, negative values included:
    the shortcut adds x itself, not ReLU(x)."""
    block = tx.Xception(**TINY).middle_flow.block5.eval()
    for i in (1, 2, 3):
        getattr(block, f"sepconv{i}").pointwise.weight.data[...] = 0.0
    x = np.random.default_rng(0).standard_normal((2, block.sepconv1.pointwise.in_channels, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(block(x).numpy(), x)


def test_down_block_shortcut_is_a_strided_1x1_conv_of_the_input():
    """Entry block 3 = main path + BN(1x1 stride-2 conv of x); main path zeroed leaves the shortcut alone."""
    block = tx.Xception(**TINY).entry_flow.block3.eval()
    block.sepconv2.pointwise.weight.data[...] = 0.0
    x = np.random.default_rng(0).standard_normal((2, block.shortcut.in_channels, 9, 9)).astype(np.float32)
    eps = block.shortcut_bn.eps
    expected = np.einsum("oc,nchw->nohw", block.shortcut.weight.numpy()[:, :, 0, 0], x[:, :, ::2, ::2])
    np.testing.assert_allclose(block(x).numpy(), expected / np.sqrt(1 + eps), rtol=1e-5, atol=1e-6)


def test_no_residual_variant_has_no_shortcuts():
    """residual=False (Fig. 9) removes the four shortcut convs and the middle flow's identity additions."""
    model = tx.Xception(residual=False, **TINY).eval()
    assert not any("shortcut" in name for name, _ in model.named_modules())
    block = model.middle_flow.block5
    for i in (1, 2, 3):
        getattr(block, f"sepconv{i}").pointwise.weight.data[...] = 0.0
    x = np.ones((1, block.sepconv1.pointwise.in_channels, 5, 5), dtype=np.float32)
    np.testing.assert_array_equal(block(x).numpy(), np.zeros_like(x))


def test_same_seed_same_weights():
    """Xception(seed=s) is reproducible; another seed gives other weights."""
    a, b, c = (tx.Xception(**{**TINY, "seed": s}).state_dict() for s in (5, 5, 6))
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert not np.array_equal(a["predictions.weight"], c["predictions.weight"])


def test_width_scales_every_channel_count():
    """width=1/8 rounds 32, 64, 128, 256, 728, 1024, 1536, 2048 to 4, 8, 16, 32, 91, 128, 192, 256."""
    model = tx.Xception(width=1 / 8)
    assert model.entry_flow.block1.conv1.out_channels == 4
    assert model.entry_flow.block4.sepconv2.pointwise.out_channels == 91
    assert model.exit_flow.block14.sepconv2.pointwise.out_channels == 256
    assert model.predictions.in_features == 256


@pytest.mark.parametrize("pooling, shape", [("avg", (2, 256)), ("max", (2, 256)), (None, (2, 256, 3, 3))])
def test_headless_model_returns_features(pooling, shape):
    """include_top=False returns pooled features (avg or max over the final map) or the map itself."""
    model = tx.Xception(include_top=False, pooling=pooling, **TINY).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 71, 71)).astype(np.float32)
    assert model(x).shape == shape
    if pooling is not None:
        feature_map = tx.Xception(include_top=False, pooling=None, **TINY).eval()(x).numpy()
        reduce = np.mean if pooling == "avg" else np.max
        np.testing.assert_allclose(model(x).numpy(), reduce(feature_map, axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_forward_accepts_arrays_and_tensors_on_any_device(device):
    """numpy/cupy arrays and Tensors give the same logits; on cuda they match the CPU result."""
    model = tx.Xception(num_classes=7, **TINY).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 71, 71)).astype(np.float32)
    expected = model(x).numpy()
    np.testing.assert_array_equal(model(tx.tensor(x)).numpy(), expected)
    model.to(device)
    np.testing.assert_allclose(model(tx.tensor(x, device=device).data).numpy(), expected, rtol=1e-4, atol=1e-5)
    model.to("cpu")


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype, error, match", [
    ((2, 299, 299, 3), np.float32, ValueError, "NHWC.*transpose"),
    ((2, 1, 299, 299), np.float32, ValueError, "3 input channels"),
    ((2, 3, 70, 299), np.float32, ValueError, "at least 71"),
    ((2, 3, 299, 70), np.float32, ValueError, "at least 71"),
    ((3, 299, 299), np.float32, ValueError, "4 dimensions"),
    ((1, 3, 71, 71), np.uint8, TypeError, "floating point"),
    ((1, 3, 71, 71), np.float64, TypeError, "astype"),
])
def test_bad_input_is_refused_with_a_clear_message(paper_run, shape, dtype, error, match):
    """NHWC input, wrong channels, below 71x71 (Keras' minimum), missing batch axis, ints, float64 into float32."""
    with pytest.raises(error, match=match):
        paper_run[0](np.zeros(shape, dtype=dtype))


def test_minimum_input_size_is_computed_from_the_configuration(paper_run):
    """71 for the paper (the exit flow then ends on 3x3); smaller for the 32x32 preset; the minimum itself runs."""
    model = paper_run[0]
    assert model.min_input_size == 71 and list(model.feature_sizes(71).values())[-1] == 3
    assert list(model.feature_sizes(70).values())[-1] == 2
    small = tx.Xception.small(seed=0).eval()
    assert small.min_input_size <= 32
    side = small.min_input_size
    assert small(np.zeros((1, 3, side, side), dtype=np.float32)).shape == (1, 10)


def test_bad_options_are_refused():
    """Nonsense options fail at construction with the option's name in the message."""
    for options, match in (({"width": 0}, "width"), ({"middle_blocks": -1}, "middle_blocks"),
                           ({"dropout": 1}, "dropout"), ({"pooling": "sum"}, "pooling"),
                           ({"include_top": True, "pooling": None}, "classifier")):
        with pytest.raises(ValueError, match=match):
            tx.Xception(**options)


# --- learning --------------------------------------------------------------------------------------

def test_small_preset_trains_on_a_tiny_batch():
    """Three hand-written SGD steps (p -= lr * grad) on 8 images of 32x32 cut the loss by more than 4x."""
    model = tx.Xception.small(num_classes=4, in_channels=1, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 32, 32)).astype(np.float32), np.arange(8) % 4
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.1 * p.grad
    assert losses[-1] < losses[0] / 4, losses


def test_training_step_stays_float32(monkeypatch):
    """No silent float64: in a float32 training step (forward, loss, backward, SGD with momentum) every op's
    output, every gradient, the running statistics and the updated weights stay float32. One float64
    constant anywhere would double the memory traffic of everything after it."""
    from tinyxception import autograd
    seen = set()
    apply = autograd.Function.apply.__func__

    def recording_apply(cls, *inputs, **options):
        out = apply(cls, *inputs, **options)
        seen.add((cls.__name__, str(out.dtype)))
        return out

    monkeypatch.setattr(autograd.Function, "apply", classmethod(recording_apply))
    model = tx.Xception.small(num_classes=4, in_channels=1, seed=0)
    optimizer = tx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32), np.arange(4)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert {dtype for _, dtype in seen} == {"float32"}, sorted(seen)
    assert {p.grad.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    assert {v.dtype for v in model.state_dict().values()} == {np.dtype(np.float32)}


def test_full_model_gradients_match_central_differences():
    """Backpropagation through the whole network (train mode, batch-statistics BN, 1 middle block, width 1/8,
    71x71, float64) agrees with central differences on sampled weights of every kind of layer and the input.

    eps is 1e-7: a first-layer weight moves every pixel of the 35x35 maps, and at 1e-6 a few ReLU or max-pool
    decisions already flip inside [w - eps, w + eps], which bends the difference quotient."""
    model = tx.Xception(num_classes=5, dropout=0.0, **TINY).astype("float64").train()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 71, 71))
    projection = rng.standard_normal((2, 5))
    x_tensor = tx.tensor(x, requires_grad=True)
    model(x_tensor).backward(projection)
    params = dict(model.named_parameters())

    def loss():
        with tx.no_grad():
            return float(np.sum(model(x).numpy() * projection))

    picked = ["entry_flow.block1.conv1.weight", "entry_flow.block2.sepconv1.depthwise.weight",
              "entry_flow.block3.shortcut.weight", "middle_flow.block5.sepconv2.pointwise.weight",
              "middle_flow.block5.sepconv3_bn.gamma", "exit_flow.block6.shortcut_bn.beta",
              "exit_flow.block7.sepconv2.depthwise.weight", "predictions.weight", "predictions.bias"]
    arrays = [(name, params[name].data, params[name].grad) for name in picked] + [("input", x, x_tensor.grad)]
    eps = 1e-7
    for name, array, grad in arrays:
        for index in [tuple(rng.integers(0, n) for n in array.shape) for _ in range(2)]:
            original = array[index]
            array[index] = original + eps
            up = loss()
            array[index] = original - eps
            down = loss()
            array[index] = original
            np.testing.assert_allclose(grad[index], (up - down) / (2 * eps), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name}{index}")
