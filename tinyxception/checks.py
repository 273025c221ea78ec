"""Input checks shared by the ops and layers: a clear message naming what was expected and what was given.

Every check is O(1) on shapes and dtypes, except the NaN/inf scan of ``float_tensor``, which runs only
in debug mode (``tinyxception.debug``).
"""
from __future__ import annotations

import numbers

from . import backend, debug
from .autograd import Tensor, as_tensor, tensor
from .kernels.geometry import output_size, same_padding


def is_int(value, minimum: int = 1) -> bool:
    """True for an int, Python's or NumPy's (not a bool, which Python counts as an int), of at least `minimum`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_int(value, what: str, minimum: int = 1) -> None:
    """ValueError (starting with `what`, e.g. "conv2d: groups") unless value is an int of at least `minimum`."""
    if not is_int(value, minimum):
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{what} must be {wanted}, got {value!r}")


def check_number(value, what: str, low: float, high: float, brackets: str = "[]") -> float:
    """value as a float, or ValueError unless it is a real number (not a bool) between low and high.

    `brackets` says which ends belong to the interval: "[]" both, "[)" not high, "(]" not low, "()" neither;
    NaN is never inside.
    """
    inside = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if inside:
        inside = (value >= low if brackets[0] == "[" else value > low) and \
                 (value <= high if brackets[1] == "]" else value < high)
    if not inside:
        raise ValueError(f"{what} must be a number in {brackets[0]}{low:g}, {high:g}{brackets[1]}, got {value!r}")
    return float(value)


def int_pair(value, what: str) -> tuple[int, int]:
    """A kernel size as (kh, kw): an int k means (k, k); ValueError (starting with `what`) unless positive ints."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(is_int(v) for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair (kh, kw) of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _conversion_hint(dtype, name: str) -> str:
    """How to turn an array of `dtype` into floats, as the end of an error message ("" when there is no way)."""
    if dtype.kind == "u" and dtype.itemsize == 1:
        return f"; 8-bit image pixels become floats in [0, 1] with {name}.astype(np.float32) / 255"
    if dtype.kind in "biu":
        return f"; convert it with {name}.astype(np.float32)"
    return f"; keep the real part with {name}.real" if dtype.kind == "c" else ""


def any_tensor(x, name: str, op: str, device: str | None = None) -> Tensor:
    """x as a Tensor of any numeric dtype (made on `device` unless x already is an array or Tensor); the error of
    a failed conversion names the op and the argument."""
    try:
        return as_tensor(x) if device is None else tensor(x, device=device)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{op}: {name}: {err}") from err


def float_tensor(x, name: str, op: str) -> Tensor:
    """x as a Tensor, or a TypeError when it is not a floating point array; in debug mode also refuses NaN/inf."""
    t = any_tensor(x, name, op)
    if not backend.is_float_dtype(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating point array (float16, float32 or float64), "
                        f"got dtype {t.dtype}{_conversion_hint(t.dtype, name)}")
    if debug.enabled:
        debug.check_finite(t.data, name, op)
    return t


def expect_rank(t: Tensor, rank: int, name: str, layout: str, op: str) -> None:
    """ValueError unless t has `rank` dimensions, e.g. 4 for an NCHW batch; suggests the batch axis when missing."""
    if t.ndim != rank:
        hint = f"; for a single example add the batch axis with {name}[None]" \
            if t.ndim == rank - 1 and layout.startswith("(N,") else ""
        raise ValueError(f"{op}: {name} must have {rank} dimensions {layout}, got shape {t.shape}{hint}")


def expect_nonempty(t: Tensor, name: str, layout: str, op: str) -> None:
    """ValueError when an axis of t has length 0 (an empty batch, no channels, no pixels, a 0-wide kernel)."""
    if 0 in t.shape:
        raise ValueError(f"{op}: {name} {layout} needs at least one element along every axis, got shape {t.shape}")


def channels_last_hint(t: Tensor, channels: int, name: str) -> str:
    """The end of an error message when t looks like NHWC: its last axis, not axis 1, holds `channels`."""
    if t.ndim == 4 and t.shape[1] != channels and t.shape[3] == channels:
        return (f"; {name} looks like NHWC (channels last) but NCHW is expected: "
                f"transpose it with {name}.transpose(0, 3, 1, 2)")
    return ""


