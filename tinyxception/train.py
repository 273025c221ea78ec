"""A training loop: mini-batches, validation each epoch, a progress bar, a history and its plot.

    import tinyxception as tx
    x, y = tx.data.load_digits()
    train, val = tx.data.train_val_split(x, y, val_fraction=0.2, seed=0)
    model = tx.Xception.small(num_classes=10, in_channels=1, seed=0)
    opt = tx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    history = tx.train.fit(model, train, val, epochs=10, optimizer=opt, batch_size=64)
    tx.train.plot_history(history, "digits.png")

Data stay NumPy arrays on the host; each batch is copied to the model's device
just before the forward pass, so the same loop trains on the CPU or a GPU.
The command line front end is ``python -m tinyxception train`` (see ``run_train``).
"""

import contextlib
import dataclasses
import os
import sys
import time

from . import backend, distributed
from . import functional as F
from .autograd import no_grad
from .data import batches, import_extra, load_dataset, train_val_split
from .checks import check_int
from .io import save, target_path
from .models.xception import SMALL_BN_MOMENTUM as SHORT_RUN_BN_MOMENTUM, Xception
from .nn.module import check_module
from .optim import SGD, ExponentialMovingAverage, Optimizer, RMSProp, StepDecay

np = backend.cpu_module()


@dataclasses.dataclass
class History:
    """Per-epoch records of a ``fit`` run; every field is a list with one entry per epoch."""

    epoch: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)
    train_acc: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_acc: list = dataclasses.field(default_factory=list)
    lr: list = dataclasses.field(default_factory=list)
    time: list = dataclasses.field(default_factory=list)

    def append(self, **row) -> None:
        """Add one epoch: a value for every field."""
        if sorted(row) != sorted(vars(self)):
            raise ValueError(f"History.append needs exactly the fields {list(vars(self))}, got {sorted(row)}")
        for name, value in row.items():
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    @property
    def best_val_acc(self) -> float:
        """The highest validation accuracy of any epoch."""
        return max(self.val_acc)

    @property
    def total_time(self) -> float:
        """Wall-clock seconds of all epochs together (training and validation)."""
        return sum(self.time)


def _epoch(model, batch_pairs, device, step=None) -> tuple[float, float]:
    """Forward every ``(x, y)`` batch: the mean cross-entropy loss and the accuracy over all of them.

    ``step(loss)``, when given, trains on each batch's loss (backward and update); when ``batch_pairs`` is a tqdm
    bar it shows the running loss and accuracy.
    """
    loss_sum = correct = count = 0
    for xb, yb in batch_pairs:
        labels = backend.to_device(yb, device)
        logits = model(backend.to_device(xb, device))
        loss = F.cross_entropy(logits, labels)
        if step is not None:
            step(loss)
        loss_sum += loss.item() * len(yb)
        correct += int((logits.data.argmax(axis=1) == labels).sum())
        count += len(yb)
        if hasattr(batch_pairs, "set_postfix"):
            batch_pairs.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
    return loss_sum / count, correct / count


