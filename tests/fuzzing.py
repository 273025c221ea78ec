"""Tools of the fuzz suite (tests/test_fuzz.py): random inputs, the formulas that say what a call must return,
and the judge of each call, which also counts the outcomes for the summary.

A call is judged against an *expectation* written in the test: None when the inputs break a documented rule
(the call must raise ValueError or TypeError), else the (shape, dtype) the documentation promises. Every
other outcome is a failure: another exception type, an empty message, an error raised from inside an op's
arithmetic or from NumPy instead of by a check, a result for inputs that should have been refused, a refusal
of valid inputs, a wrong shape or dtype, or a call that runs for longer than CALL_SECONDS.
"""
import collections
import contextlib
import math
import re
import signal
import threading
import traceback
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import tinyxception as tx

FLOATS = (np.float16, np.float32, np.float64)
NOT_FLOATS = (np.int32, np.int64, np.uint8, np.bool_, np.complex64)
GARBAGE = (None, "2", "same ", 1.5, 2.0, True, (), [1], float("nan"), float("inf"), object())
"""Values no option of the package accepts (an int option refuses 2.0 and True as well)."""
PADDING_WORDS = ("same", "valid", "SAME", "full", "")
CALL_SECONDS = 20
PACKAGE = str(Path(tx.__file__).parent)
QUOTED = re.compile(r"\d+|'[^']*'|\([^()]*\)|\[[^\[\]]*\]|{[^{}]*}|<[^<>]*>")
"""Numbers, strings, tuples, lists, dicts and reprs quoted in a message (blanked out to count kinds of message)."""
RETURNS = "returns"
"""The expectation of a constructor: it must return (anything), not refuse."""


class Hang(Exception):
    """A call ran longer than CALL_SECONDS (deliberately not a ValueError or TypeError)."""


class Outcomes:
    """What the fuzz calls did: examples and results per target, and every distinct error message."""

    def __init__(self):
        self.calls = collections.Counter()
        self.results = collections.Counter()
        self.messages = collections.Counter()
        self.error_types = collections.Counter()
        self.last_message = ""

    def refused(self, err: BaseException) -> None:
        """Count a refusal and remember its message."""
        self.error_types[type(err).__name__] += 1
        self.messages[str(err)] += 1
        self.last_message = str(err)

    def kinds(self) -> int:
        """How many messages differ in more than the numbers, shapes and values they quote."""
        return len({QUOTED.sub("_", message) for message in self.messages})

    def summary(self, failed_tests: int) -> str:
        """A few lines for the terminal: totals, forbidden outcomes (failed tests), then the calls per target."""
        targets = ", ".join(f"{name} {self.calls[name]}" for name in sorted(self.calls))
        forbidden = "none" if failed_tests == 0 else f"see the {failed_tests} failed tests"
        return (f"fuzz summary: {sum(self.calls.values())} calls, {sum(self.results.values())} returned what the "
                f"documentation promises, {sum(self.error_types.values())} were refused "
                f"({dict(self.error_types)}) with {len(self.messages)} distinct messages ({self.kinds()} kinds "
                f"once numbers and values are blanked out); forbidden outcomes "
                f"(other exception types, errors from inside an op or NumPy, wrong shapes or dtypes, hangs): "
                f"{forbidden}\nfuzz calls per target: {targets}")


OUTCOMES = Outcomes()


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Hang when the block runs longer than `seconds` (POSIX main thread; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raising_frame(err: BaseException):
    """The innermost Python frame of the error's traceback."""
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


def judge(target: str, call, expected):
    """Run call() and check its outcome against `expected`: None (must refuse), RETURNS (must not refuse) or the
    (shape, dtype) of the result. Returns the result (None after a refusal)."""
    OUTCOMES.calls[target] += 1
    try:
        with time_limit(CALL_SECONDS):
            out = call()
    except (ValueError, TypeError) as err:
        message, frame = str(err), _raising_frame(err)
        where = "".join(traceback.format_exception(err))
        assert message.strip(), f"{target}: an error without a message:\n{where}"
        assert frame.f_code.co_filename.startswith(PACKAGE), f"{target}: raised outside the package:\n{where}"
        assert not isinstance(frame.f_locals.get("self"), tx.Function), f"{target}: raised inside an op:\n{where}"
        assert expected is None, f"{target} refused valid input (expected {expected}):\n{where}"
        OUTCOMES.refused(err)
        return None
    assert expected is not None, f"{target} accepted input it must refuse, returned {out!r}"
    OUTCOMES.results[target] += 1
    if expected == RETURNS:
        return out
    shape, dtype = expected
    assert (out.shape, out.dtype) == (tuple(shape), np.dtype(dtype)), \
        f"{target} returned {out.shape} {out.dtype}, the documentation says {tuple(shape)} {np.dtype(dtype)}"
    return out


# --- what counts as valid, as the documentation states it ------------------------------------------------

def is_int(value, minimum: int = 1) -> bool:
    """An int (Python's or NumPy's, not a bool) of at least `minimum`."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= minimum


def is_number(value, low: float, high: float, brackets: str = "[]") -> bool:
    """A real number (not a bool) in the interval; brackets "[)" etc. say which ends belong to it."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return False
    return (value >= low if brackets[0] == "[" else value > low) and (value <= high if brackets[1] == "]" else
                                                                      value < high)


def seen(value):
    """The array the package makes of an argument, as tx.tensor does (Python floats and lists of them become
    float32, arrays stay as they are), or None when it refuses to make one (text, objects, complex numbers)."""
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biuf" else None
    with contextlib.suppress(TypeError, ValueError):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.float32) if array.dtype.kind == "f" else array
    return None


