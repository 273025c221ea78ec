"""Time tinyxception against PyTorch on the same machine, in one process, side by side.

    python benchmarks/bench_xception.py                 # CPU, markdown table
    python benchmarks/bench_xception.py --device cuda   # GPU (CuPy vs PyTorch CUDA)
    python benchmarks/bench_xception.py --json out.json

Rows: eval forward (batch 1 and 8, 299x299; with --device cuda also 32), one training step (forward,
cross-entropy, backward, SGD update; batch 8, on cuda also 32), Xception.small on 32x32 images (training step
at batch 64, eval forward at batch 256, against a PyTorch mirror with the same parameter count), per-op microbenchmarks at Xception's real
shapes, and the peak memory of the training step. Every time is the median of --repeats runs after --warmup
runs. PyTorch (eager, fp32, same thread count) is timed when it is installed; without it only our numbers
are printed. The two frameworks take turns, one timed run each, so that both see the same moments of a
shared, noisy machine; the ratio is the median of the per-turn ratios. In a turn, one untimed run comes
before the timed one, so each framework is timed in its steady state, as in a loop of calls, and not while
the other framework's idle worker threads still hold a core (OpenBLAS' threads spin for about 0.1 s after
every call).
Both use every core unless OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) says otherwise, e.g.
``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_xception.py`` for one thread each.
Peak memory is measured in a fresh subprocess per framework (CPU: growth of the peak resident set
during one step; GPU: bytes held by the allocator after one step).
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import tinyxception as tx
import tinyxception.functional as F

HERE = pathlib.Path(__file__).resolve().parent

try:
    import torch
except ImportError:
    torch = None


def turn_times(fns, syncs, warmup, repeats):
    """Wall times in seconds of each fn in fns, taking turns (fn 0, fn 1, fn 0, ...) after warm-up runs.

    With more than one fn, every timed run follows an untimed run of the same fn (see the module docstring).
    syncs[k]() waits for fns[k]'s GPU work. Returns one list of `repeats` times per fn.
    """
    for fn, sync in zip(fns, syncs):
        for _ in range(warmup):
            fn()
        sync()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, sync, own in zip(fns, syncs, times):
            if len(fns) > 1:
                fn()
                sync()
            start = time.perf_counter()
            fn()
            sync()
            own.append(time.perf_counter() - start)
    return times


# --- the cases, once per framework ---------------------------------------------------------------

FORWARD_BATCHES = {"cpu": (1, 8), "cuda": (1, 8, 32)}
TRAIN_BATCHES = {"cpu": (8,), "cuda": (8, 32)}
"""Batch sizes of the whole-network rows; the GPU's targets are stated for batch 32."""


def network_cases(model, batches, train_step, no_grad, device):
    """The whole-network rows: eval forward and one training step, at the device's batch sizes.

    batches maps a batch size to its (images, labels); train_step(images, labels) runs one step."""
    def forward(images):
        model.eval()
        with no_grad():
            model(images)

    def train(images, labels):
        model.train()
        train_step(images, labels)

    cases = {f"eval forward, batch {n}": (lambda n=n: forward(batches[n][0]), None, None)
             for n in FORWARD_BATCHES[device]}
    cases.update({f"train step, batch {n}": (lambda n=n: train(*batches[n]), None, None)
                  for n in TRAIN_BATCHES[device]})
    return cases


SMALL_TRAIN_BATCH, SMALL_EVAL_BATCH = 64, 256
"""Xception.small on 32x32 images, as learners train it (notebooks 07 and 08, ``python -m tinyxception train``)."""


def small_cases(model, arr, labels, train_step, no_grad):
    """The small network's rows: a training step at batch 64 and an eval forward at batch 256."""
    images, batch = arr(SMALL_EVAL_BATCH, 3, 32, 32), arr(SMALL_TRAIN_BATCH, 3, 32, 32)

    def forward():
        model.eval()
        with no_grad():
            model(images)

    def train():
        model.train()
        train_step(batch, labels)

    return {f"small: eval forward, batch {SMALL_EVAL_BATCH}": (forward, None, None),
            f"small: train step, batch {SMALL_TRAIN_BATCH}": (train, None, None)}


def batch_sizes(device):
    """Every batch size the device's whole-network rows need inputs for."""
    return sorted(set(FORWARD_BATCHES[device] + TRAIN_BATCHES[device]))


# --- per-framework set-up ----------------------------------------------------------------------

