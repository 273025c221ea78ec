"""Chapter 4, Xception: modules, how layers own their weights, count them, save them, and start like Keras'.

Exercise: predict each layer's parameter count from the formulas in DESIGN before the tests check them.

Chapter: modules. How layers own their weights, count them, save them, and start like Keras' layers.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyxception as tx
import tinyxception.functional as F
from tinyxception import nn

pytestmark = pytest.mark.ch4_xception

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def n_params(module):
    """Parameter count from the arrays themselves (not through count_parameters)."""
    return sum(p.data.size for p in module.parameters())


class TwoLayers(nn.Module):
    """A tiny network used to test registration: conv -> BN -> ReLU -> global pool -> linear."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.conv = nn.Conv2d(2, 4, 3, padding="same", rng=rng)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.pool = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(4, 3, rng=rng)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))))


# --- parameter counts: the formulas of the paper's Fig. 2-4 ------------------------------------

@SETTINGS
@given(k=st.sampled_from([1, 3, 5]), c_in=st.integers(1, 24), c_out=st.integers(1, 24))
def test_separable_conv_has_k2_cin_plus_cin_cout_parameters(k, c_in, c_out):
    """A depthwise separable conv holds k^2 C_in (depthwise) + C_in C_out (pointwise) weights, nothing else."""
    assert n_params(nn.SeparableConv2d(c_in, c_out, k)) == k * k * c_in + c_in * c_out


@SETTINGS
@given(k=st.sampled_from([1, 3, 5]), c_in=st.integers(1, 24), c_out=st.integers(1, 24))
def test_regular_conv_has_k2_cin_cout_parameters(k, c_in, c_out):
    """A regular convolution connects every input channel to every output channel: k^2 C_in C_out weights."""
    assert n_params(nn.Conv2d(c_in, c_out, k)) == k * k * c_in * c_out


@SETTINGS
@given(k=st.sampled_from([1, 3]), groups=st.integers(1, 6), per_in=st.integers(1, 5), per_out=st.integers(1, 5))
def test_grouped_conv_has_k2_cin_cout_over_g_parameters(k, groups, per_in, per_out):
    """With g groups each output channel sees only C_in / g inputs: k^2 C_in C_out / g weights."""
    c_in, c_out = groups * per_in, groups * per_out
    assert n_params(nn.Conv2d(c_in, c_out, k, groups=groups)) == k * k * c_in * c_out // groups


@SETTINGS
@given(k=st.sampled_from([1, 3]), groups=st.integers(1, 6), per_in=st.integers(1, 5), c_out=st.integers(1, 12))
def test_separable_conv_with_grouped_spatial_step(k, groups, per_in, c_out):
    """Between regular and depthwise (Fig. 4): a grouped C_in -> C_in spatial conv (k^2 C_in^2 / g) then 1x1."""
    c_in = groups * per_in
    assert n_params(nn.SeparableConv2d(c_in, c_out, k, groups=groups)) == k * k * c_in * c_in // groups + c_in * c_out


def test_seed_example_18432_versus_2336():
    """The numbers of the design notes: k=3, 32 -> 64 channels costs 18,432 weights regular, 2,336 separable."""
    assert (n_params(nn.Conv2d(32, 64, 3)), n_params(nn.SeparableConv2d(32, 64, 3))) == (18_432, 2_336)


def test_convolutions_have_no_bias_unless_asked():
    """Every conv in Xception is followed by BatchNorm, so the layers default to bias=False."""
    for layer in (nn.Conv2d(3, 4, 3), nn.DepthwiseConv2d(3, 3), nn.PointwiseConv2d(3, 4), nn.SeparableConv2d(3, 4)):
        assert not any(name.endswith("bias") for name, _ in layer.named_parameters()), type(layer).__name__
    assert n_params(nn.Conv2d(3, 4, 3, bias=True)) == 3 * 4 * 9 + 4


def test_bad_groups_are_refused():
    """groups must divide both channel counts; the message names the numbers."""
    with pytest.raises(ValueError, match="groups=4"):
        nn.Conv2d(6, 8, 3, groups=4)


