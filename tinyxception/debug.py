"""Debug mode: checks too slow to run always, switched on while hunting a bug.

When debug mode is on, every op of ``tinyxception.functional`` (and ``Xception.forward``) scans its
floating point inputs and raises ValueError at the first NaN or infinity, naming the op, the argument,
how many bad values there are and where the first one is. The op that complains is the first one to
*receive* a bad value, so the culprit is the op just before it (or the data).

Three ways to switch it on:

    tx.set_debug(True)                 # until set_debug(False)
    with tx.debug_mode():              # inside the block only
        model(x)
    TINYXCEPTION_DEBUG=1 python train.py   # read once, when tinyxception is imported

Off (the default), an op pays one boolean test for it. This module sits at the bottom of the package,
beside ``backend``, so every layer above can read the switch.
"""

import contextlib
import os

from . import backend

ENV_VARIABLE = "TINYXCEPTION_DEBUG"
"""The environment variable that turns debug mode on at import: any value except "", "0", "false", "no", "off"."""

enabled = os.environ.get(ENV_VARIABLE, "").strip().lower() not in ("", "0", "false", "no", "off")
"""True while debug mode is on; read it as ``debug.enabled`` (a copy made by ``from ... import`` goes stale)."""


def set_debug(on: bool = True) -> bool:
    """Switch debug mode on or off for the whole process; returns the previous setting."""
    global enabled
    previous, enabled = enabled, bool(on)
    return previous


def is_debug() -> bool:
    """True while debug mode is on."""
    return enabled


@contextlib.contextmanager
def debug_mode(on: bool = True):
    """Inside this block debug mode is `on` (True by default); the previous setting returns afterwards."""
    previous = set_debug(on)
    try:
        yield
    finally:
        set_debug(previous)


def check_finite(array, name: str, op: str) -> None:
    """ValueError when a floating point `array` holds NaN or infinity: how many, and the index of the first."""
    xp = backend.array_module(array)
    bad = ~xp.isfinite(array)
    if not bad.any():
        return
    nan = int(xp.isnan(array).sum())
    first = tuple(int(i) for i in xp.argwhere(bad)[0])
    raise ValueError(f"{op}: {name} of shape {tuple(array.shape)} contains {nan} NaN and {int(bad.sum()) - nan} "
                     f"infinite values, the first at index {first} (debug mode is on); look at the op or data "
                     f"that produced {name}")