def is_float_array(a) -> bool:
    """A NumPy array of float16, float32 or float64 (what every op computes with)."""
    return isinstance(a, np.ndarray) and a.dtype in FLOATS


def is_image_batch(x) -> bool:
    """A float (N, C, H, W) array with at least one image, channel and pixel."""
    return is_float_array(x) and x.ndim == 4 and 0 not in x.shape


def is_padding(padding) -> bool:
    """An int >= 0, "valid" or "same"."""
    return is_int(padding, 0) or (isinstance(padding, str) and padding in ("valid", "same"))


def window_out(size: int, kernel: int, stride: int, padding):
    """Output length of a window op along one axis (None when the kernel does not fit the padded input).

    "same" is TensorFlow's rule, ceil(size / stride); an int p pads both ends; "valid" pads nothing.
    """
    if padding == "same":
        return math.ceil(size / stride)
    padded = size + 2 * (0 if padding == "valid" else padding)
    return None if padded < kernel else (padded - kernel) // stride + 1


def window_shape(x_shape, channels: int, kernel, stride, padding):
    """(N, channels, H_out, W_out) for a window op on x, or None when the kernel does not fit."""
    sizes = [window_out(n, k, stride, padding) for n, k in zip(x_shape[2:], kernel)]
    return None if None in sizes else (x_shape[0], channels, *sizes)


# --- random inputs -------------------------------------------------------------------------------------------

def make_array(shape, dtype, seed: int):
    """An array of `shape` and `dtype` with values that fit the dtype (small ints for integer dtypes)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iub":
        return rng.integers(0, 4, size=shape).astype(dtype)
    values = rng.normal(0.0, 2.0, size=shape)
    return (values + 1j * rng.normal(size=shape) if np.dtype(dtype).kind == "c" else values).astype(dtype)


def mostly(valid, invalid, odds: int = 4):
    """Draw from `valid` about `odds` times out of odds + 1, else from `invalid`: most examples then break at most
    one rule, so every check meets inputs that pass all the others."""
    return st.integers(0, odds).flatmap(lambda i: invalid if i == 0 else valid)


dtypes = mostly(st.sampled_from(FLOATS), st.sampled_from(NOT_FLOATS))
seeds = st.integers(0, 2 ** 16)
garbage = st.sampled_from(GARBAGE)


def ints(low: int, high: int):
    """Python or NumPy ints in [low, high], sometimes garbage."""
    return mostly(st.one_of(st.integers(low, high), st.integers(low, high).map(np.int64)), garbage, odds=6)


def numbers(low: float, high: float):
    """Floats in [low, high] (ends included) most of the time, else one just outside, or garbage."""
    outside = st.sampled_from([low - 0.5, high + 0.5])
    return mostly(st.one_of(st.floats(low, high), st.sampled_from([low, high])), st.one_of(outside, garbage))


paddings = mostly(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
                  st.one_of(st.integers(-2, -1), st.sampled_from(PADDING_WORDS[2:]), garbage))
strides = mostly(st.one_of(st.integers(1, 3), st.integers(1, 3).map(np.int64)), st.one_of(st.integers(-1, 0), garbage))
kernel_sizes = mostly(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
                      st.one_of(st.integers(-1, 0), st.tuples(st.integers(0, 3), st.integers(-1, 0)),
                                st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda v: len(v) != 2),
                                garbage))


@st.composite
def shape_near(draw, shape):
    """`shape` itself most often; else NHWC (axis 1 moved last), one axis missing or added, or a zero length."""
    change = draw(mostly(st.just("same"), st.sampled_from(["nhwc", "drop", "add", "zero", "any"])))
    shape = list(shape)
    if change == "nhwc" and len(shape) == 4:
        shape = [shape[0], shape[2], shape[3], shape[1]]
    elif change == "drop" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif change == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    elif change == "zero" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = 0
    elif change == "any":
        shape = draw(st.lists(st.integers(0, 4), max_size=5))
    return tuple(shape)


@st.composite
def arrays_near(draw, shape, dtype=None):
    """An array whose shape is usually `shape` (see shape_near) and whose dtype is usually `dtype` (when given);
    now and then a non-array (a list of numbers, which ops accept, or garbage)."""
    kind = draw(mostly(st.just("array"), st.sampled_from(["list", "garbage"]), odds=9))
    if kind == "garbage":
        return draw(garbage)
    dtype = draw(dtypes if dtype is None else mostly(st.just(dtype), st.sampled_from(FLOATS + NOT_FLOATS)))
    array = make_array(draw(shape_near(shape)), dtype, draw(seeds))
    return array.tolist() if kind == "list" and array.ndim else array