# --- what each layer computes --------------------------------------------------------------------

def test_separable_conv_is_depthwise_then_pointwise_without_activation():
    """Xception's separable conv: pointwise(depthwise(x)) with NO nonlinearity between the two steps."""
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = nn.SeparableConv2d(3, 5, 3, rng=1)
    expected = F.pointwise_conv2d(F.depthwise_conv2d(x, layer.depthwise.weight, padding="same"),
                                  layer.pointwise.weight)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, fn", [("relu", F.relu), ("elu", F.elu)])
def test_separable_conv_intermediate_activation(name, fn):
    """The Fig. 10 ablation puts ReLU or ELU between depthwise and pointwise: pointwise(act(depthwise(x)))."""
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = nn.SeparableConv2d(3, 5, 3, intermediate_activation=name, rng=1)
    expected = F.pointwise_conv2d(fn(F.depthwise_conv2d(x, layer.depthwise.weight, padding="same")),
                                  layer.pointwise.weight)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="'relu' or 'elu'"):
        nn.SeparableConv2d(3, 5, intermediate_activation="tanh")


def test_depthwise_layer_equals_conv_with_groups_equal_channels():
    """A depthwise conv is the grouped conv with groups = C: the same weights give the same output."""
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 7)).astype(np.float32)
    depthwise = nn.DepthwiseConv2d(4, 3, stride=2, padding="same", rng=0)
    grouped = nn.Conv2d(4, 4, 3, stride=2, padding="same", groups=4)
    grouped.weight.data[...] = depthwise.weight.data
    np.testing.assert_allclose(depthwise(x).numpy(), grouped(x).numpy(), rtol=1e-6, atol=1e-6)


def test_relu_does_not_modify_its_input():
    """Residual blocks add the block's input after a ReLU has read it: ReLU must return a new array."""
    x = tx.tensor(np.array([[-1.0, 2.0, -3.0]], dtype=np.float32))
    before = x.numpy().copy()
    nn.ReLU()(x)
    np.testing.assert_array_equal(x.numpy(), before)


