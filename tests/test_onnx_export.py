"""Chapter 4, Xception: exporting the inference graph to ONNX and running it in onnxruntime.

Exercise: TensorFlow's "same" max pool on a 74x74 map pads one pixel at the bottom and right only; write down
the ONNX ``pads`` attribute ([top, left, bottom, right]) for it, then check with ``onnx.load``.

onnxruntime is an independent implementation of every op (Conv, BatchNormalization, MaxPool ...), so equal
outputs mean the exported graph computes what the package computes. BatchNorm statistics are set to real
batch statistics first: with the initial (0, 1) the signal fades layer by layer and nearly any graph would
give the same tiny logits.
"""
import sys

import numpy as np
import pytest

import tinyxception as tx
from tinyxception import nn

pytestmark = pytest.mark.ch4_xception

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def calibrated(model, size, seed=0):
    """`model` in eval mode with each BatchNorm's running statistics taken from one random training batch."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0  # the running statistics become this batch's
    x = np.random.default_rng(seed).standard_normal((2, model.config.in_channels, size, size)).astype(np.float32)
    with tx.no_grad():
        model.train()(x)
    return model.eval()


def run_onnx(path, *batches):
    """The exported graph's output for each batch, computed by onnxruntime on the CPU from one session."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [session.run(None, {"input": x})[0] for x in batches]
    return outputs[0] if len(batches) == 1 else outputs


def ours(model, x):
    with tx.no_grad():
        return model(x).numpy()


def assert_close(theirs, expected):
    """Within 1e-5 relative to the size of the outputs: float32 sums in another order differ by a few ulps."""
    np.testing.assert_allclose(theirs, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def paper_export(tmp_path_factory):
    """The paper network (calibrated), exported once at 299x299, and its own logits for a batch of three."""
    model = calibrated(tx.Xception(seed=0), 96)
    path = tmp_path_factory.mktemp("onnx") / "xception.onnx"
    tx.export_onnx(model, path, input_shape=(1, 3, 299, 299))
    x = np.random.default_rng(1).standard_normal((3, 3, 299, 299)).astype(np.float32)
    return path, x, ours(model, x)


@pytest.mark.slow
def test_paper_network_in_onnxruntime_gives_our_logits_at_batch_1_and_3(paper_export):
    """One exported file of the paper network runs at batch 1 and at batch 3 (the batch axis is free) and
    gives the package's logits to 1e-5, relative to their size."""
    path, x, expected = paper_export
    assert np.abs(expected).max() > 1 and expected.std(axis=0).mean() > 1e-2  # logits that depend on the image
    one, three = run_onnx(path, x[:1], x)
    assert_close(one, expected[:1])
    assert_close(three, expected)


@pytest.mark.slow
def test_exported_file_passes_the_checker_with_a_free_batch_axis(paper_export):
    """The saved file passes onnx.checker again after loading; input and output declare the batch as a named
    dimension and fix the rest (3x299x299 in, 1000 out); the weights are the 22,855,952 trainable parameters
    plus 54,528 BatchNorm statistics."""
    model = onnx.load(str(paper_export[0]))
    onnx.checker.check_model(model, full_check=True)
    dims = [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in (model.graph.input[0], model.graph.output[0])]
    assert dims == [["batch", 3, 299, 299], ["batch", 1000]]
    assert sum(np.prod(t.dims) for t in model.graph.initializer) == 22_855_952 + 54_528


@pytest.mark.parametrize("options", [
    {}, {"residual": False}, {"intermediate_activation": "elu"}, {"intermediate_activation": "relu"},
    {"width": 1 / 4, "groups": 2}, {"include_top": False, "pooling": "max"}, {"include_top": False, "pooling": None},
], ids=["small", "no-residual", "elu", "relu", "grouped", "headless-max", "feature-map"])
def test_small_configurations_in_onnxruntime(tmp_path, options):
    """Xception.small and its ablation knobs (Fig. 9 residuals, Fig. 10 activations, grouped spatial convs,
    headless models) export and give the package's outputs at batch 1 and 3 from one file."""
    model = calibrated(tx.Xception.small(seed=0, **options), 32)
    tx.export_onnx(model, tmp_path / "small.onnx", input_shape=(1, 3, 32, 32))
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    expected = ours(model, x)
    one, three = run_onnx(tmp_path / "small.onnx", x[:1], x)
    assert_close(one, expected[:1])
    assert_close(three, expected)


def test_export_from_a_model_on_any_device(tmp_path, device):
    """A model on the GPU exports the same graph: its weights are copied to the CPU for the file."""
    model = calibrated(tx.Xception.small(seed=0), 32)
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = ours(model, x)
    tx.export_onnx(model.to(device), tmp_path / "small.onnx", input_shape=(1, 3, 32, 32))
    assert_close(run_onnx(tmp_path / "small.onnx", x), expected)


@pytest.mark.parametrize("size", [8, 9])
def test_max_pool_same_padding_is_tensorflows(tmp_path, size):
    """A 3x3 stride-2 "same" max pool on an even (8) and odd (9) map, on negative values, where padding with
    zeros or padding on the wrong side would change the border outputs."""
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, padding="same"))
    tx.export_onnx(model, tmp_path / "pool.onnx", input_shape=(1, 2, size, size))
    x = -np.random.default_rng(3).uniform(1, 2, (2, 2, size, size)).astype(np.float32)
    np.testing.assert_array_equal(run_onnx(tmp_path / "pool.onnx", x), ours(model, x))


def test_conv_with_bias_and_linear_without(tmp_path):
    """Layers outside Xception's defaults: a strided, padded conv with a bias, then a Linear without one."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True), nn.ReLU(), nn.GlobalAvgPool2d(),
                          nn.Linear(4, 5, bias=False))
    model[0].bias.data[...] = np.arange(4, dtype=np.float32)
    tx.export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 3, 11, 11))
    x = np.random.default_rng(4).standard_normal((3, 3, 11, 11)).astype(np.float32)
    assert_close(run_onnx(tmp_path / "m.onnx", x), ours(model, x))


class Doubling(nn.Module):
    """A layer the exporter has never heard of."""

    def forward(self, x):
        return x + x


def test_what_it_cannot_express_is_refused_and_nothing_written(tmp_path):
    """An unknown module type, even a subclass of a known one (it may compute something else): ValueError
    naming its place in the model and its class; no file is written."""
    class MyReLU(nn.ReLU):
        pass

    for bad, name in ((Doubling(), "Doubling"), (MyReLU(), "MyReLU")):
        with pytest.raises(ValueError, match=rf"cannot express 1 \({name}\)"):
            tx.export_onnx(nn.Sequential(nn.ReLU(), bad), tmp_path / "bad.onnx", input_shape=(1, 3, 8, 8))
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("shape, match", [((1, 1, 32, 32), "C = 3"), ((1, 3, 16, 16), "at least 17"),
                                          ((3, 32, 32), "N, C, H, W")])
def test_input_shapes_the_model_cannot_take_are_refused(tmp_path, shape, match):
    """Another channel count, an image smaller than the model's minimum, or no batch axis: ValueError."""
    with pytest.raises(ValueError, match=match):
        tx.export_onnx(tx.Xception.small(), tmp_path / "x.onnx", input_shape=shape)


def test_missing_onnx_gives_the_install_command(tmp_path, monkeypatch):
    """onnx is an optional extra, imported only when exporting; without it the error says what to install."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'tinyxception\[onnx\]'"):
        tx.export_onnx(tx.Xception.small(), tmp_path / "x.onnx", input_shape=(1, 3, 32, 32))
