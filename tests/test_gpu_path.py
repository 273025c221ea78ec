"""The GPU code path, checked on the CPU: the library running on the CuPy stand-in of ``tests/cupy_stand_in.py``.

Exercise: break the rule on purpose (write ``numpy.zeros`` instead of ``xp.zeros`` in one backward pass) and
watch which of these tests catch it, and with which message.

Every device test of the suite already has a "stand-in" case. The tests here first check that the stand-in
really fails where CuPy fails (a checker that never complains checks nothing). Then they run what no
single-op test covers: a training step of the network, the training loop with averages and a checkpoint, the
paper check of ``python -m tinyxception --device cuda``, the benchmark's GPU rows and the device-call counter.
On a real GPU the same code runs on CuPy; what only a GPU can show (speed, CUDA's own rounding) is measured by
``benchmarks/bench_xception.py --device cuda``.
"""
import importlib.util
import pathlib
import types

import numpy as np
import pytest

import cupy_stand_in
import tinyxception as tx
import tinyxception.functional as F
from cupy_stand_in import DeviceArray
from tinyxception import backend, cli, optim, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = {"middle_blocks": 1, "width": 1 / 8, "seed": 0}  # the paper network, thinned: 71x71 inputs in milliseconds


@pytest.fixture
def cuda(monkeypatch):
    """The stand-in installed as the backend's CuPy for one test; returns the module the backend hands out."""
    return cupy_stand_in.install(monkeypatch.setattr)


def _device_array(*shape):
    return cupy_stand_in.cupy.asarray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))


# --- the stand-in fails where CuPy fails ----------------------------------------------------------------

@pytest.mark.parametrize("mix", [
    lambda d, h: d * h,
    lambda d, h: h + d,
    lambda d, h: cupy_stand_in.cupy.matmul(d, h),
    lambda d, h: cupy_stand_in.cupy.maximum(h, 0),
    lambda d, h: cupy_stand_in.cupy.add.at(d, [0, 1], h[:2]),
], ids=["device*host", "host+device", "matmul", "host-only-ufunc", "add.at"])
def test_the_stand_in_refuses_to_mix_host_and_device_arrays(mix):
    """A NumPy array inside a device operation is CuPy's 'Unsupported type' error; the stand-in raises it too."""
    with pytest.raises(TypeError, match=r"got a host array \(numpy.ndarray of shape"):
        mix(_device_array(3), np.ones(3, dtype=np.float32))


@pytest.mark.parametrize("call", [
    lambda d: np.pad(d, 1),
    lambda d: np.concatenate([d, d]),
    lambda d: np.einsum("i,i->", d, d),
], ids=["pad", "concatenate", "einsum"])
def test_the_stand_in_refuses_numpy_functions_on_device_arrays(call):
    """``numpy.f(device_array)`` breaks the project's rule; the message names the array module to use."""
    with pytest.raises(TypeError, match=r"numpy\.\w+ was called on a device array: use the array module"):
        call(_device_array(3))


def test_results_of_the_device_module_stay_on_the_device(cuda):
    """New arrays, results, views and full reductions are device arrays (a reduction a 0-d one, as in CuPy),
    and only asnumpy/get bring values back to the host."""
    d = _device_array(2, 3)
    results = [cuda.zeros((2, 2)), cuda.einsum("ij,ij->i", d, d), d.T, d[0], d.reshape(3, 2), d.sum(),
               cuda.sum(d), cuda.maximum(d, 1), d + 1.0, cuda.random.random((2,))]
    assert [type(r) for r in results] == [DeviceArray] * len(results)
    assert results[5].shape == () and float(results[5]) == 15.0
    host = cuda.asnumpy(d)
    assert type(host) is np.ndarray and type(d.get()) is np.ndarray
    np.testing.assert_array_equal(host, np.arange(6).reshape(2, 3))


def test_names_and_keywords_are_checked_against_cupy(monkeypatch):
    """Where CuPy is importable, a NumPy-only name or keyword raises: NumPy's as_strided takes writeable=,
    CuPy's does not. Here a small fake of CuPy's namespace stands in for the real one, so the check runs
    on every machine."""
    def as_strided(x, shape=None, strides=None):
        """CuPy's signature."""
    fake_cupy = types.SimpleNamespace(__version__="fake", zeros=np.zeros,
                                      lib=types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
                                          as_strided=as_strided)))
    monkeypatch.setattr(cupy_stand_in, "real_cupy", fake_cupy)
    xp = cupy_stand_in.StandInCupy()
    d = xp.zeros((4,))
    assert type(xp.lib.stride_tricks.as_strided(d, shape=(2,), strides=(8,))) is DeviceArray
    with pytest.raises(TypeError, match="as_strided does not take these arguments"):
        xp.lib.stride_tricks.as_strided(d, shape=(2,), strides=(8,), writeable=False)
    with pytest.raises(AttributeError, match="has no cupy.ones: NumPy has it"):
        xp.ones


# --- the library on the stand-in ------------------------------------------------------------------------

def _arrays_of_a_training_step(model, optimizer):
    """Every array a training step leaves behind: parameters, gradients, buffers and the optimiser's state."""
    arrays = {f"parameter {name}": p.data for name, p in model.named_parameters()}
    arrays.update({f"gradient of {name}": p.grad for name, p in model.named_parameters()})
    arrays.update({f"buffer {name}": b for name, b in model.named_buffers()})
    arrays.update({f"velocity {i}": state["velocity"] for i, state in enumerate(optimizer.state)})
    return arrays


