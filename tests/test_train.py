"""Chapter 5, training: the training loop, its command line and the ablation runner.

Exercise: with every kernel of chapters 1-3 your own (``pytest --exercises -m ch5_training``), train the small
network (notebook 07).

Real training runs take minutes (docs/training.md has the measured ones); these
tests check the plumbing on a tiny model in seconds: a couple of optimiser
steps, that evaluation leaves the model as it found it, that the schedule and the
averaged weights are used where they should be, and that the command line fails
with one clear line instead of a traceback.
"""
import subprocess
import sys

import numpy as np
import pytest

import tinyxception as tx
from tinyxception import ablation, data, optim, train
from tinyxception.models import Xception

pytestmark = pytest.mark.ch5_training

THIN = dict(width=1 / 16, middle_blocks=1)


def tiny_model():
    """The 32x32 preset, thinned to a few thousand parameters: fast enough for unit tests."""
    return Xception.small(num_classes=4, in_channels=1, seed=0, **THIN)


class ThinPreset:
    """Stands in for the ``Xception`` name in train/ablation: ``small(...)`` builds a thinned preset, remembered."""

    def __init__(self):
        self.built = []

    def small(self, **options):
        self.built.append(options)
        return Xception.small(**options, **THIN)


@pytest.fixture(scope="module")
def shapes():
    """16 training and 8 validation images of the built-in shapes dataset."""
    x, y = data.make_shapes(24, seed=0)
    return (x[:16], y[:16]), (x[16:], y[16:])


def _weights(model):
    return [p.numpy().copy() for p in model.parameters()]


def test_two_training_steps_change_the_weights_and_record_history(shapes):
    """One epoch of 16 samples at batch 8 is two optimiser steps: every weight moves, the history has one row."""
    model = tiny_model()
    before = _weights(model)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = train.fit(model, *shapes, epochs=1, optimizer=opt, batch_size=8, progress=False, seed=0)
    assert len(history) == 1 and history.epoch == [1]
    assert all(np.isfinite(v[0]) for v in (history.train_loss, history.val_loss))
    assert 0.0 <= history.train_acc[0] <= 1.0 and 0.0 <= history.val_acc[0] <= 1.0
    assert history.time[0] > 0
    moved = [not np.array_equal(a, b) for a, b in zip(before, _weights(model))]
    assert all(moved), f"{moved.count(False)} parameters did not change"


