"""Count the array operations one forward pass (or training step) of the paper network runs on the GPU.

    python benchmarks/count_device_calls.py            # eval forward, batch 1
    python benchmarks/count_device_calls.py --train    # one training step (forward, loss, backward, SGD)

Each operation of the array module on device arrays is a CUDA kernel launch on CuPy (or, for empty, an
allocation), and a launch costs a fixed few microseconds however small the array: at small batches this count,
not the arithmetic, bounds the GPU's speed. No GPU is needed: the network runs with device="cuda" on the test
suite's CPU stand-in for CuPy (``tests/cupy_stand_in.py``), which counts the calls. Slice assignments and
copies are not counted, although each is a kernel on CuPy too; the count is a lower bound.
"""
import argparse
import pathlib
import sys

import numpy as np

import tinyxception as tx
import tinyxception.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import cupy_stand_in  # noqa: E402  (a test helper, found through the path above)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--train", action="store_true", help="count one training step instead of an eval forward")
    args = parser.parse_args(argv)
    cupy_stand_in.install()  # "cuda" is now the stand-in
    model = tx.Xception(seed=0).to("cuda")
    rng = np.random.default_rng(0)
    images = tx.tensor(rng.standard_normal((args.batch, 3, 299, 299)).astype(np.float32), device="cuda")
    labels = tx.tensor(rng.integers(0, 1000, args.batch), device="cuda")
    optimizer = tx.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run():
        if args.train:
            optimizer.zero_grad()
            F.cross_entropy(model.train()(images), labels).backward()
            optimizer.step()
        else:
            with tx.no_grad():
                model.eval()(images)

    run()  # the first step creates the optimiser's state; count a steady one
    cupy_stand_in.calls.clear()
    run()
    what = "training step" if args.train else "eval forward"
    print(f"{what}, batch {args.batch}: {sum(cupy_stand_in.calls.values())} device operations")
    for name, count in cupy_stand_in.calls.most_common():
        print(f"  {name:<20}{count:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