def _one_training_step(device):
    """A float64 thinned Xception (no dropout: its masks are random) after one SGD-with-momentum step on a fixed
    batch: (model, optimizer, logits, loss)."""
    model = tx.Xception(num_classes=5, dropout=0.0, **TINY).astype("float64").to(device).train()
    rng = np.random.default_rng(0)
    x = tx.tensor(rng.standard_normal((4, 3, 71, 71)), device=device)
    labels = tx.tensor(np.array([0, 1, 2, 4]), device=device)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return model, optimizer, logits, loss


def test_a_training_step_stays_on_the_device_and_matches_the_cpu(cuda):
    """Forward, loss, backward and an SGD step of the network leave every array on the device, and give the
    CPU's numbers. The two paths differ on purpose (on the CPU the 5x5 maps' depthwise convs run channels-last),
    so float64 must agree to rounding: any array that went astray on one path would show here."""
    cpu_model, cpu_optimizer, cpu_logits, cpu_loss = _one_training_step("cpu")
    model, optimizer, logits, loss = _one_training_step("cuda")
    arrays = _arrays_of_a_training_step(model, optimizer)
    left = sorted(name for name, a in arrays.items() if type(a) is not DeviceArray)
    assert left == [] and type(logits.data) is DeviceArray and type(loss.data) is DeviceArray
    np.testing.assert_allclose(loss.numpy(), cpu_loss.numpy(), rtol=1e-10)
    np.testing.assert_allclose(logits.numpy(), cpu_logits.numpy(), rtol=1e-9, atol=1e-12)
    for (name, on_device), on_cpu in zip(arrays.items(), _arrays_of_a_training_step(cpu_model, cpu_optimizer).values()):
        np.testing.assert_allclose(backend.asnumpy(on_device), on_cpu, rtol=1e-8, atol=1e-12, err_msg=name)


def test_fit_with_averages_and_a_checkpoint_on_the_device(cuda, tmp_path):
    """The training loop on "cuda": batches move to the device, the averaged weights stay there, and the
    checkpoint it writes loads into a CPU model with exactly the averaged values."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 3, 24)
    model = tx.Xception.small(num_classes=3, in_channels=1, seed=0, width=1 / 16, middle_blocks=1)
    opt, schedule, ema = train.setup_training(model, "cuda", "sgd", lr=0.05, ema=0.5)
    path = tmp_path / "on-device.npz"
    history = train.fit(model, (images[:16], labels[:16]), (images[16:], labels[16:]), epochs=1, optimizer=opt,
                        batch_size=8, device="cuda", schedule=schedule, ema=ema, checkpoint=path, progress=False)
    assert np.isfinite(history.train_loss[0]) and np.isfinite(history.val_loss[0])
    assert all(type(a) is DeviceArray for a in ema.shadow)
    assert all(type(p.data) is DeviceArray for p in model.parameters())
    restored = tx.Xception.small(num_classes=3, in_channels=1, seed=1, width=1 / 16, middle_blocks=1)
    tx.load(restored, path)
    for averaged, loaded in zip(ema.shadow, restored.parameters()):
        np.testing.assert_array_equal(loaded.numpy(), backend.asnumpy(averaged))


def test_the_paper_check_runs_on_cuda(cuda, capsys):
    """``python -m tinyxception --device cuda``: the paper network on the device, its three checks ok."""
    assert cli.main(["--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "available devices: cpu, cuda" in out and out.count("  ok") == 3
    assert "forward pass on cuda: batch 1 x (3, 299, 299) -> (1, 1000)" in out


def _load_benchmark(name="bench_xception"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_on_cuda_and_has_the_batch_32_rows(cuda, monkeypatch):
    """``bench_xception.py --device cuda`` builds every case, with the batch-32 rows the GPU targets are stated
    for, and times the ones asked for. PyTorch is hidden (the stand-in is no GPU for it), and only one small
    op is timed, to keep this fast: it checks that the script runs, not how fast anything is."""
    bench = _load_benchmark()
    monkeypatch.setattr(bench, "torch", None)
    built = {}
    build = bench.ours_cases
    monkeypatch.setattr(bench, "ours_cases", lambda device: built.setdefault(device, build(device)))
    args = bench.build_parser().parse_args(["--device", "cuda", "--only", "depthwise 3x3, 728", "--warmup", "0",
                                            "--repeats", "1"])
    rows = bench.run(args)
    assert {"eval forward, batch 32", "train step, batch 32"} <= set(built["cuda"])
    assert [row["case"] for row in rows] == ["depthwise 3x3, 728x19x19"]
    assert all(row["tinyxception_ms"] > 0 and row["pytorch_ms"] is None for row in rows)
    assert "GPU CuPy stand-in (NumPy)" in bench.markdown(rows, args)


def test_the_device_call_counter_counts_each_operation(cuda, capsys):
    """``benchmarks/count_device_calls.py`` prints the total of a forward on the stand-in and each operation's share;
    the shares add up to the total, and the multiply-adds of the convolutions and batch norms are among them.
    (The script installs the stand-in for good; the `cuda` fixture has saved what to restore afterwards.)"""
    assert _load_benchmark("count_device_calls").main(["--batch", "1"]) == 0
    first, *rows = capsys.readouterr().out.splitlines()
    counts = {name: int(count) for name, count in (row.split() for row in rows)}
    assert first == f"eval forward, batch 1: {sum(counts.values())} device operations"
    assert counts["multiply"] > 100 and counts["add"] > 100 and counts["matmul"] > 30