def test_repeated_steps_on_one_batch_drive_the_loss_down(shapes):
    """Forward, cross-entropy, backward and SGD together must be able to fit 8 images (a classic sanity check)."""
    model = tiny_model()
    (x, y), _ = shapes
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = tx.functional.cross_entropy(model(x[:8]), y[:8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_evaluate_restores_the_mode_and_records_no_graph(shapes):
    """evaluate() runs in eval mode without gradients, then leaves the model in the mode it was in."""
    model = tiny_model()
    _, (xv, yv) = shapes
    for mode in (True, False):
        model.train(mode)
        loss, acc = train.evaluate(model, xv, yv, batch_size=3)
        assert model.training is mode and np.isfinite(loss) and 0.0 <= acc <= 1.0
    assert all(p.grad is None for p in model.parameters())


def test_evaluate_accuracy_counts_correct_argmax():
    """A model whose logits are fixed gets exactly the fraction of labels equal to its argmax."""
    model = tiny_model()
    fixed = tx.tensor(np.array([[0.0, 3.0, 1.0, 0.0]], dtype=np.float32))
    model.forward = lambda x: fixed * tx.tensor(np.ones((len(x), 1), dtype=np.float32))
    x = np.zeros((5, 1, 32, 32), dtype=np.float32)
    _, acc = train.evaluate(model, x, np.array([1, 1, 0, 1, 3]), batch_size=2)
    assert acc == pytest.approx(3 / 5)


def test_schedule_is_stepped_per_epoch_or_per_step(shapes):
    """An 'epoch' schedule changes the lr between epochs; a 'step' schedule after every batch."""
    for unit, expected_lrs, final in (("epoch", [0.1, 0.05], 0.025), ("step", [0.1, 0.025], 0.00625)):
        model = tiny_model()
        opt = optim.SGD(model.parameters(), lr=0.1)
        schedule = optim.StepDecay(opt, factor=0.5, every=1, unit=unit)
        history = train.fit(model, *shapes, epochs=2, optimizer=opt, batch_size=8, schedule=schedule,
                            progress=False)
        assert history.lr == pytest.approx(expected_lrs) and opt.lr == pytest.approx(final)


def test_ema_weights_are_evaluated_and_checkpointed_and_live_weights_kept(shapes, tmp_path):
    """With EMA, the checkpoint holds the averaged weights, while the model keeps training its live ones."""
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = optim.ExponentialMovingAverage(model, decay=0.5)
    path = tmp_path / "tiny.npz"
    train.fit(model, *shapes, epochs=1, optimizer=opt, batch_size=8, ema=ema, checkpoint=path, progress=False)
    saved = tiny_model()
    tx.load(saved, path)
    for live, averaged, loaded in zip(model.parameters(), ema.shadow, saved.parameters()):
        np.testing.assert_array_equal(loaded.numpy(), averaged)
    assert any(not np.array_equal(p.numpy(), s) for p, s in zip(model.parameters(), ema.shadow))


def test_progress_falls_back_to_plain_lines_without_tqdm(shapes, monkeypatch, capsys):
    """Without tqdm, progress=True still prints one summary line per epoch."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.05)
    train.fit(model, *shapes, epochs=2, optimizer=opt, batch_size=8)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"] and "val loss" in lines[0]


def test_fit_refuses_a_training_set_smaller_than_a_batch(shapes):
    """With the incomplete batch dropped, a set smaller than one batch would train on nothing: refused."""
    model = tiny_model()
    with pytest.raises(ValueError, match="smaller than one batch"):
        train.fit(model, *shapes, epochs=1, optimizer=optim.SGD(model.parameters(), lr=0.1), batch_size=64)


def test_setup_training_builds_the_paper_schedule_and_optional_averages():
    """The named optimiser, a per-epoch x0.94 every 2 epochs decay, and Polyak averages unless ema is 0."""
    model = tiny_model()
    opt, schedule, ema = train.setup_training(model, "cpu", "rmsprop", lr=0.01, ema=0.99)
    assert isinstance(opt, optim.RMSProp) and opt.lr == 0.01 and opt.params == list(model.parameters())
    assert (schedule.factor, schedule.every, schedule.unit) == (0.94, 2, "epoch")
    assert ema.decay == 0.99 and len(ema.shadow) == len(opt.params)
    assert train.setup_training(model, ema=0)[2] is None


def _history():
    h = train.History()
    h.append(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.1, val_acc=0.4, lr=0.1, time=2.0)
    h.append(epoch=2, train_loss=0.5, train_acc=0.8, val_loss=0.7, val_acc=0.7, lr=0.1, time=3.0)
    return h


def test_history_summaries():
    """best_val_acc is the maximum over epochs, total_time the sum."""
    h = _history()
    assert h.best_val_acc == 0.7 and h.total_time == 5.0 and len(h) == 2


def test_plot_history_writes_a_png(tmp_path):
    """plot_history saves an image file (PNG signature) with matplotlib installed."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "history.png"
    train.plot_history(_history(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_history_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    """Missing matplotlib gives an ImportError telling which extra to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'tinyxception\[plot\]'"):
        train.plot_history(_history(), tmp_path / "x.png")


def test_cli_rejects_an_unknown_dataset_with_a_clear_message():
    """`python -m tinyxception train --dataset nope` exits non-zero, names the valid datasets, no traceback."""
    result = subprocess.run([sys.executable, "-m", "tinyxception", "train", "--dataset", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "nope" in result.stderr and "digits" in result.stderr and "shapes" in result.stderr
    assert "Traceback" not in result.stderr


def _cli(argv):
    from tinyxception import cli
    return cli.main(argv)


def test_cli_missing_extra_is_one_line_and_exit_code_2(monkeypatch, capsys):
    """No scikit-learn: `train --dataset digits` prints one line naming the extra and returns 2, without training."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert _cli(["train", "--dataset", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'tinyxception[digits]'" in err


def test_cli_checks_the_plot_extra_before_training(monkeypatch, capsys):
    """--plot without matplotlib fails at once (exit 2), not after minutes of training."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("training started"))
    assert _cli(["train", "--dataset", "shapes", "--plot", "out.png"]) == 2
    assert "pip install 'tinyxception[plot]'" in capsys.readouterr().err


def test_cli_train_runs_end_to_end(monkeypatch, tmp_path, capsys):
    """The train command on a small shapes set with a tiny model: exit 0, plot and checkpoint written."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(train, "load_dataset", lambda name: data.make_shapes(30, seed=1))
    preset = ThinPreset()
    monkeypatch.setattr(train, "Xception", preset)
    plot, checkpoint = tmp_path / "h.png", tmp_path / "m.npz"
    code = _cli(["train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "8", "--no-progress", "--ema", "0.9",
                 "--plot", str(plot), "--checkpoint", str(checkpoint)])
    assert code == 0 and plot.exists() and checkpoint.exists()
    assert preset.built[0]["bn_momentum"] == train.SHORT_RUN_BN_MOMENTUM
    assert "best validation accuracy" in capsys.readouterr().out


def test_run_ablations_trains_every_variant_for_every_seed(tmp_path, monkeypatch):
    """Four variants (baseline, no residual, ReLU, ELU) per seed, each built from that seed; one table row each."""
    pytest.importorskip("matplotlib")
    preset = ThinPreset()
    monkeypatch.setattr(ablation, "Xception", preset)
    plot = tmp_path / "ablations.png"
    runs = ablation.run_ablations(data.make_shapes(30, seed=2), epochs=1, seeds=(0, 1), batch_size=8, plot=plot,
                                  progress=False)
    names = list(ablation.VARIANTS)
    assert [(r.name, r.seed) for r in runs] == [(n, s) for s in (0, 1) for n in names]
    assert all(len(r.history) == 1 for r in runs)
    built = preset.built
    assert [b.get("residual", True) for b in built[:4]] == [True, False, True, True]
    assert [b.get("intermediate_activation") for b in built[:4]] == [None, None, "relu", "elu"]
    assert [b["seed"] for b in built] == [0] * 4 + [1] * 4
    assert all(b["bn_momentum"] == train.SHORT_RUN_BN_MOMENTUM for b in built)
    table = ablation.format_table(runs).splitlines()
    assert len(table) == 2 + len(names) and all(table[2 + i].startswith(f"| {n} |") for i, n in enumerate(names))
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_ablation_table_averages_over_seeds():
    """The table's mean column is the mean of the per-seed final accuracies, which are listed too."""
    def run(seed, acc):
        h = train.History()
        h.append(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=0.5, val_acc=acc, lr=0.1, time=1.0)
        return ablation.Run("relu", {"intermediate_activation": "relu"}, seed, h)

    row = ablation.format_table([run(0, 0.90), run(1, 0.96)]).splitlines()[2]
    assert "| 93.00% |" in row and "90.0% / 96.0%" in row


def test_run_ablations_rejects_an_unknown_variant():
    """A misspelt variant fails before any training, listing the valid names."""
    with pytest.raises(ValueError, match="baseline, no-residual, relu, elu"):
        ablation.run_ablations(data.make_shapes(8), variants=["baseline", "no-residuals"])
