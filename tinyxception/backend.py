"""The one place that chooses between NumPy (CPU) and CuPy (GPU).

Every op asks for its array module with ``xp = array_module(x)`` and then writes
``xp.zeros``, ``xp.matmul`` ... so the same line runs on either device. No other
module of the package decides which library to use.

CuPy is optional. ``import cupy`` can succeed on a machine without a GPU, so a
device counts as available only when ``cupy.cuda.is_available()`` says so.
"""
import numpy

DEVICES = ("cpu", "cuda")
float_dtypes = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

_cupy, _cupy_problem = None, None  # the cupy module once it proved usable; else why it is not (once looked for)


def _load_cupy():
    """Import cupy once; remember why it is unusable when it is."""
    global _cupy, _cupy_problem
    if _cupy is None and _cupy_problem is None:
        try:
            import cupy
            usable = cupy.cuda.is_available()
        except ImportError as err:  # the error says what is missing
            _cupy_problem = f"cupy is not installed ({err}); install it with pip install 'tinyxception[gpu]'"
        except Exception as err:  # a broken driver raises instead of answering False
            _cupy_problem = f"cupy cannot talk to a GPU: {err}"
        else:
            _cupy, _cupy_problem = (cupy, None) if usable else \
                (None, "cupy is installed but cupy.cuda.is_available() is False: no usable NVIDIA GPU")
    return _cupy


def cuda_available() -> bool:
    """True when CuPy is installed and sees a GPU."""
    return _load_cupy() is not None


def cuda_problem() -> str | None:
    """Why the "cuda" device is unavailable, or None when it is available."""
    return None if cuda_available() else _cupy_problem


def available_devices() -> list[str]:
    """The devices this machine can run on: always "cpu", plus "cuda" with a GPU."""
    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def is_cuda_array(a) -> bool:
    """True for a CuPy array (checked without importing cupy when it was never loaded)."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def is_array(a) -> bool:
    """True for a numpy.ndarray or a CuPy array (not for lists, numbers or other libraries' tensors)."""
    return isinstance(a, numpy.ndarray) or is_cuda_array(a)


def device_of(a) -> str:
    """"cuda" for a CuPy array, "cpu" for anything else."""
    return "cuda" if is_cuda_array(a) else "cpu"


def array_module(*arrays):
    """numpy or cupy, whichever owns the arrays; raises when they live on different devices."""
    if _cupy is None:  # CuPy never loaded: no array can be a GPU array (the common CPU case, on every op's path)
        return numpy
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise ValueError(f"arrays live on different devices: {sorted(devices)}; move them with .to(device) first")
    return _cupy if devices == {"cuda"} else numpy


def check_device(device: str) -> str:
    """Validate a device name and make sure it can be used here."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError(f"device 'cuda' requested but unavailable: {cuda_problem()}")
    return device


def to_device(a, device: str):
    """Return the array on `device` ("cpu" or "cuda"); no copy when it is already there."""
    return _cupy.asarray(a) if check_device(device) == "cuda" else asnumpy(a)


def asnumpy(a):
    """A numpy.ndarray with the same values (copied from the GPU when needed)."""
    return _cupy.asnumpy(a) if is_cuda_array(a) else numpy.asarray(a)


def as_array(data, dtype=None, device: str | None = None):
    """Turn data (array, list, scalar) into an array on `device` (default: where it already is, else cpu).

    Python floats and lists become float32, the package's default dtype; arrays keep their dtype.
    TypeError for data that are not numbers (text, None, objects), even when `dtype` could force them.
    """
    if type(data).__module__.partition(".")[0] == "torch":  # torch is no dependency: recognised by name only
        raise TypeError(f"cannot make an array from a torch.{type(data).__name__}; pass a NumPy array: "
                        "x.detach().cpu().numpy()")
    device = device_of(data) if device is None else device
    xp = _cupy if check_device(device) == "cuda" else numpy
    try:
        source = data.dtype if is_array(data) or isinstance(data, numpy.generic) else numpy.asarray(data).dtype
        if dtype is None and not hasattr(data, "dtype"):
            dtype = numpy.float32 if source.kind == "f" else source
        array = xp.asarray(data if device == device_of(data) else asnumpy(data), dtype=dtype) \
            if source.kind in ("biufc" if dtype is None else "biuf") else None  # never drop imaginary parts
    except (TypeError, ValueError) as err:  # ragged lists, an unknown dtype
        raise type(err)(f"cannot make an array of numbers from a {type(data).__name__}: {err}") from err
    if array is None:
        raise TypeError(f"cannot make an array of numbers from a {type(data).__name__} of dtype {source}")
    return array


def is_float_dtype(dtype) -> bool:
    """True for the floating dtypes autograd can differentiate."""
    return numpy.dtype(dtype) in float_dtypes


CPU_CACHE_TILE_BYTES = 1 << 19
"""Working set for cache-blocked CPU loops: half a megabyte (with its temporaries) fits a 1 MiB L2 cache (the
sizes tried, and what each measured, are in docs/benchmarks.md)."""


def cache_tile_bytes(a) -> int | None:
    """How many bytes of `a` an elementwise loop should work on at a time: CPU_CACHE_TILE_BYTES for
    NumPy arrays, None (everything at once) for CuPy arrays, where one kernel covers the array."""
    return None if is_cuda_array(a) else CPU_CACHE_TILE_BYTES


def cpu_module():
    """The NumPy module, for host-side code (data sets, file I/O) that never sees a GPU array."""
    return numpy


def synchronize() -> None:
    """Wait for queued GPU work (a no-op on the CPU); used by timers."""
    if _cupy is not None:
        _cupy.cuda.Device().synchronize()


def device_name() -> str:
    """The GPU's name when cuda is available, else "cpu"."""
    if not cuda_available():
        return "cpu"
    name = _cupy.cuda.runtime.getDeviceProperties(_cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def cuda_memory_pool():
    """CuPy's default device memory pool (for measuring GPU memory); requires cuda."""
    check_device("cuda")
    return _cupy.get_default_memory_pool()