def expect_channels(t: Tensor, channels: int, name: str, op: str) -> None:
    """ValueError unless axis 1 of t has `channels` entries, with the transpose to use when t is NHWC."""
    if t.shape[1] != channels:
        raise ValueError(f"{op}: expected {name} with {channels} input channels (N, {channels}, H, W), "
                         f"got shape {t.shape}{channels_last_hint(t, channels, name)}")


def image_batch(x, op: str, name: str = "x") -> Tensor:
    """x as a float NCHW Tensor with at least one image, channel and pixel, or a clear error."""
    t = float_tensor(x, name, op)
    expect_rank(t, 4, name, "(N, C, H, W)", op)
    expect_nonempty(t, name, "(N, C, H, W)", op)
    return t


def expect_shape(t: Tensor, shape: tuple, name: str, op: str, channels_of: Tensor | None = None) -> None:
    """ValueError unless t has exactly `shape`, e.g. (C,) for a per-channel parameter of the batch `channels_of`,
    in which case the message says when that batch looks like NHWC."""
    if t.shape != tuple(shape):
        hint = channels_last_hint(channels_of, t.shape[0], "x") if channels_of is not None and t.ndim == 1 else ""
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {t.shape}{hint}")


def same_dtype(op: str, **tensors: Tensor) -> None:
    """TypeError when the tensors disagree on dtype (no silent float32/float64 mixing)."""
    first = next(iter(tensors.values())).dtype
    if any(t.dtype != first for t in tensors.values()):  # comparing dtypes is cheap, printing them is not
        dtypes = {name: str(t.dtype) for name, t in tensors.items()}
        raise TypeError(f"{op}: inputs must share one dtype, got {dtypes}")


def same_device(op: str, **tensors: Tensor) -> None:
    """ValueError naming each input's device when they live on different devices."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs live on different devices {devices}; move them with .to(device)")


def check_padding(padding, what: str) -> None:
    """ValueError (starting with `what`, e.g. "conv2d: padding") unless padding is an int >= 0, "valid" or "same"."""
    if not (is_int(padding, minimum=0) or (isinstance(padding, str) and padding in ("valid", "same"))):
        raise ValueError(f"{what} must be a non-negative int, 'valid' or 'same', got {padding!r}")


def resolve_padding(padding, size: tuple[int, int], kernel: tuple[int, int], stride: int, op: str):
    """((top, bottom), (left, right)) for padding given as int, "valid" or "same"."""
    check_padding(padding, f"{op}: padding")
    if padding == "same":
        return tuple(same_padding(n, k, stride) for n, k in zip(size, kernel))
    if padding == "valid":
        return ((0, 0), (0, 0))
    return ((padding, padding), (padding, padding))


def window_geometry(x_shape, kernel: tuple[int, int], stride: int, padding, op: str):
    """Padding and output size for a window op; ValueError when the kernel does not fit."""
    check_int(stride, f"{op}: stride")
    h, w = x_shape[-2:]
    pads = resolve_padding(padding, (h, w), kernel, stride, op)
    padded = (h + sum(pads[0]), w + sum(pads[1]))
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{op}: kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} (input {h}x{w}, padding {padding!r})")
    return pads, output_size(x_shape, kernel, stride, pads)


def layer_input(x, channels: int, weight: Tensor, layer: str, ranks: tuple = (4,)) -> Tensor:
    """x as a float (N, channels, H, W) Tensor (or (N, channels) where `ranks` allows 2) with the dtype and device
    of the layer's `weight`, or a clear error: the one check of a layer's input, before it calls its Function."""
    t = float_tensor(x, "x", layer)
    if t.ndim not in ranks:
        layouts = " or ".join({4: "4 (N, C, H, W)", 2: "2 (N, C)"}[rank] for rank in ranks)
        hint = "; for a single image add the batch axis with x[None]" if t.ndim == 3 else ""
        raise ValueError(f"{layer}: x must have {layouts} dimensions, got shape {t.shape}{hint}")
    expect_nonempty(t, "x", "(N, C, ...)", layer)
    expect_channels(t, channels, "x", layer)
    if t.dtype != weight.dtype or t.device != weight.device:
        same_device(layer, x=t, weight=weight)
        same_dtype(layer, x=t, weight=weight)
    return t
