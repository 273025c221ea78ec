"""Input checks shared by the ops and layers: a clear message naming what was expected and what was given.

Every check is O(1) on shapes and dtypes, except the NaN/inf scan of ``float_tensor``, which runs only
in debug mode (``tinyxception.debug``).
"""
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
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and (value >= low if brackets[0] == "[" else value > low)
            and (value <= high if brackets[1] == "]" else value < high)):
        raise ValueError(f"{what} must be a number in {brackets[0]}{low:g}, {high:g}{brackets[1]}, got {value!r}")
    return float(value)


def int_pair(value, what: str) -> tuple[int, int]:
    """A kernel size as (kh, kw): an int k means (k, k); ValueError (starting with `what`) unless positive ints."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(is_int(v) for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair (kh, kw) of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def any_tensor(x, name: str, op: str, device: str | None = None) -> Tensor:
    """x as a Tensor of any numeric dtype (made on `device` unless x already is an array or Tensor); the error of
    a failed conversion names the op and the argument."""
    try:
        return as_tensor(x) if device is None else tensor(x, device=device)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{op}: {name}: {err}") from err


def float_tensor(x, name: str, op: str) -> Tensor:
    """x as a Tensor, or a TypeError when it is not a floating point array; in debug mode also refuses NaN/inf."""
    t = x if isinstance(x, Tensor) else any_tensor(x, name, op)
    if not backend.is_float_dtype(t.dtype):  # a Tensor holds bool, int or float: these convert to float32
        scale = " / 255 (8-bit image pixels become floats in [0, 1])" if t.dtype == "uint8" else ""
        raise TypeError(f"{op}: {name} must be a floating point array (float16, float32 or float64), "
                        f"got dtype {t.dtype}; convert it with {name}.astype(np.float32){scale}")
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


BATCH_LAYOUTS = {4: "(N, C, H, W)", 2: "(N, C)"}
"""The layout of a batch of each rank: images, or one feature vector per example."""


def image_batch(x, op: str, name: str = "x", ranks: tuple = (4,)) -> Tensor:
    """x as a float NCHW Tensor (or (N, C) where `ranks` holds 2) with at least one image, channel and pixel, or a
    clear error (which suggests the batch axis when a single image is given)."""
    t = float_tensor(x, name, op)
    if t.ndim not in ranks:
        expected = " or ".join(f"{rank} dimensions {BATCH_LAYOUTS[rank]}" for rank in ranks)
        hint = f"; for a single example add the batch axis with {name}[None]" if t.ndim == 3 else ""
        raise ValueError(f"{op}: {name} must have {expected}, got shape {t.shape}{hint}")
    expect_nonempty(t, name, BATCH_LAYOUTS[t.ndim], op)
    return t


def expect_shape(t: Tensor, shape: tuple, name: str, op: str, channels_of: Tensor | None = None) -> None:
    """ValueError unless t has exactly `shape`, e.g. (C,) for a per-channel parameter of the batch `channels_of`,
    in which case the message says when that batch looks like NHWC."""
    if t.shape != tuple(shape):
        hint = channels_last_hint(channels_of, t.shape[0], "x") if channels_of is not None and t.ndim == 1 else ""
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {t.shape}{hint}")


def same_dtype(op: str, **tensors: Tensor) -> None:
    """TypeError when the tensors disagree on dtype (no silent float32/float64 mixing)."""
    if len({t.dtype for t in tensors.values()}) > 1:  # comparing dtypes is cheap, printing them is not
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


def window_geometry(x_shape, kernel: tuple[int, int], stride: int, padding, op: str):
    """((top, bottom), (left, right)) padding and the output size (Ho, Wo) of a window op, for padding given as an
    int, "valid" or "same"; ValueError for a bad stride or padding, or a kernel that does not fit."""
    check_int(stride, f"{op}: stride")
    check_padding(padding, f"{op}: padding")
    h, w = x_shape[-2:]
    if padding == "same":
        pads = (same_padding(h, kernel[0], stride), same_padding(w, kernel[1], stride))
    else:
        pads = ((0, 0), (0, 0)) if padding == "valid" else ((padding, padding), (padding, padding))
    padded = (h + sum(pads[0]), w + sum(pads[1]))
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{op}: kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} (input {h}x{w}, padding {padding!r})")
    return pads, output_size(x_shape, kernel, stride, pads)


def layer_input(x, channels: int, weight: Tensor, layer: str, ranks: tuple = (4,)) -> Tensor:
    """x as a float (N, channels, H, W) Tensor (or (N, channels) where `ranks` allows 2) with the dtype and device
    of the layer's `weight`, or a clear error: the one check of a layer's input, before it calls its Function."""
    t = image_batch(x, layer, "x", ranks)
    expect_channels(t, channels, "x", layer)
    if t.dtype != weight.dtype or t.device != weight.device:
        same_device(layer, x=t, weight=weight)
        same_dtype(layer, x=t, weight=weight)
    return t
