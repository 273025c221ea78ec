"""Data-parallel training over MPI: synchronous SGD with sync BatchNorm, asynchronous SGD with a parameter server.

The MPI tests start ``mpiexec -n 2 python tests/mpi_programs.py NAME`` (or the command line) in a subprocess
with a timeout, so a rank that hangs fails the test instead of stalling the suite. They need the extra
``distributed`` (mpi4py and the ``mpich`` wheel, part of the ``test`` extra) and skip, saying so, without it.
The others run in this process, where ``world()`` is ``(0, 1)``.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyxception as tx
from tinyxception import cli, data, distributed, train
from tinyxception.optim import SGD

from gradcheck import check_gradients

pytestmark = pytest.mark.ch5_training

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).with_name("mpi_programs.py")
TIMEOUT_S = 240  # far above the slowest run (the async digits run, ~40 s alone); it only stops a hang
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SINGLE_PROCESS_EPOCHS = 3
"""Epochs the single-process `train --dataset digits` needs to reach 95% validation accuracy: measured 3
(90.25% after 2, 98.33% after 3; docs/distributed.md). The async run gets these plus 2."""


def mpiexec(*command, timeout=TIMEOUT_S):
    """Run ``command`` on 2 ranks; the CompletedProcess (stdout and stderr together in .stdout)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install -e '.[distributed]'")
    env = {**os.environ, **ONE_BLAS_THREAD}
    return subprocess.run(distributed.mpiexec_command(2, sys.executable, *command), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def program(name, *options):
    """Run one program of tests/mpi_programs.py on 2 ranks and return the JSON its rank 0 printed."""
    result = mpiexec(str(PROGRAMS), name, *options)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exactness():
    return program("exactness")


def test_two_ranks_with_sync_batchnorm_take_exactly_the_single_process_step(exactness):
    """float64 Xception.small: one DistributedOptimizer(SGD) step on 2 ranks x 4 images, with
    convert_sync_batchnorm, leaves the weights, gradients and BN running statistics of one step on the 8 images
    in one process, to 1e-10.

    Why it must hold: each rank's loss is the mean over its 4 images, so the mean of the two ranks' gradients is
    the gradient of the mean loss over all 8; and sync BN normalises with the statistics of all 8 images (and
    updates the running variance with the global count 8 * H * W). Only the order of the floating-point sums
    differs. The gradients go through several buckets (64 KiB each), so bucketing is covered too.
    """
    assert exactness["buckets"] > 1
    for name, difference in exactness["sync_bn"].items():
        assert difference < 1e-10, f"{name} differ by {difference:.3g} from the single-process step"


def test_without_sync_batchnorm_the_step_differs(exactness):
    """Without sync BN the same step is NOT the single-process one: each rank normalises its 4 images with their
    own mean and variance, not those of the 8, so activations, gradients and running statistics all change.

    The differences are of the size of the values themselves (about 0.1 for the weights after one step of lr 0.1),
    far above rounding, so a test that forgot to shard the data or to average the gradients could not pass here.
    """
    for name, difference in exactness["local_bn"].items():
        assert difference > 1e-4, f"{name}: only {difference:.3g} apart, although the BN statistics differ"


def test_parameter_server_applies_every_gradient_once_and_records_staleness():
    """Two workers send 15 plain-SGD gradients each to the parameter server on rank 0.

    Every gradient is applied exactly once: the final weights equal the start minus lr times the sum of all 30
    gradients (float32 rounding apart), and 30 staleness values are recorded. With two workers racing, some
    gradient must find the other's update applied since it read its weights: staleness > 0 (and never < 0).
    """
    report = program("async_sum")
    staleness = report["staleness"]
    assert len(staleness) == 30 and min(staleness) >= 0 and max(staleness) > 0, staleness
    assert report["final_error"] < 1e-5


@pytest.mark.slow
def test_async_training_on_digits_reaches_95_percent_within_two_extra_epochs():
    """`mpiexec -n 2 python -m tinyxception train --dataset digits --parallel async` for the single-process
    epochs + 2: validation accuracy reaches 95%; only rank 0 prints (one line per epoch); the closing line names
    the workers, the global batch and a staleness above 0 (two workers always race for the server).
    """
    epochs = SINGLE_PROCESS_EPOCHS + 2
    result = mpiexec("-m", "tinyxception", "train", "--dataset", "digits", "--epochs", str(epochs),
                     "--parallel", "async", "--no-progress", "--seed", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert result.stdout.count("best validation accuracy") == 1, result.stdout
    assert "2 workers, async SGD, global batch 64, staleness mean" in summary, summary
    assert int(re.search(r"max (\d+)", summary).group(1)) > 0, summary
    best = float(re.search(r"best validation accuracy ([\d.]+)%", summary).group(1)) / 100
    assert best >= 0.95, summary


@pytest.mark.slow
def test_sync_training_on_the_command_line_splits_each_batch_over_the_workers():
    """`train --parallel sync` on 2 ranks for one epoch: exit 0, rank 0 alone prints the closing line, which
    names 2 workers and the global batch of 64 (32 images on each rank per step)."""
    result = mpiexec("-m", "tinyxception", "train", "--dataset", "digits", "--epochs", "1", "--parallel", "sync",
                     "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("best validation accuracy") == 1, result.stdout
    assert "; 2 workers, sync SGD, global batch 64" in result.stdout


def test_a_killed_rank_ends_the_job_instead_of_hanging():
    """Rank 1 is killed (SIGKILL) while rank 0 waits for it in the gradient Allreduce: mpiexec notices the death,
    ends rank 0 too and reports which signal killed the job, well within the timeout, with a non-zero exit code."""
    result = mpiexec(str(PROGRAMS), "dies", "kill", timeout=60)
    assert result.returncode != 0
    assert "BAD TERMINATION" in result.stdout and "signal 9" in result.stdout, result.stdout + result.stderr


def test_a_rank_that_raises_aborts_the_whole_job():
    """Rank 1 raises inside a ParallelRun while rank 0 waits in an Allreduce: the traceback is printed and
    MPI_Abort ends every rank (a plain exit would leave rank 0 waiting forever)."""
    result = mpiexec(str(PROGRAMS), "dies", "raise", timeout=60)
    assert result.returncode != 0
    assert "RuntimeError: rank 1 fails on purpose" in result.stderr and "MPI_Abort" in result.stderr, result.stderr


# --- in this process: world() is (0, 1) --------------------------------------------------------------------------

def test_world_alone_is_rank_0_of_1():
    """Without mpiexec (or without mpi4py) the process is rank 0 of a world of 1, so one script runs either way."""
    assert distributed.world() == (0, 1)


def test_parallel_alone_says_so_and_trains_as_usual(monkeypatch, capsys):
    """`train --parallel sync` started without mpiexec prints a note saying how to start workers, then trains as
    one process would (exit 0, the usual closing line, no worker count)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install -e '.[distributed]'")
    monkeypatch.setattr(train, "load_dataset", lambda name: data.make_shapes(30, seed=1))
    monkeypatch.setattr(train, "Xception", ThinPreset)
    assert cli.main(["train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "8", "--no-progress",
                        "--parallel", "sync"]) == 0
    out = capsys.readouterr().out
    assert "--parallel sync: one process (start many with: mpiexec -n 2" in out
    assert "best validation accuracy" in out and "workers" not in out.splitlines()[-1]


class ThinPreset:
    """Stands in for ``Xception`` in train: ``small(...)`` builds a thin preset that trains in a second."""

    @staticmethod
    def small(**options):
        return tx.Xception.small(**options, width=1 / 16, middle_blocks=1)


def test_parallel_without_the_extra_is_one_line_naming_it(monkeypatch, capsys):
    """No mpi4py: `train --parallel async` prints one line with the install command and exits 2 before
    training (under mpiexec every process would otherwise train alone on all the data)."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(["train", "--dataset", "shapes", "--parallel", "async"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'tinyxception[distributed]'" in err


def test_missing_mpiexec_is_a_message_with_the_install_command(monkeypatch, tmp_path):
    """No mpiexec beside the Python or on PATH: mpiexec_command raises one clear line saying what to install."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"mpiexec was not found .* pip install 'tinyxception\[distributed\]'"):
        distributed.mpiexec_command(2, "python")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), size=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_epoch_shards_are_disjoint_equal_and_cover_one_shuffle(n, size, seed):
    """With one seed, the ranks' shards of an epoch are disjoint, of equal sizes, and together the whole shuffled
    order except its last n % size samples, rank r taking every size-th sample from position r."""
    x, y = np.arange(n)[:, None], np.arange(n)
    shards = [np.concatenate([yb for _, yb in data.batches(x, y, 3, seed=seed, shard=(rank, size))] or [[]])
              for rank in range(size)]
    order = np.concatenate([yb for _, yb in data.batches(x, y, n, seed=seed)])
    assert all(len(s) == n // size for s in shards)
    for rank, shard in enumerate(shards):
        np.testing.assert_array_equal(shard, order[:n - n % size][rank::size])


def test_a_shard_outside_the_world_is_refused():
    """shard=(rank, size) needs 0 <= rank < size; anything else is a clear ValueError, not an empty epoch."""
    with pytest.raises(ValueError, match=r"shard must be \(rank, size\) with 0 <= rank < size, got \(2, 2\)"):
        next(data.batches(np.zeros((4, 1)), np.zeros(4), 2, shard=(2, 2)))


def test_buckets_keep_the_parameter_order_and_the_size_limit():
    """Buckets are consecutive runs of the parameters in order, each at most bucket_bytes unless one parameter
    alone is larger (then it is alone): every rank builds the same buckets from the same model."""
    params = list(tx.Xception.small(num_classes=10, in_channels=1, seed=0).parameters())
    groups = distributed.buckets(params, 64 * 1024)
    assert [id(p) for g in groups for p in g] == [id(p) for p in params]
    for group in groups:
        assert len(group) == 1 or sum(p.data.nbytes for p in group) <= 64 * 1024
    assert len(distributed.buckets(params)) == 1  # the default 4 MiB holds all 0.19 M float32 gradients


def test_distributed_optimizer_forwards_the_learning_rate_both_ways():
    """A schedule may wrap either optimiser: setting lr on the DistributedOptimizer sets the wrapped one's, and
    reading it reads the wrapped one's (else a StepDecay would silently never decay the real rate)."""
    model = tx.nn.Linear(3, 2)
    inner = SGD(model.parameters(), lr=0.1)
    outer = distributed.DistributedOptimizer(inner)
    tx.optim.StepDecay(outer, factor=0.5, every=1).step()
    assert inner.lr == outer.lr == 0.05


def _sync_bn(x, gamma, beta):
    layer = distributed.convert_sync_batchnorm(tx.nn.BatchNorm2d(x.shape[1]).astype("float64"))
    return distributed._SyncBatchNorm.apply(x, gamma, beta, running_mean=layer.running_mean,
                                           running_var=layer.running_var, momentum=0.1, eps=1e-3)


def test_sync_batchnorm_alone_is_batchnorm_forward_backward_and_running_statistics(device):
    """On one rank the global batch is the local one, so SyncBatchNorm2d must equal BatchNorm2d exactly:
    outputs, the gradients of x, gamma and beta, and the running mean and (unbiased) variance after the step.
    On the GPU path too: the sums it reduces go through host memory and come back to the device."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install -e '.[distributed]'")
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 2 + 1
    layers = [tx.nn.BatchNorm2d(3, momentum=0.1).astype("float64").to(device) for _ in range(2)]
    distributed.convert_sync_batchnorm(layers[1])
    assert type(layers[1]) is distributed.SyncBatchNorm2d
    results = []
    for layer in layers:
        inputs = tx.tensor(x, requires_grad=True, device=device)
        out = layer(inputs)
        (out * out).sum().backward()
        results.append([out.data, inputs.grad, layer.gamma.grad, layer.beta.grad, layer.running_mean,
                        layer.running_var])
    for local, synced in zip(*results):
        assert tx.backend.device_of(synced) == device
        np.testing.assert_allclose(tx.backend.asnumpy(synced), tx.backend.asnumpy(local), rtol=1e-12, atol=1e-12)


def test_sync_batchnorm_gradients_match_central_differences():
    """The backward of the sync batch norm Function (its own formulas, not the local BN's), float64 central
    differences for x, gamma and beta."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install -e '.[distributed]'")
    rng = np.random.default_rng(1)
    check_gradients(_sync_bn, rng.standard_normal((3, 2, 2, 2)), rng.uniform(0.5, 2, 2), rng.standard_normal(2))


def test_sync_batchnorm_refuses_a_wrong_channel_count():
    """A SyncBatchNorm2d for 3 channels given 4 says what it expected and what it got."""
    layer = distributed.convert_sync_batchnorm(tx.nn.BatchNorm2d(3))
    expected = r"SyncBatchNorm2d: expected x with 3 input channels.*got shape \(2, 4, 2, 2\)"
    with pytest.raises(ValueError, match=expected):
        layer(np.zeros((2, 4, 2, 2), np.float32))
