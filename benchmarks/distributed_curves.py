"""Measure validation accuracy against updates and against wall time, for 1 worker and 2 workers (sync and async).

    python benchmarks/distributed_curves.py                  # writes docs/img/distributed_curves.png and .json
    python benchmarks/distributed_curves.py --epochs 6

Each run is the command line on digits (``python -m tinyxception train``, alone or under ``mpiexec -n 2`` with
``--parallel sync|async``), every rank with BLAS on one thread. The epoch lines that rank 0 prints give the
validation accuracy and the seconds of each epoch. One epoch is the same number of updates in every mode
(22 of 64 images: sync splits each batch over the workers, async gives each worker half the epoch), so the
left plot compares what each update is worth and the right one what an hour of machine is worth.
With one worker, sync and async are the same run (nobody to wait for, no staleness): one curve.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"1 worker": (1, None), "2 workers, sync": (2, "sync"), "2 workers, async": (2, "async")}
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+  train loss \S+ acc \S+  val loss \S+ acc ([\d.]+)%  lr \S+  ([\d.]+) s$")


def run(name, epochs):
    """One training run: its per-epoch validation accuracies and seconds, and its closing line."""
    from tinyxception.distributed import mpiexec_command
    workers, mode = RUNS[name]
    command = [sys.executable, "-m", "tinyxception", "train", "--dataset", "digits", "--epochs", str(epochs)]
    command += ["--parallel", mode] if mode else []
    command = mpiexec_command(workers, *command) if workers > 1 else command
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800, check=True)
    lines = result.stdout.replace("\r", "\n").splitlines()
    epochs_seen = [EPOCH_LINE.match(line).groups() for line in lines if EPOCH_LINE.match(line)]
    return {"val_acc": [float(acc) / 100 for _, acc, _ in epochs_seen],
            "seconds": [float(s) for *_, s in epochs_seen], "summary": lines[-1]}


def plot(results, updates_per_epoch, path):
    import matplotlib.figure
    fig = matplotlib.figure.Figure(figsize=(10, 4), layout="constrained")
    by_updates, by_time = fig.subplots(1, 2, sharey=True)
    for name, measured in results.items():
        epochs = range(1, len(measured["val_acc"]) + 1)
        wall = [sum(measured["seconds"][:i]) for i in epochs]
        by_updates.plot([e * updates_per_epoch for e in epochs], measured["val_acc"], "o-", label=name)
        by_time.plot(wall, measured["val_acc"], "o-", label=name)
    for ax, label in ((by_updates, "updates (64 images each)"), (by_time, "wall time (s)")):
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    by_updates.set_ylabel("validation accuracy")
    fig.suptitle("Xception.small on digits, 2-core machine")
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "distributed_curves.png"))
    args = parser.parse_args()
    from tinyxception.train import prepare_data
    updates_per_epoch = len(prepare_data("digits")[0][0]) // 64
    results = {name: run(name, args.epochs) for name in RUNS}
    for name, measured in results.items():
        print(f"{name}: val acc {measured['val_acc']}, epoch seconds {measured['seconds']}\n  {measured['summary']}")
    plot(results, updates_per_epoch, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"updates_per_epoch": updates_per_epoch, "load_average_after": os.getloadavg()[0], "runs": results},
        indent=1) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
