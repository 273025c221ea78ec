"""Data-parallel training over MPI (mpi4py + the ``mpich`` wheel), the two ways the paper trained Xception.

Every rank (one ``mpiexec`` process) holds the whole model and trains on its shard of each epoch. Synchronous
SGD (ImageNet): ``DistributedOptimizer`` averages the gradients and ``convert_sync_batchnorm`` gives BatchNorm the
global batch's statistics, so N ranks on B/N images take one process's step on B. Asynchronous SGD (JFT):
``AsyncOptimizer`` sends each gradient to a parameter-server thread on rank 0 and gets its newest weights back;
nobody waits, gradients are stale. Arrays travel as NumPy buffers (CuPy via the host). See docs/distributed.md.
"""

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
from .checks import layer_input
from .data import import_extra
from .nn import BatchNorm2d
from .optim import Optimizer

np = backend.cpu_module()

# Gradients are averaged in buckets of at most this many bytes (4 MiB): the paper network's 91 MB of float32
# gradients take 34 Allreduce calls instead of 156 (one per tensor); Xception.small's 0.19 M take one.
BUCKET_BYTES = 4 * 2**20
# Async messages are tested every millisecond, sleeping between: MPICH's blocking receive spins on a core.
POLL_S = 1e-3
# Tags: to the server (gradient + lr, or empty: done) and back (weights); the server never receives WEIGHTS.
GRADIENT, WEIGHTS = 1, 2


def _mpi():
    """mpi4py's MPI module (importing it initialises MPI), or an ImportError naming the extra."""
    return import_extra("mpi4py.MPI", "distributed", "training on many workers")


def world() -> tuple[int, int]:
    """``(rank, size)``: this process's number among the ``mpiexec`` processes, and their count; ``(0, 1)``
    alone or without mpi4py, so one script runs either way."""
    try:
        comm = _mpi().COMM_WORLD
    except ImportError:
        return 0, 1
    return comm.Get_rank(), comm.Get_size()


def mpiexec_command(processes: int, *command: str) -> list[str]:
    """``[mpiexec, -n, N, *command]``, the mpiexec beside this Python (the wheel's) or on PATH; else a RuntimeError."""
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
    comm, state = _mpi().COMM_WORLD, {name: backend.asnumpy(a) for name, a in model.state_dict().items()}
    for array in state.values():  # state_dict's copies: contiguous, ours to overwrite
        comm.Bcast(array, root=root)
    model.load_state_dict(state)


def buckets(params, bucket_bytes: int = BUCKET_BYTES) -> list[list]:
    """Consecutive groups of the parameters, in order, of at most ``bucket_bytes`` each (or one larger parameter).

    Each bucket is one flat buffer in one Allreduce: fewer, larger messages than one per tensor.
    """
    groups = [[]]
    for p in params:
        if groups[-1] and sum(q.data.nbytes for q in groups[-1]) + p.data.nbytes > bucket_bytes:
            groups.append([])
        groups[-1].append(p)
    return groups


class _Wrapper(Optimizer):
    """Shared by the two optimisers: an Optimizer whose everything but ``step`` is the wrapped optimiser's (``lr``,
    ``params``, ``zero_grad``...)."""

    lr = property(lambda self: self.optimizer.lr, lambda self, value: setattr(self.optimizer, "lr", value),
                  doc="The wrapped optimiser's learning rate (a schedule may set it).")

    def __getattr__(self, name):
        return getattr(self.__dict__["optimizer"], name)


class DistributedOptimizer(_Wrapper):
    """Synchronous data-parallel SGD: ``step()`` averages every gradient over all ranks, then steps ``optimizer``.

    Bucket by bucket (``buckets``): flattened into one host buffer, summed over the ranks by one Allreduce,
    divided by the number of ranks, cut back into the gradients. Ranks that start equal
    (``broadcast_parameters``) stay equal.
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
    """Training-mode batch norm over the global batch (M values per channel), the formulas of functional/norm.py.

    Forward: mean = (sum over ranks of sum(x)) / M, then a second pass, var = (sum over ranks of sum((x-mean)^2)) / M.
    Backward: dL/dx needs sum(g) and sum(g * xhat) over all ranks; dgamma and dbeta stay this rank's own sums
    (DistributedOptimizer averages them with every other gradient).
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
    """BatchNorm2d with the global batch's statistics in training (every rank calls it equally often)."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        x = layer_input(x, self.num_features, self.gamma, "SyncBatchNorm2d", ranks=(4, 2))
        return _SyncBatchNorm.apply(x, self.gamma, self.beta, running_mean=self.running_mean,
                                    running_var=self.running_var, momentum=self.momentum, eps=self.eps)


def convert_sync_batchnorm(model):
    """Turn every BatchNorm2d of ``model`` into a SyncBatchNorm2d, in place (only the class changes: parameters,
    buffers and an optimiser over them stay as they are); returns the model."""
    for module in model.modules():
        if type(module) is BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
    return model


def _wait(request, status=None) -> None:
    """Wait for a non-blocking MPI request, testing every POLL_S seconds instead of spinning."""
    while not request.Test(status):
        time.sleep(POLL_S)


class AsyncOptimizer(_Wrapper):
    """Asynchronous SGD: ``step()`` sends this rank's gradient to the parameter server, loads the weights it returns.

    The server, a thread of rank 0 (so every rank is a worker), has its own copy of the weights and of the
    optimiser (fresh state). It applies gradients as they arrive from ``MPI.ANY_SOURCE``, with the sender's
    learning rate, and answers with its weights; ``staleness`` (rank 0) records, per gradient, the updates made
    since its worker read the weights. Make it after ``broadcast_parameters``; ``close()`` on every rank at the end.
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
        """Tell the server this worker is done; rank 0 then waits for all and loads the server's final weights."""
        self._send(np.zeros(0))
        if self.server is not None:
            self.thread.join()
            for p, final in zip(self.params, self.server.params):
                p.data[...] = final.data


class ParallelRun(contextlib.AbstractContextManager):
    """What ``train --parallel sync|async`` changes on this rank, as a context manager.

    One update takes ``batch_size`` images and an epoch as many updates as alone: ``sync`` splits each batch over
    the workers (with sync BatchNorm: one process's very steps), ``async`` gives each worker whole batches of its
    shard. Alone it notes that and changes nothing (``mode=None``: silently). A rank that raises aborts the whole
    job (``MPI_Abort``) instead of leaving the others waiting for it.
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
