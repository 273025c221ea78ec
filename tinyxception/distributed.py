"""Data-parallel training over MPI (mpi4py), the two ways the paper trained Xception on 60 GPUs.

Every rank (one process started by ``mpiexec``) holds a full copy of the model and trains on its own shard
of each epoch (``data.batches(..., shard=(rank, size))``).

* Synchronous SGD (the paper's ImageNet runs): ``DistributedOptimizer`` averages the gradients over all
  ranks before every step. Each rank's loss is the mean over its B/N images, so the mean of the N
  per-rank gradients is the gradient of the mean loss over all B images: one step on N ranks is one step
  on the global batch, and every rank stays identical. BatchNorm breaks this unless its batch statistics
  are over the global batch too: ``convert_sync_batchnorm``.
* Asynchronous SGD (the paper's JFT runs): ``AsyncOptimizer`` sends each gradient to a parameter server
  (a thread of rank 0, so with ``mpiexec -n 2`` both ranks compute) that applies it at once and sends
  back its newest weights. No rank waits for another; the price is staleness: a gradient was computed
  on weights that other workers' updates have changed since (``AsyncOptimizer.staleness``).

Arrays travel through host memory as NumPy buffers; CuPy arrays are staged through the host
(docs/distributed.md shows CUDA-aware MPI, which takes device buffers directly). Install the runtime
with ``pip install 'tinyxception[distributed]'`` (mpi4py and the ``mpich`` wheel, which brings ``mpiexec``).
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
import threading
import time
import traceback

from . import backend
from .autograd import Function, Tensor
from .data import import_extra
from .nn import BatchNorm2d

np = backend.cpu_module()

# Gradients are averaged in buckets of at most this many bytes (4 MiB): the paper network's 91 MB of float32
# gradients take 34 Allreduce calls instead of 156 (one per tensor); Xception.small's 0.19 M take one.
BUCKET_BYTES = 4 * 2**20
# Asynchronous messages are awaited by testing every millisecond and sleeping in between: MPICH's blocking
# receive spins on a core, which on a 2-core machine would take the core a worker needs.
POLL_S = 1e-3
# Message tags: to the server (a gradient and the learning rate, or an empty "done"), and back (the weights). The
# server thread of rank 0 receives only GRADIENT, never the weights it sends rank 0's own worker.
GRADIENT, WEIGHTS = 1, 2


def _mpi():
    """mpi4py's MPI module (importing it initialises MPI), or an ImportError naming the extra."""
    return import_extra("mpi4py.MPI", "distributed", "training on many workers")


def world() -> tuple[int, int]:
    """``(rank, size)`` of this process: its number among the ``mpiexec`` processes and how many there are.

    ``(0, 1)`` for a process started without ``mpiexec`` or without mpi4py, so one script runs either way.
    """
    try:
        comm = _mpi().COMM_WORLD
    except ImportError:
        return 0, 1
    return comm.Get_rank(), comm.Get_size()


def mpiexec_command(processes: int, *command: str) -> list[str]:
    """``[mpiexec, -n, N, *command]`` for ``subprocess``; a RuntimeError with the install line without mpiexec.

    The ``mpich`` wheel puts ``mpiexec`` beside the Python of the virtual environment; else it is looked up on PATH.
    """
    found = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if found is None:
        raise RuntimeError(f"mpiexec was not found beside {sys.executable} or on PATH: "
                           "pip install 'tinyxception[distributed]'")
    return [found, "-n", str(processes), *command]


def _allreduce_sum(array):
    """The element-wise sum of ``array`` over all ranks, on the array's device (staged through host memory)."""
    mpi, host = _mpi(), np.ascontiguousarray(backend.asnumpy(array))
    total = np.empty_like(host)
    mpi.COMM_WORLD.Allreduce(host, total, op=mpi.SUM)
    return backend.to_device(total, backend.device_of(array))


def _flat(arrays):
    """The arrays raveled into one new host vector, in order."""
    return np.concatenate([backend.asnumpy(a).ravel() for a in arrays])


