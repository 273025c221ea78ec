"""Input checks shared by the ops: a clear message naming what was expected and what was given."""
from __future__ import annotations

from .. import backend
from ..autograd import Tensor, as_tensor


def is_int(value, minimum: int = 1) -> bool:
    """True for an int (not a bool, which Python counts as an int) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def int_pair(value, what: str) -> tuple[int, int]:
    """A kernel size as (kh, kw): an int k means (k, k); ValueError (starting with `what`) unless positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(is_int(v) for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair (kh, kw) of them, got {value!r}")
    return pair


def float_tensor(x, name: str, op: str) -> Tensor:
    """x as a Tensor, or a TypeError when it is not a floating point array."""
    t = as_tensor(x)
    if not backend.is_float_dtype(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating point array (float32 or float64), got dtype {t.dtype}")
    return t


def expect_rank(t: Tensor, rank: int, name: str, layout: str, op: str) -> None:
    """ValueError unless t has `rank` dimensions, e.g. 4 for an NCHW batch."""
    if t.ndim != rank:
        raise ValueError(f"{op}: {name} must have {rank} dimensions {layout}, got shape {t.shape}")


def same_dtype(op: str, **tensors: Tensor) -> None:
    """TypeError when the tensors disagree on dtype (no silent float32/float64 mixing)."""
    dtypes = {name: str(t.dtype) for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{op}: inputs must share one dtype, got {dtypes}")


def same_device(op: str, **tensors: Tensor) -> None:
    """ValueError naming each input's device when they live on different devices."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs live on different devices {devices}; move them with .to(device)")


def image_batch(x, op: str, name: str = "x") -> Tensor:
    """x as a float NCHW Tensor, or a clear error."""
    t = float_tensor(x, name, op)
    expect_rank(t, 4, name, "(N, C, H, W)", op)
    return t


def expect_shape(t: Tensor, shape: tuple, name: str, op: str) -> None:
    """ValueError unless t has exactly `shape`, e.g. (C,) for a per-channel parameter."""
    if t.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {t.shape}")