def _samples(data, who: str):
    """data as (x, y) with at least one sample and one label per sample, else a TypeError or ValueError."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(map(backend.is_array, data))):
        raise TypeError(f"{who} must be a pair (x, y) of arrays, got {type(data).__name__}")
    if len(data[0]) == 0 or len(data[0]) != len(data[1]):
        raise ValueError(f"{who} needs at least one sample and one label per sample, got {len(data[0])} samples "
                         f"and {len(data[1])} labels")
    return data


def evaluate(model, x, y, batch_size: int = 256):
    """``(mean loss, accuracy)`` of the model on ``x, y`` in eval mode, without recording a graph.

    The model's train/eval mode is restored afterwards.
    """
    check_module(model, "evaluate")
    _samples((x, y), "evaluate: (x, y)")
    check_int(batch_size, "evaluate: batch_size")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return _epoch(model, batches(x, y, batch_size, shuffle=False), next(iter(model.parameters())).device)
    finally:
        model.train(was_training)


def _progress_bar(batch_pairs, enabled: bool, total: int, desc: str):
    """The batches in a tqdm bar when wanted and tqdm is installed (extra ``progress``), else as they are."""
    if enabled:
        with contextlib.suppress(ImportError):
            from tqdm.auto import tqdm
            return tqdm(batch_pairs, total=total, desc=desc, unit="batch", leave=False, file=sys.stdout)
    return batch_pairs


def fit(model, train_data, val_data, epochs: int, optimizer, batch_size: int = 64, device: str = "cpu",
        schedule: StepDecay | None = None, ema: ExponentialMovingAverage | None = None, progress: bool = True,
        checkpoint=None, seed=None, shard=(0, 1)) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_data = (x, y)``, validating on ``val_data`` each epoch.

    Each epoch reshuffles the training set (reproducibly for a ``seed``) and
    drops the incomplete last batch, so BatchNorm never sees a batch of one.
    ``schedule`` is stepped after every epoch or every batch (its ``unit``);
    ``ema`` is updated after every optimiser step and, when given, validation and
    the checkpoint use the averaged weights (the paper evaluates that way).
    ``checkpoint`` is a path that ``tx.save`` overwrites after each epoch. ``shard=(rank, size)``
    trains on this rank's shard of every epoch (see ``data.batches``).
    The model is moved to ``device`` first; make ``ema`` after moving it (its
    averages live where the weights were), as ``setup_training`` does. With ``progress`` a tqdm bar shows the
    running loss and accuracy and one line per epoch is printed. Returns the per-epoch ``History``.
    Every argument (and the checkpoint's folder) is checked before anything trains: ValueError or TypeError.
    """
    check_module(model, "fit")
    x_train, y_train = _samples(train_data, "fit: train_data")
    _samples(val_data, "fit: val_data")
    check_int(epochs, "fit: epochs")
    check_int(batch_size, "fit: batch_size")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"fit: optimizer must be an Optimizer such as tx.optim.SGD(model.parameters(), lr=0.05), "
                        f"got {type(optimizer).__name__}")
    if not (seed is None or isinstance(seed, np.random.Generator)):
        check_int(seed, "fit: seed (an int, a NumPy Generator or None)", 0)
    if checkpoint is not None:
        target_path(checkpoint, "fit: checkpoint")
    if len(x_train) // shard[1] < batch_size:
        raise ValueError(f"the training set ({len(x_train)} samples / {shard[1]} shard(s)) is smaller than one "
                         f"batch ({batch_size})")

    def train_step(loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update()
        if schedule is not None and schedule.unit == "step":
            schedule.step()

    model.to(backend.check_device(device))
    rng, steps, history = np.random.default_rng(seed), len(x_train) // shard[1] // batch_size, History()
    for epoch in range(1, epochs + 1):
        start, lr = time.perf_counter(), optimizer.lr
        model.train()
        epoch_batches = _progress_bar(batches(x_train, y_train, batch_size, seed=rng, drop_last=True, shard=shard),
                                      progress, steps, f"epoch {epoch}/{epochs}")
        train_loss, train_acc = _epoch(model, epoch_batches, device, train_step)
        if schedule is not None and schedule.unit == "epoch":
            schedule.step()
        with ema.averaged() if ema is not None else contextlib.nullcontext():
            val_loss, val_acc = evaluate(model, *val_data, batch_size=max(batch_size, 256))
            if checkpoint is not None:
                save(model, checkpoint)
        backend.synchronize()
        history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                       lr=lr, time=time.perf_counter() - start)
        if progress:
            print(f"epoch {epoch}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}  "
                  f"val loss {val_loss:.4f} acc {val_acc:.2%}  lr {lr:.4g}  {history.time[-1]:.1f} s", flush=True)
    return history


def style_epoch_axes(ax, ylabel: str) -> None:
    """The shared look of every per-epoch plot: whole-number epochs on x, a label on y, a grid, a legend."""
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_history(history: History, path, title: str | None = None) -> None:
    """Save loss and accuracy curves (train and validation per epoch) to an image file (extra ``plot``)."""
    if not isinstance(history, History):
        raise TypeError(f"plot_history: history must be the History that fit returns, got {type(history).__name__}")
    figure_module = import_extra("matplotlib.figure", "plot", "plotting")
    fig = figure_module.Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "acc", "accuracy")):
        ax.plot(history.epoch, getattr(history, f"train_{metric}"), "o-", label="train")
        ax.plot(history.epoch, getattr(history, f"val_{metric}"), "s-", label="validation")
        style_epoch_axes(ax, label)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)