def _pieces(vector, params):
    """Cut a flat host vector back into arrays shaped like the parameters' data, each on its parameter's device."""
    offsets = np.cumsum([0] + [p.size for p in params])
    return [backend.to_device(vector[start:stop].reshape(p.shape), p.device)
            for p, start, stop in zip(params, offsets, offsets[1:])]


def _gradients(params):
    """Each parameter's gradient, zeros for one that got none (every rank must send the same layout)."""
    return [p.grad if p.grad is not None else backend.array_module(p.data).zeros_like(p.data) for p in params]


def broadcast_parameters(model, root: int = 0) -> None:
    """Give every rank the parameters and buffers (BatchNorm running statistics) of rank ``root``, in place."""
    comm, state = _mpi().COMM_WORLD, model.state_dict()
    for name, array in state.items():
        state[name] = np.ascontiguousarray(backend.asnumpy(array))
        comm.Bcast(state[name], root=root)
    model.load_state_dict(state)


def buckets(params, bucket_bytes: int = BUCKET_BYTES) -> list[list]:
    """Split the parameters, in their order, into consecutive groups of at most ``bucket_bytes`` each.

    A parameter larger than a bucket gets a bucket of its own. Every rank builds the same buckets, and each
    bucket is one flat buffer in one Allreduce: fewer, larger messages than one per tensor.
    """
    groups = [[]]
    for p in params:
        if groups[-1] and sum(q.data.nbytes for q in groups[-1]) + p.data.nbytes > bucket_bytes:
            groups.append([])
        groups[-1].append(p)
    return groups


class _Wrapper:
    """Shared by the two optimisers: everything but ``step`` is the wrapped optimiser's (``lr``, ``zero_grad``...)."""

    lr = property(lambda self: self.optimizer.lr, lambda self, value: setattr(self.optimizer, "lr", value),
                  doc="The wrapped optimiser's learning rate (a schedule may set it).")

    def __getattr__(self, name):
        return getattr(self.__dict__["optimizer"], name)


class DistributedOptimizer(_Wrapper):
    """Synchronous data-parallel SGD: ``step()`` averages every gradient over all ranks, then steps ``optimizer``.

    The gradients are averaged bucket by bucket (see ``buckets``): flattened into one host buffer, summed over
    the ranks with one Allreduce, divided by the number of ranks and cut back into the parameters' gradients.
    Start every rank from the same weights (``broadcast_parameters``) and they stay equal.
    """

    def __init__(self, optimizer, bucket_bytes: int = BUCKET_BYTES):
        self.optimizer = optimizer
        self.buckets = buckets(optimizer.params, bucket_bytes)

    def average_gradients(self) -> None:
        """Replace every parameter's gradient by its mean over all ranks."""
        size = world()[1]
        for bucket in self.buckets:
            mean = _allreduce_sum(_flat(_gradients(bucket))) / size
            for p, grad in zip(bucket, _pieces(mean, bucket)):
                p.grad = grad

    def step(self) -> None:
        """Average the gradients over the ranks, then take the wrapped optimiser's step."""
        self.average_gradients()
        self.optimizer.step()


