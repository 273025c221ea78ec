"""Programs that tests/test_distributed.py runs under ``mpiexec -n 2 python tests/mpi_programs.py NAME``.

Each one prints a JSON line on rank 0 with what it measured; the test makes the assertions, so a failure
reads as a pytest message with the numbers in it.
"""
import json
import os
import signal
import sys

import numpy as np

import tinyxception as tx
import tinyxception.functional as F
from tinyxception import distributed
from tinyxception.optim import SGD


def _step(model, optimizer, x, y):
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _max_difference(a, b):
    return max(float(np.max(np.abs(tx.backend.asnumpy(u) - tx.backend.asnumpy(v)))) for u, v in zip(a, b))


def exactness():
    """One DistributedOptimizer(SGD) step of Xception.small in float64 on this rank's share of 8 images, with and
    without sync BatchNorm, against one single-process step on all 8 (computed here on every rank)."""
    from mpi4py import MPI
    rank, size = distributed.world()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 32, 32)), rng.integers(0, 10, 8)
    share = slice(rank * 8 // size, (rank + 1) * 8 // size)

    def stepped(sync_bn, ranks):
        model = tx.Xception.small(num_classes=10, in_channels=1, seed=rank if ranks else 0).astype("float64")
        optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
        if ranks:  # seeded by rank: broadcast_parameters must make them equal
            distributed.broadcast_parameters(distributed.convert_sync_batchnorm(model) if sync_bn else model)
            optimizer = distributed.DistributedOptimizer(optimizer, bucket_bytes=64 * 1024)
        _step(model, optimizer, x[share] if ranks else x, y[share] if ranks else y)
        return model, optimizer

    reference, _ = stepped(False, ranks=False)
    report = {}
    for sync_bn in (True, False):
        model, optimizer = stepped(sync_bn, ranks=True)
        differences = {
            "weights": _max_difference([p.data for p in model.parameters()], [p.data for p in reference.parameters()]),
            "gradients": _max_difference([p.grad for p in model.parameters()], [p.grad for p in reference.parameters()]),
            "running statistics": _max_difference([a for _, a in model.named_buffers()],
                                                  [a for _, a in reference.named_buffers()]),
        }
        worst = {name: MPI.COMM_WORLD.allreduce(value, op=MPI.MAX) for name, value in differences.items()}
        report["sync_bn" if sync_bn else "local_bn"] = worst
        report["buckets"] = len(optimizer.buckets)
    if rank == 0:
        print(json.dumps(report))


def async_sum():
    """Plain SGD through the parameter server: every worker takes 15 steps on its own data; the server's final
    weights must be the start minus lr times the sum of every gradient sent, each applied once."""
    from mpi4py import MPI
    rank, _ = distributed.world()
    model = tx.nn.Linear(16, 4, rng=np.random.default_rng(0))
    start = [p.numpy().copy() for p in model.parameters()]
    optimizer = distributed.AsyncOptimizer(SGD(model.parameters(), lr=0.1))
    rng = np.random.default_rng(1 + rank)
    sent = [np.zeros_like(w) for w in start]
    for _ in range(15):
        x, y = rng.standard_normal((32, 16), dtype=np.float32), rng.integers(0, 4, 32)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for total, p in zip(sent, model.parameters()):
            total += 0.1 * p.grad
        optimizer.step()
    optimizer.close()
    sent = [MPI.COMM_WORLD.reduce(total, op=MPI.SUM, root=0) for total in sent]
    if rank == 0:
        expected = [w - total for w, total in zip(start, sent)]
        print(json.dumps({"staleness": optimizer.staleness,
                          "final_error": _max_difference([p.data for p in model.parameters()], expected)}))


def dies(how):
    """Rank 1 dies (SIGKILL) or raises inside a ParallelRun while rank 0 waits for it in an Allreduce."""
    rank, _ = distributed.world()
    model = tx.nn.Linear(4, 2, rng=np.random.default_rng(0))
    with distributed.ParallelRun("sync", model, SGD(model.parameters(), lr=0.1), batch_size=2) as run:
        if rank == 1 and how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if rank == 1:
            raise RuntimeError("rank 1 fails on purpose")
        _step(model, run.optimizer, np.ones((1, 4), np.float32), np.zeros(1, np.int64))


if __name__ == "__main__":
    name, *options = sys.argv[1:]
    {"exactness": exactness, "async_sum": async_sum, "dies": dies}[name](*options)