def test_batchnorm_running_statistics_follow_keras_momentum():
    """Training mode updates running = 0.99 running + 0.01 batch (Keras' momentum 0.99); eval mode leaves them."""
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 2, 4, 4)).astype(np.float32)
    bn = nn.BatchNorm2d(2)
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)
    bn(x)
    np.testing.assert_allclose(bn.running_mean, 0.01 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    frozen = bn.running_mean.copy()
    bn.eval()(x)
    np.testing.assert_array_equal(bn.running_mean, frozen)


def test_dropout_only_in_training():
    """Dropout zeroes values in training (scaling the rest by 1/(1-p)) and is the identity in eval mode."""
    x = np.ones((4, 1000), dtype=np.float32)
    layer = nn.Dropout(0.5, rng=np.random.default_rng(0))
    y = layer(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    np.testing.assert_array_equal(layer.eval()(x).numpy(), x)


def test_multiply_adds_of_each_kind_of_layer():
    """Multiply-adds per output value: k^2 C_in / g (conv), k^2 (depthwise), C_in (pointwise and linear)."""
    out = (1, 8, 10, 10)
    assert nn.Conv2d(4, 8, 3).multiply_adds(out) == 800 * 9 * 4
    assert nn.Conv2d(4, 8, 3, groups=2).multiply_adds(out) == 800 * 9 * 2
    assert nn.DepthwiseConv2d(8, 3).multiply_adds(out) == 800 * 9
    assert nn.PointwiseConv2d(4, 8).multiply_adds(out) == 800 * 4
    assert nn.Linear(16, 10).multiply_adds((1, 10)) == 160
    assert nn.BatchNorm2d(8).multiply_adds(out) == 0


# --- Keras-style initialisation -------------------------------------------------------------------

@pytest.mark.parametrize("make, fan_in, fan_out", [
    (lambda: nn.Conv2d(16, 32, 3, rng=0), 9 * 16, 9 * 32),       # Keras kernel (3, 3, 16, 32)
    (lambda: nn.Conv2d(16, 32, 3, groups=4, rng=0), 9 * 4, 9 * 32),  # (3, 3, 4, 32)
    (lambda: nn.DepthwiseConv2d(64, 3, rng=0), 9 * 64, 9),       # depthwise kernel (3, 3, 64, 1)
    (lambda: nn.PointwiseConv2d(64, 128, rng=0), 64, 128),       # (1, 1, 64, 128)
    (lambda: nn.Linear(256, 100, rng=0), 256, 100),              # Dense kernel (256, 100)
])
def test_glorot_uniform_with_keras_fans(make, fan_in, fan_out):
    """Kernels are U(-l, l), l = sqrt(6 / (fan_in + fan_out)), fans as Keras computes them for its layout."""
    w = make().weight.numpy()
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit  # hundreds of draws: the largest comes close to the limit
    assert abs(w.std() - limit / math.sqrt(3)) < 0.1 * limit  # the standard deviation of U(-l, l)


def test_biases_and_batchnorm_start_like_keras():
    """Biases 0; BatchNorm gamma 1, beta 0, running mean 0, running variance 1."""
    bn, fc = nn.BatchNorm2d(5), nn.Linear(3, 4)
    np.testing.assert_array_equal(fc.bias.numpy(), np.zeros(4))
    for array, value in ((bn.gamma.numpy(), 1), (bn.beta.numpy(), 0), (bn.running_mean, 0), (bn.running_var, 1)):
        np.testing.assert_array_equal(array, np.full(5, value, dtype=np.float32))


def test_seeded_initialisation_is_reproducible():
    """The same seed gives identical weights; another seed gives other weights."""
    same = [TwoLayers(seed=3).state_dict() for _ in range(2)]
    other = TwoLayers(seed=4).state_dict()
    for name in same[0]:
        np.testing.assert_array_equal(same[0][name], same[1][name])
    assert not np.array_equal(same[0]["conv.weight"], other["conv.weight"])


# --- registration, state, modes -------------------------------------------------------------------

def test_parameters_and_buffers_are_registered_in_order():
    """Assigned Parameters, submodules and buffers are found by name, in the order they were built."""
    net = TwoLayers()
    assert [name for name, _ in net.named_parameters()] == ["conv.weight", "bn.gamma", "bn.beta",
                                                            "fc.weight", "fc.bias"]
    assert [name for name, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert list(net.state_dict()) == ["conv.weight", "bn.gamma", "bn.beta", "bn.running_mean", "bn.running_var",
                                      "fc.weight", "fc.bias"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_a_shared_parameter_is_listed_once():
    """A layer used twice shares its weights: parameters() lists them once, so they are counted once."""
    shared = nn.Conv2d(2, 2, 3)
    net = nn.Sequential(shared, shared)
    assert len(list(net.parameters())) == 1 and tx.count_parameters(net) == 36


def test_assigning_a_non_parameter_over_a_parameter_is_refused():
    """Replacing a Parameter by a plain Tensor would silently stop training it: TypeError instead."""
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Parameter"):
        layer.weight = tx.tensor(np.zeros((2, 2), dtype=np.float32))


def test_plain_attributes_follow_pythons_own_rules():
    """Anything that is not a Parameter, submodule or buffer is an ordinary attribute, set the ordinary way: assigning
    __class__ changes the layer's class in place (distributed.convert_sync_batchnorm relies on it), and a submodule
    overwritten by a plain value is no longer a submodule."""
    class Scaled(nn.ReLU):
        def forward(self, x):
            return 2 * super().forward(x)

    net = nn.Sequential(act=nn.ReLU())
    net.act.__class__ = Scaled
    assert type(net.act) is Scaled and net(np.ones((1, 2), dtype=np.float32)).numpy().tolist() == [[2.0, 2.0]]
    net.act = None
    assert net.act is None and list(net.named_children()) == []


def test_state_dict_holds_copies():
    """state_dict() copies: changing the model afterwards does not change a state taken before."""
    net = TwoLayers()
    state = net.state_dict()
    net.conv.weight.data += 1.0
    assert not np.array_equal(state["conv.weight"], net.conv.weight.numpy())


def test_load_state_dict_round_trip_is_exact_and_in_place():
    """Loading another model's state copies every value exactly and keeps the same Parameter objects."""
    source, target = TwoLayers(seed=1), TwoLayers(seed=2)
    source.bn.running_var[...] = 7.0
    weight = target.conv.weight
    target.load_state_dict(source.state_dict())
    assert target.conv.weight is weight
    for name, array in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], array)


def test_load_state_dict_refusal_lists_every_problem_and_changes_nothing():
    """Missing, unexpected and mis-shaped/mis-typed keys are all listed; no value is written before the check."""
    net = TwoLayers(seed=1)
    before = net.state_dict()
    bad = TwoLayers(seed=2).state_dict()
    bad["conv.weight"] = np.zeros((4, 2, 5, 5), dtype=np.float32)  # wrong shape, listed first in the state
    bad["fc.bias"] = bad["fc.bias"].astype(np.float64)              # wrong dtype
    del bad["bn.running_var"]
    bad["head.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    for expected in ("missing", "bn.running_var", "unexpected", "head.weight", "conv.weight", "(4, 2, 5, 5)",
                     "fc.bias", "float64"):
        assert expected in message
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_train_and_eval_reach_every_submodule():
    """train()/eval() set the mode of the whole tree (BatchNorm and Dropout deep inside read it)."""
    net = TwoLayers()
    assert all(m.training for m in net.eval().train().modules())
    assert not any(m.training for m in net.eval().modules())


def test_to_device_keeps_parameter_identity(device):
    """to(device) moves data in place: the Parameter objects an optimizer holds stay valid."""
    net = TwoLayers()
    params = list(net.parameters())
    net.to(device)
    assert all(a is b for a, b in zip(params, net.parameters()))
    assert {p.device for p in net.parameters()} == {device}
    assert {tx.backend.device_of(b) for _, b in net.named_buffers()} == {device}
    x = tx.tensor(np.ones((2, 2, 5, 5), dtype=np.float32), device=device)
    assert net(x).shape == (2, 3)
    net.to("cpu")


def test_astype_float64():
    """astype("float64") converts parameters and buffers, so the model takes float64 input (gradient checks)."""
    net = TwoLayers().astype("float64")
    assert {p.dtype for p in net.parameters()} == {np.dtype(np.float64)}
    assert net(np.ones((2, 2, 5, 5))).dtype == np.float64
    with pytest.raises(TypeError, match="float"):
        net.astype("int32")


def test_forward_hook_is_active_only_inside_its_block():
    """summary() records layer outputs through forward_hook; outside the block calls are plain forwards."""
    net, seen = TwoLayers(), []
    with nn.forward_hook(lambda module, out: seen.append(type(module).__name__)):
        net(np.ones((2, 2, 5, 5), dtype=np.float32))
    net(np.ones((2, 2, 5, 5), dtype=np.float32))
    assert seen == ["Conv2d", "BatchNorm2d", "ReLU", "GlobalAvgPool2d", "Linear", "TwoLayers"]


def test_sequential_names_order_and_repr():
    """Sequential runs its modules in order; named entries keep their names, and repr shows the tree."""
    seq = nn.Sequential(conv=nn.Conv2d(1, 2, 3, rng=0), act=nn.ReLU())
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(seq(x).numpy(), F.relu(seq.conv(x)).numpy())
    assert [name for name, _ in seq.named_children()] == ["conv", "act"] and len(seq) == 2 and seq[1] is seq.act
    assert "conv: Conv2d(1, 2" in repr(seq) and "act: ReLU()" in repr(seq)
    assert [name for name, _ in nn.Sequential(nn.ReLU(), nn.ReLU()).named_children()] == ["0", "1"]


def test_subclass_that_forgets_super_init_gets_a_clear_error():
    """Registration needs Module.__init__; forgetting it raises an error that says so."""
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match="super"):
        Broken()