def ours_cases(device):
    """name -> (callable, work, unit) for tinyxception on `device`."""
    xp = tx.backend.array_module(tx.tensor([0.0], device=device).data)
    rng = np.random.default_rng(0)

    def arr(*shape):
        return tx.tensor(rng.standard_normal(shape).astype(np.float32), device=device)

    model = tx.Xception(seed=0).to(device)
    batches = {n: (arr(n, 3, 299, 299), tx.tensor(rng.integers(0, 1000, n), device=device))
               for n in batch_sizes(device)}
    optimizer = tx.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step(images, labels):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    cases = network_cases(model, batches, train_step, tx.no_grad, device)
    small = tx.Xception.small(num_classes=10, seed=0).to(device)
    small_optimizer = tx.optim.SGD(small.parameters(), lr=0.01, momentum=0.9)

    def small_step(images, labels):
        small_optimizer.zero_grad()
        F.cross_entropy(small(images), labels).backward()
        small_optimizer.step()

    labels = tx.tensor(rng.integers(0, 10, SMALL_TRAIN_BATCH), device=device)
    cases.update(small_cases(small, arr, labels, small_step, tx.no_grad))
    with tx.no_grad():
        cases.update(_ours_ops(arr, xp))
    return cases


def _ours_ops(arr, xp):
    dw_small, w_small = arr(1, 728, 19, 19), arr(728, 1, 3, 3)
    dw_big, w_big = arr(1, 128, 147, 147), arr(128, 1, 3, 3)
    pw_w = arr(728, 728, 1, 1)
    gamma, beta, mean, var = (arr(728) for _ in range(4))
    var.data[...] = xp.abs(var.data) + 0.5
    bn_x, pool_x = arr(8, 728, 19, 19), arr(1, 128, 147, 147)
    return {
        "depthwise 3x3, 728x19x19": (lambda: F.depthwise_conv2d(dw_small, w_small, padding="same"), *_dw_flops(dw_small.shape)),
        "depthwise 3x3, 128x147x147": (lambda: F.depthwise_conv2d(dw_big, w_big, padding="same"), *_dw_flops(dw_big.shape)),
        "pointwise 728->728, 19x19": (lambda: F.pointwise_conv2d(dw_small, pw_w), 2 * 728 * 728 * 361 / 1e9, "GFLOP/s"),
        "batch norm (eval), 8x728x19x19": (lambda: F.batch_norm(bn_x, gamma, beta, mean.data, var.data, training=False),
                                           2 * bn_x.size * 4 / 1e9, "GB/s"),
        "max pool 3x3 s2, 128x147x147": (lambda: F.max_pool2d(pool_x, 3, 2, "same"), (pool_x.size + 128 * 74 * 74) * 4 / 1e9, "GB/s"),
    }


def _dw_flops(shape):
    return 2 * 9 * shape[1] * shape[2] * shape[3] / 1e9, "GFLOP/s"