class _SyncBatchNorm(Function):
    """Training-mode batch norm over the global batch, with the formulas of functional/norm.py.

    Forward, per channel, M = the global count: mean = sum over ranks of sum(x) / M, then (second pass, as
    the local batch norm) var = sum over ranks of sum((x - mean)^2) / M. Backward: dL/dx needs sum(g) and
    sum(g * xhat) over the whole batch, summed over the ranks too; dgamma = sum(g * xhat) and dbeta = sum(g)
    stay this rank's own sums, because DistributedOptimizer averages them (and every other gradient) later.
    """

    def forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        xp, shape = backend.array_module(x), (1, -1) + (1,) * (x.ndim - 2)
        sums = lambda a: a.sum(axis=(0, *range(2, a.ndim)))  # noqa: E731  per-channel sums of this rank's values
        first = _allreduce_sum(xp.concatenate([sums(x), xp.asarray([x.size // x.shape[1]], dtype=x.dtype)]))
        m, mean = int(first[-1]), first[:-1] / first[-1]
        centred = x - mean.reshape(shape)
        var = _allreduce_sum(sums(centred * centred)) / m
        inv_std = 1 / xp.sqrt(var + eps)
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + (momentum * m / (m - 1)) * var  # unbiased, global M
        self.xhat, self.m, self.sums = centred * inv_std.reshape(shape), m, sums
        self.scale, self.shape = (gamma * inv_std).reshape(shape), shape
        return self.xhat * gamma.reshape(shape) + beta.reshape(shape)

    def backward(self, grad):
        # dL/dx_i = gamma / sigma * (g_i - (sum(g) + xhat_i * sum(g * xhat)) / M), sums over every rank's values
        sum_g, sum_gx = self.sums(grad), self.sums(grad * self.xhat)
        total_g, total_gx = _allreduce_sum(backend.array_module(grad).stack([sum_g, sum_gx]))
        dx = self.scale * (grad - (total_g.reshape(self.shape) + self.xhat * total_gx.reshape(self.shape)) / self.m)
        return dx, sum_gx, sum_g


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch, over all ranks.

    N ranks on B/N images each normalise with exactly the statistics of one batch of B, and update the
    running statistics with them. Evaluation mode uses the running statistics, like BatchNorm2d. Every rank
    must call it the same number of times (it communicates); ``convert_sync_batchnorm`` makes them.
    """

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if x.ndim not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm2d: x must be (N, {self.num_features}, H, W) or (N, "
                             f"{self.num_features}), got shape {tuple(x.shape)}")
        return _SyncBatchNorm.apply(x, self.gamma, self.beta, running_mean=self.running_mean,
                                    running_var=self.running_var, momentum=self.momentum, eps=self.eps)


def convert_sync_batchnorm(model):
    """Turn every BatchNorm2d of ``model`` into a SyncBatchNorm2d, in place, and return the model.

    Each layer keeps its parameters, buffers and settings (only its class changes), so an optimiser already
    made over ``model.parameters()`` still updates the same tensors.
    """
    for module in model.modules():
        if type(module) is BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
    return model


def _wait(request, status=None) -> None:
    """Wait for a non-blocking MPI request, testing every POLL_S seconds instead of spinning."""
    while not request.Test(status):
        time.sleep(POLL_S)


class AsyncOptimizer(_Wrapper):
    """Asynchronous SGD with a parameter server: every rank is a worker, and rank 0 also runs the server.

    ``step()`` sends this rank's gradient (and learning rate) to the server and loads the weights it sends
    back. The server is a thread of rank 0 with its own copy of the weights and of the optimiser (same
    class and settings, fresh state): it takes the gradients in the order they arrive from any worker
    (``MPI.ANY_SOURCE``), applies each one at once with the learning rate its worker sent, and returns the
    weights it has now to that worker. ``staleness`` (rank 0) records, for every applied gradient, how many
    updates the server made between its worker reading the weights and the gradient arriving.

    Make it after ``broadcast_parameters`` (the server starts from rank 0's weights) and call ``close()``
    on every rank when training ends.
    """

    def __init__(self, optimizer):
        rank, size = world()
        self.optimizer, self.staleness, self.server = optimizer, [], None
        if rank == 0:
            self.server = copy.copy(optimizer)
            self.server.params = [Tensor(p.data.copy(), requires_grad=True) for p in optimizer.params]
            self.server.state = [{} for _ in optimizer.params]
            self.thread = threading.Thread(target=self._serve, args=(size,), daemon=True)
            self.thread.start()

    def _serve(self, workers: int) -> None:
        """The server's loop, until every worker has sent an empty message (done)."""
        mpi, params = _mpi(), self.server.params
        comm, status = mpi.COMM_WORLD, mpi.Status()
        message, read_at, done = np.empty(sum(p.size for p in params) + 1, params[0].dtype), [0] * workers, 0
        try:
            while done < workers:
                _wait(comm.Irecv(message, source=mpi.ANY_SOURCE, tag=GRADIENT), status)
                worker = status.Get_source()
                if status.Get_count() == 0:
                    done += 1
                    continue
                self.staleness.append(len(self.staleness) - read_at[worker])  # updates since it read
                for p, grad in zip(params, _pieces(message[:-1], params)):
                    p.grad = grad
                self.server.lr = float(message[-1])
                self.server.step()
                read_at[worker] = len(self.staleness)
                _wait(comm.Isend(_flat([p.data for p in params]), dest=worker, tag=WEIGHTS))
        except BaseException:  # a dead server would leave every worker waiting: end the whole job instead
            traceback.print_exc()
            comm.Abort(1)

    def _send(self, values) -> None:
        message = np.ascontiguousarray(values, dtype=self.params[0].dtype)
        _wait(_mpi().COMM_WORLD.Isend(message, dest=0, tag=GRADIENT))

    def step(self) -> None:
        """Send the gradient and the learning rate to the server; wait for its newest weights and load them."""
        self._send(np.append(_flat(_gradients(self.params)), self.lr))
        fresh = np.empty(sum(p.size for p in self.params), self.params[0].dtype)
        _wait(_mpi().COMM_WORLD.Irecv(fresh, source=0, tag=WEIGHTS))
        for p, weights in zip(self.params, _pieces(fresh, self.params)):
            p.data[...] = weights

    def close(self) -> None:
        """Tell the server this worker is done; rank 0 then waits for every worker and loads the server's
        final weights into the model."""
        self._send(np.zeros(0))
        if self.server is not None:
            self.thread.join()
            for p, final in zip(self.params, self.server.params):
                p.data[...] = final.data


class ParallelRun(contextlib.AbstractContextManager):
    """What ``python -m tinyxception train --parallel sync|async`` changes, on this rank (a context manager).

    One update always takes ``batch_size`` images and one epoch the same number of updates as alone:
    ``sync`` splits each batch over the workers (sync BatchNorm and DistributedOptimizer: the very steps
    of one process, on N workers); ``async`` gives each worker whole batches from its shard of the epoch.
    Alone (size 1) it prints a note and changes nothing; with ``mode=None`` it is silent. A rank that raises
    aborts the whole job (``MPI_Abort``) instead of leaving the others waiting for it.
    """

    def __init__(self, mode: str | None, model, optimizer, batch_size: int):
        self.mode, self.optimizer, self.batch_size, self.global_batch = mode, optimizer, batch_size, batch_size
        self.rank, self.size = world() if mode else (0, 1)
        if mode and self.size == 1:
            print(f"--parallel {mode}: one process (start many with: mpiexec -n 2 python -m tinyxception "
                  f"train --parallel {mode}); training as usual")
        elif self.size > 1 and mode == "sync" and batch_size % self.size:
            raise ValueError(f"--parallel sync splits each batch over the workers: --batch-size {batch_size} "
                             f"is not a multiple of {self.size}")
        elif self.size > 1:
            broadcast_parameters(convert_sync_batchnorm(model) if mode == "sync" else model)
            self.optimizer, self.batch_size = ((DistributedOptimizer(optimizer), batch_size // self.size)
                                               if mode == "sync" else (AsyncOptimizer(optimizer), batch_size))

    def __exit__(self, kind, error, trace):
        if error is not None and self.size > 1:
            traceback.print_exception(error)
            _mpi().COMM_WORLD.Abort(1)
        if error is None and isinstance(self.optimizer, AsyncOptimizer):
            self.optimizer.close()

    def summary(self) -> str:
        """The run's workers, global batch and (async) staleness, for the closing line; "" alone."""
        staleness = getattr(self.optimizer, "staleness", None)
        return "" if self.size == 1 else (f"; {self.size} workers, {self.mode} SGD, global batch {self.global_batch}"
                                          + (f", staleness mean {np.mean(staleness):.2f} max {max(staleness)}"
                                             if staleness else ""))
