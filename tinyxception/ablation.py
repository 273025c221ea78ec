"""The paper's two ablations, in small: residual connections (Fig. 9) and an activation inside
the separable convolution (Fig. 10).

For each seed, every variant trains the 32x32 preset ``Xception.small`` from that
seed's initial weights, on that seed's split, with the same optimiser, schedule,
batch order and number of epochs; only the knob under study changes:

* Fig. 9: ``residual=True`` (baseline) against ``residual=False``;
* Fig. 10: ``intermediate_activation=None`` (baseline) against ``"relu"`` and ``"elu"``
  between the depthwise and the pointwise convolution.

The paper's finding on ImageNet: residual connections speed up convergence and
improve the final accuracy, and no intermediate activation works best. One seed
on a small validation set is noisy, so the table reports every seed and the plot
shows the spread.

    runs = run_ablations("digits", epochs=6, seeds=(0, 1, 2), plot="ablations.png")
    print(format_table(runs))
"""

import dataclasses

from . import backend
from .data import import_extra
from .models.xception import Xception
from .arguments import add_common_arguments, int_at_least
from .train import (EMA_DECAY, SHORT_RUN_BN_MOMENTUM, History, data_from_args, fit, prepare_data, setup_training,
                    style_epoch_axes)

np = backend.cpu_module()

VARIANTS = {
    "baseline": {},
    "no-residual": {"residual": False},
    "relu": {"intermediate_activation": "relu"},
    "elu": {"intermediate_activation": "elu"},
}
"""Model options of each variant; the baseline is the paper's network (residual, no intermediate activation)."""

FIGURES = {
    "Fig. 9: residual connections": {"baseline": "residual", "no-residual": "no residual"},
    "Fig. 10: activation between depthwise and pointwise": {"baseline": "none", "relu": "ReLU", "elu": "ELU"},
}
"""Which variants each panel of the plot compares, with their curve labels."""


@dataclasses.dataclass
class Run:
    """One trained variant for one seed: its name, the model options it changed, the seed, its history."""

    name: str
    options: dict
    seed: int
    history: History

    final_val_acc = property(lambda self: self.history.val_acc[-1], doc="Validation accuracy after the last epoch.")
    best_val_acc = property(lambda self: self.history.best_val_acc, doc="Best validation accuracy of any epoch.")
    final_val_loss = property(lambda self: self.history.val_loss[-1], doc="Validation loss after the last epoch.")
    seconds = property(lambda self: self.history.total_time, doc="Wall-clock training + validation time.")


def run_ablations(dataset="digits", epochs: int = 6, seeds=(0,), batch_size: int = 64, lr: float = 0.05,
                  optimizer: str = "sgd", lr_decay: float = 0.94, decay_every: int = 2, val_fraction: float = 0.2,
                  device: str = "cpu", variants=None, plot=None, progress: bool = True,
                  bn_momentum: float | None = SHORT_RUN_BN_MOMENTUM, ema: float | None = EMA_DECAY) -> list[Run]:
    """Train each variant (default: all of ``VARIANTS``) once per seed with one budget; optionally plot.

    ``dataset`` is a name from ``data.DATASETS`` or ``(x, y)`` arrays; a seed fixes
    the split, the batch order and the initial weights. The other settings are
    those of ``train.fit`` and ``train.setup_training`` (``ema``: validate Polyak
    averages, as the paper does), shared by all runs; ``bn_momentum`` overrides the
    preset's (None keeps it; see ``train.SHORT_RUN_BN_MOMENTUM``).
    """
    names = list(variants or VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid names: {', '.join(VARIANTS)}")
    shared = {} if bn_momentum is None else {"bn_momentum": bn_momentum}
    runs = []
    for seed in seeds:
        train, val, num_classes, in_channels = prepare_data(dataset, val_fraction, seed)
        for name in names:
            options = VARIANTS[name]
            if progress:
                print(f"--- {name} {options or '(residual, no intermediate activation)'}, seed {seed}", flush=True)
            model = Xception.small(num_classes=num_classes, in_channels=in_channels, seed=seed, **shared, **options)
            opt, schedule, averages = setup_training(model, device, optimizer, lr, lr_decay, decay_every, ema)
            history = fit(model, train, val, epochs, opt, batch_size=batch_size, device=device, schedule=schedule,
                          ema=averages, progress=progress, seed=seed)
            runs.append(Run(name, options, seed, history))
    if plot:
        plot_ablations(runs, plot)
    return runs


def by_variant(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs grouped by variant name, in the order the variants first appear."""
    groups = {}
    for run in runs:
        groups.setdefault(run.name, []).append(run)
    return groups


def format_table(runs: list[Run]) -> str:
    """A Markdown table, one row per variant: validation accuracy (mean and per seed), loss, time."""
    lines = ["| variant | model options | final val acc, mean | per seed | best val acc, mean | "
             "final val loss, mean | time per run (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, group in by_variant(runs).items():
        options = ", ".join(f"{k}={v!r}" for k, v in group[0].options.items()) or "(paper defaults)"
        per_seed = " / ".join(f"{r.final_val_acc:.1%}" for r in group)
        final, best, loss, seconds = np.mean([[r.final_val_acc, r.best_val_acc, r.final_val_loss, r.seconds]
                                              for r in group], axis=0)
        lines.append(f"| {name} | {options} | {final:.2%} | {per_seed} | {best:.2%} | {loss:.4f} | {seconds:.0f} |")
    return "\n".join(lines)


def plot_ablations(runs: list[Run], path) -> None:
    """Validation accuracy per epoch, one panel per paper figure: mean over seeds, band from min to max."""
    figure_module = import_extra("matplotlib.figure", "plot", "plotting")
    groups = by_variant(runs)
    panels = {title: {n: label for n, label in curves.items() if n in groups} for title, curves in FIGURES.items()}
    panels = {title: curves for title, curves in panels.items() if curves}
    fig = figure_module.Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for ax, (title, curves) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for name, label in curves.items():
            epochs = groups[name][0].history.epoch
            acc = np.array([run.history.val_acc for run in groups[name]])
            line, = ax.plot(epochs, acc.mean(axis=0), "o-", label=label)
            if len(acc) > 1:
                ax.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=line.get_color(), alpha=0.15)
        ax.set_title(title)
        style_epoch_axes(ax, "validation accuracy")
    seeds = len(next(iter(groups.values())))
    if seeds > 1:
        fig.suptitle(f"mean of {seeds} seeds; shaded: lowest to highest")
    fig.savefig(path, dpi=120)


def add_ablation_arguments(parser) -> None:
    """Options of ``python -m tinyxception ablation``."""
    add_common_arguments(parser, epochs=6)
    parser.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0],
                        help="one run per variant and seed; each seed fixes split, batch order and weights")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="which variants to train (default: all)")
    parser.add_argument("--plot", default="ablations.png", metavar="PNG",
                        help="save the validation curves here (extra 'plot'); '' for none")


def run_ablation(args) -> int:
    """Run ``python -m tinyxception ablation``: print the Markdown table, then plot (errors: ``cli.run_job``)."""
    dataset = data_from_args(args)  # first: it checks the options (and may complete --plot's name)
    runs = run_ablations(**{**vars(args), "dataset": dataset, "plot": None})  # the options are its parameters
    print(format_table(runs))  # before plotting: a failed plot still leaves the results on screen
    if args.plot:
        plot_ablations(runs, args.plot)
        print(f"saved {args.plot}")
    return 0