def torch_cases(device):
    """The same cases in PyTorch eager mode."""
    sys.path.insert(0, str(HERE))
    from torch_xception import small, xception
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)

    def arr(*shape):
        return torch.randn(*shape, generator=gen).to(dev)

    model = xception().to(dev)
    batches = {n: (arr(n, 3, 299, 299), torch.randint(0, 1000, (n,), generator=gen).to(dev))
               for n in batch_sizes(device)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tf = torch.nn.functional

    def train_step(images, labels):
        optimizer.zero_grad()
        tf.cross_entropy(model(images), labels).backward()
        optimizer.step()

    dw_small, w_small, dw_big, w_big = arr(1, 728, 19, 19), arr(728, 1, 3, 3), arr(1, 128, 147, 147), arr(128, 1, 3, 3)
    pw_w, bn_x, pool_x = arr(728, 728, 1, 1), arr(8, 728, 19, 19), arr(1, 128, 147, 147)
    gamma, beta, mean, var = arr(728), arr(728), arr(728), arr(728).abs() + 0.5
    ops = {
        "depthwise 3x3, 728x19x19": lambda: tf.conv2d(dw_small, w_small, padding=1, groups=728),
        "depthwise 3x3, 128x147x147": lambda: tf.conv2d(dw_big, w_big, padding=1, groups=128),
        "pointwise 728->728, 19x19": lambda: tf.conv2d(dw_small, pw_w),
        "batch norm (eval), 8x728x19x19": lambda: tf.batch_norm(bn_x, mean, var, gamma, beta, False, 0.0, 1e-3),
        "max pool 3x3 s2, 128x147x147": lambda: tf.max_pool2d(pool_x, 3, 2, 1),
    }

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    cases = network_cases(model, batches, train_step, torch.no_grad, device)
    small_model = small().to(dev)
    assert sum(p.numel() for p in small_model.parameters()) == tx.count_parameters(tx.Xception.small(num_classes=10))
    small_optimizer = torch.optim.SGD(small_model.parameters(), lr=0.01, momentum=0.9)

    def small_step(images, labels):
        small_optimizer.zero_grad()
        tf.cross_entropy(small_model(images), labels).backward()
        small_optimizer.step()

    labels = torch.randint(0, 10, (SMALL_TRAIN_BATCH,), generator=gen).to(dev)
    cases.update(small_cases(small_model, arr, labels, small_step, torch.no_grad))
    cases.update({name: (no_grad(fn), None, None) for name, fn in ops.items()})
    return cases


# --- peak memory of one training step, each framework in its own process -----------------------

def _rss_kib(field):
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_step_memory(framework, device):
    """MiB of memory one training step needs beyond the model itself (run in a child process)."""
    cases = ours_cases(device) if framework == "tinyxception" else torch_cases(device)
    step = cases["train step, batch 8"][0]
    if device == "cuda":
        step()  # warm up kernels and the allocator, then measure what a step holds
        if framework == "tinyxception":
            pool = tx.backend.cuda_memory_pool()
            pool.free_all_blocks()
            step()
            return pool.total_bytes() / 2**20
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated() / 2**20
    before = _rss_kib("VmRSS")
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (Linux)
    step()
    return (_rss_kib("VmHWM") - before) / 1024


def step_memory_in_subprocess(framework, device):
    out = subprocess.run([sys.executable, __file__, "--memory-of", framework, "--device", device],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# --- report -------------------------------------------------------------------------------------

def run(args):
    sync = (lambda: tx.backend.synchronize()) if args.device == "cuda" else (lambda: None)
    ours = ours_cases(args.device)
    theirs = torch_cases(args.device) if torch is not None else {}
    torch_sync = (lambda: torch.cuda.synchronize()) if args.device == "cuda" else (lambda: None)
    rows = []
    for name, (fn, work, unit) in ours.items():
        if args.only and args.only not in name:
            continue
        fns, syncs = ([fn, theirs[name][0]], [sync, torch_sync]) if name in theirs else ([fn], [sync])
        times = turn_times(fns, syncs, args.warmup, args.repeats)
        ours_s = statistics.median(times[0])
        torch_s = statistics.median(times[1]) if len(times) > 1 else None
        ratio = statistics.median(a / b for a, b in zip(*times)) if len(times) > 1 else None
        rate = f"{work / ours_s:.1f} {unit}" if work else ""
        rows.append({"case": name, "tinyxception_ms": ours_s * 1e3,
                     "pytorch_ms": None if torch_s is None else torch_s * 1e3, "ratio": ratio, "rate": rate})
    if not args.only and not args.no_memory:
        ours_mb = step_memory_in_subprocess("tinyxception", args.device)
        torch_mb = step_memory_in_subprocess("torch", args.device) if torch is not None else None
        rows.append({"case": "train step peak memory, batch 8 (MiB)", "tinyxception_ms": ours_mb,
                     "pytorch_ms": torch_mb, "ratio": None if torch_mb is None else ours_mb / torch_mb, "rate": ""})
    return rows


def blas_threads():
    """The thread count NumPy's BLAS uses (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else every core); PyTorch gets the same."""
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or os.cpu_count())


def machine_line(device):
    threads = blas_threads()
    line = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} threads, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"PyTorch {torch.__version__ if torch is not None else 'not installed'}")
    return line + (f", GPU {tx.backend.device_name()}" if device == "cuda" else "")


def markdown(rows, args):
    lines = [f"device: {args.device}; {machine_line(args.device)}; median of {args.repeats} turns after "
             f"{args.warmup} warm-up; ratio: median of the per-turn ratios",
             "", "| case | tinyxception | PyTorch | ratio | tinyxception rate |", "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        unit = "" if "MiB" in r["case"] else " ms"
        theirs = "n/a" if r["pytorch_ms"] is None else f"{r['pytorch_ms']:.1f}{unit}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['case']} | {r['tinyxception_ms']:.1f}{unit} | {theirs} | {ratio} | {r['rate']} |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory row")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--memory-of", choices=["tinyxception", "torch"], help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.memory_of:
        print(measure_step_memory(args.memory_of, args.device))
        return 0
    if torch is not None and args.device == "cpu":
        torch.set_num_threads(blas_threads())
    rows = run(args)
    print(markdown(rows, args))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"device": args.device, "machine": machine_line(args.device),
                                                       "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
