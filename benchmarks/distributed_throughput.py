"""Training throughput on one machine: 1 rank with BLAS on 2 threads against 2 ranks with BLAS on 1 thread each.

    python benchmarks/distributed_throughput.py              # the table (needs the extra 'distributed')
    python benchmarks/distributed_throughput.py --steps 20 --repeats 3

Each configuration trains Xception.small on digits (32x32, global batch 64) for a few warm-up steps, then
times ``--steps`` steps; images per second = images trained by all ranks / the slowest rank's seconds.
The configurations take turns ``--repeats`` times, so a load that comes and goes on a shared machine
touches all of them; the table shows each one's median and its range. docs/distributed.md quotes the numbers.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WARMUP_STEPS = 2
CONFIGURATIONS = {  # name -> (ranks, BLAS threads per rank, --parallel mode)
    "1 rank, BLAS 1 thread": (1, 1, None),
    "1 rank, BLAS 2 threads": (1, 2, None),
    "2 ranks sync, BLAS 1 thread each": (2, 1, "sync"),
    "2 ranks async, BLAS 1 thread each": (2, 1, "async"),
}


def endless_batches(x, y, batch_size, shard):
    """This rank's batches of epoch after epoch (a new shuffle each epoch)."""
    from tinyxception.data import batches
    epoch = 0
    while True:
        yield from batches(x, y, batch_size, seed=epoch, drop_last=True, shard=shard)
        epoch += 1


def worker(mode, steps):
    """One rank: set up as `train --parallel MODE` does, train, print images per second (rank 0, JSON)."""
    import tinyxception as tx
    import tinyxception.functional as F
    from tinyxception import distributed
    x, y = tx.data.load_digits()
    model = tx.Xception.small(num_classes=10, in_channels=1, seed=0)
    optimizer = tx.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    with distributed.ParallelRun(mode, model, optimizer, 64) as run:
        data = endless_batches(x, y, run.batch_size, (run.rank, run.size))
        seconds = 0.0
        for step in range(WARMUP_STEPS + steps):
            if step == WARMUP_STEPS:
                if run.size > 1:
                    from mpi4py import MPI
                    MPI.COMM_WORLD.Barrier()
                start = time.perf_counter()
            xb, yb = next(data)
            run.optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            run.optimizer.step()
        seconds = time.perf_counter() - start
    if run.size > 1:
        from mpi4py import MPI
        seconds = MPI.COMM_WORLD.allreduce(seconds, op=MPI.MAX)
    if run.rank == 0:
        print(json.dumps({"images_per_s": steps * run.batch_size * run.size / seconds}))


def measure(name, steps):
    """Run one configuration in fresh processes; its images per second."""
    from tinyxception.distributed import mpiexec_command
    ranks, threads, mode = CONFIGURATIONS[name]
    command = [sys.executable, __file__, "--worker", "--steps", str(steps)] + (["--mode", mode] if mode else [])
    if ranks > 1:
        command = mpiexec_command(ranks, *command)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.mode, args.steps)
    rates = {name: [] for name in CONFIGURATIONS}
    for _ in range(args.repeats):
        for name in CONFIGURATIONS:
            rates[name].append(measure(name, args.steps))
    print(f"Xception.small on digits, global batch 64, {args.steps} timed steps, {args.repeats} rounds, "
          f"load average before the last round {os.getloadavg()[0]:.2f}")
    print(f"{'configuration':<36}{'images/s (median)':>18}{'range':>18}")
    for name, values in rates.items():
        print(f"{name:<36}{statistics.median(values):>18.1f}{f'{min(values):.1f}-{max(values):.1f}':>18}")


if __name__ == "__main__":
    main()
