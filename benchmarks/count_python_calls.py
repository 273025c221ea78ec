"""Count the Python-level work of one eval forward of the paper network: Python function calls, calls into C
(NumPy and builtins), and the deepest stack of Python frames below ``model(x)``.

    python benchmarks/count_python_calls.py [--size 299] [--batch 1] [--small]

These are counts, not times: the same on any machine for the same code, so they compare two versions of the
package exactly (docs/benchmarks.md quotes them).
"""
import argparse
import sys

import numpy as np

import tinyxception as tx


def count(model, x):
    """(Python calls, C calls, deepest Python frame depth relative to the caller) of model(x)."""
    calls, c_calls, depth, deepest = 0, 0, 0, 0

    def profile(frame, event, arg):
        nonlocal calls, c_calls, depth, deepest
        if event == "call":
            calls, depth = calls + 1, depth + 1
            deepest = max(deepest, depth)
        elif event == "return":
            depth -= 1
        elif event == "c_call":
            c_calls += 1

    with tx.no_grad():
        sys.setprofile(profile)
        try:
            model(x)
        finally:
            sys.setprofile(None)
    return calls, c_calls, deepest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="Xception.small at 32x32 instead of the paper network")
    args = parser.parse_args()
    model = (tx.Xception.small(seed=0) if args.small else tx.Xception(seed=0)).eval()
    size = 32 if args.small else args.size
    x = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(np.float32)
    count(model, x)  # warm up: first-call caches (padding geometry) are not part of a forward's cost
    calls, c_calls, deepest = count(model, x)
    print(f"eval forward: {calls} Python calls, {c_calls} C calls, deepest Python frame {deepest} below model(x)")


if __name__ == "__main__":
    main()