# --- command line: python -m tinyxception train ... -----------------------------------------------

EMA_DECAY = 0.99
"""Decay of the Polyak averages that the command line evaluates by default (with TensorFlow's warm-up,
``ExponentialMovingAverage``): on digits they lift validation accuracy from 99.2% to 99.7% and smooth its
curve; see docs/training.md."""

OPTIMIZERS = {
    "sgd": lambda params, lr: SGD(params, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda params, lr: RMSProp(params, lr=lr),
}


def prepare_data(dataset, val_fraction: float = 0.2, seed=0):
    """Split a dataset (a name from ``DATASETS`` or ``(x, y)`` arrays): ``(train, val, num_classes, in_channels)``."""
    x, y = load_dataset(dataset) if isinstance(dataset, str) else dataset
    train, val = train_val_split(x, y, val_fraction=val_fraction, seed=seed)
    return train, val, int(y.max()) + 1, x.shape[1]


def data_from_args(args):
    """Check the extras and the files to write (a ``--plot`` without an extension gets ".png", as matplotlib
    would add), then load ``(x, y)``. A problem raises, before anything trains, an error that ``cli.run_job``
    prints as one line (exit code 2); it has checked the device already."""
    if args.plot:
        import_extra("matplotlib.figure", "plot", "--plot")
        args.plot += "" if os.path.splitext(args.plot)[1] else ".png"
    for option in ("plot", "checkpoint"):
        if getattr(args, option, None):
            target_path(getattr(args, option), f"--{option}")
    if getattr(args, "parallel", None):
        import_extra("mpi4py.MPI", "distributed", "--parallel")
    return load_dataset(args.dataset)


def setup_training(model, device: str = "cpu", optimizer: str = "sgd", lr: float = 0.05, lr_decay: float = 0.94,
                   decay_every: int = 2, ema: float | None = EMA_DECAY):
    """Move the model to ``device``, then make ``(optimizer, schedule, averages)`` for ``fit``.

    The optimiser comes from ``OPTIMIZERS``, the schedule is a per-epoch ``StepDecay``
    and the averages an ``ExponentialMovingAverage`` of decay ``ema`` (None when
    ``ema`` is 0 or None). Moving first puts the averages on the model's device.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"setup_training: optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    model.to(device)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr)
    averages = ExponentialMovingAverage(model, decay=ema) if ema else None
    return opt, StepDecay(opt, factor=lr_decay, every=decay_every), averages


def run_train(args) -> int:
    """Run ``python -m tinyxception train``: exit code 0 (a missing extra or a bad setting raises: ``cli.run_job``)."""
    train, val, num_classes, in_channels = prepare_data(data_from_args(args), args.val_fraction, args.seed)
    model = Xception.small(num_classes=num_classes, in_channels=in_channels, seed=args.seed,
                           bn_momentum=args.bn_momentum)
    optimizer, schedule, ema = setup_training(model, args.device, args.optimizer, args.lr, args.lr_decay,
                                              args.decay_every, args.ema)
    with distributed.ParallelRun(args.parallel, model, optimizer, args.batch_size) as run:
        root = run.rank == 0  # only rank 0 prints and writes files
        history = fit(model, train, val, args.epochs, run.optimizer, batch_size=run.batch_size, device=args.device,
                      schedule=schedule, ema=ema, progress=args.progress and root,
                      checkpoint=args.checkpoint if root else None, seed=args.seed, shard=(run.rank, run.size))
    if not root:
        return 0
    print(f"best validation accuracy {history.best_val_acc:.2%}, final {history.val_acc[-1]:.2%}, "
          f"{history.total_time:.1f} s in total{run.summary()}")
    if args.plot:
        plot_history(history, args.plot, title=f"Xception.small on {args.dataset}")
        print(f"saved {args.plot}")
    return 0
