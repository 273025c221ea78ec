"""A stand-in for CuPy that runs on the CPU, so that every "cuda" test case also runs on a machine without a GPU.

Most machines that run these tests (CI, a learner's laptop) have no NVIDIA GPU, so the real "cuda" cases skip.
The code path they would test has its own mistakes, and almost all of them are mistakes of the Python code, not
of the GPU. The stand-in makes each one fail on the CPU, the way CuPy would fail on a GPU:

- **A host array meets a device array** in one operation (``device_array * numpy_array``, ``xp.matmul(d, h)``,
  ``xp.maximum(host, 0)`` from the device's module): CuPy raises ``TypeError: Unsupported type``, and so does
  the stand-in.
- **A NumPy function is called on a device array** (``numpy.pad(d)``). The project's rule forbids it: ops must
  ask ``backend.array_module(x)``. CuPy would dispatch some of these calls and refuse others; the stand-in
  refuses all of them.
- **A result leaves the device**: a function of the device's module that gets device arrays returns device
  arrays, and a full reduction returns a 0-d device array (as CuPy does), never a NumPy scalar. A test that
  finds a ``numpy.ndarray`` where a device array belongs has found a leak.
- **A name or keyword CuPy lacks** (``xp.lib.stride_tricks.as_strided(..., writeable=False)``): where CuPy can
  be imported (it imports without a GPU: ``pip install cupy-cuda13x``), every name the code asks the module or
  an array for must exist in CuPy, and every call of the module's functions must fit CuPy's signature. Without
  CuPy only NumPy's names are checked.

A device array is a NumPy array of the subclass :class:`DeviceArray`; the module the backend hands out for it,
:data:`cupy`, is NumPy behind a guard that unwraps device arrays on the way in and wraps results on the way out.

What the stand-in cannot see: speed; bugs in CUDA kernels (the package has none of its own yet); the last bits
of cuBLAS' and cuDNN's rounding; and ``numpy.asarray(device_array)``, which NumPy turns into a host array
without asking the subclass (CuPy raises there).
"""
from __future__ import annotations

import collections
import inspect
import types

import numpy as np

from tinyxception import backend

try:
    import cupy as real_cupy  # only its names and signatures are used: no GPU needed
except ImportError:
    real_cupy = None

TRANSFERS = frozenset({"asarray", "array", "asanyarray"})
"""The module's functions that may take host arrays: they copy them to the device."""

CUPY_ARRAY_NAMES = None if real_cupy is None else frozenset(dir(real_cupy.ndarray))
"""The public attributes and methods of cupy.ndarray, where CuPy is importable."""

calls = collections.Counter()
"""How many times each operation ran on device arrays (``benchmarks/count_device_calls.py`` reads it): on CuPy,
each is at least one kernel launch."""

PRINTING = frozenset({np.array_repr, np.array_str, np.array2string})
"""NumPy functions allowed on device arrays: a failing test must still be able to print its arrays."""


class DeviceArray(np.ndarray):
    """An array that lives on the stand-in GPU: it refuses to meet host arrays and NumPy's functions."""

    def __getattribute__(self, name):
        if CUPY_ARRAY_NAMES is not None and not name.startswith("_") and name not in CUPY_ARRAY_NAMES:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r} in CuPy {real_cupy.__version__}: "
                                 "numpy.ndarray has it, a GPU array would not")
        return super().__getattribute__(name)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        return _call_on_device(getattr(ufunc, method), name, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in PRINTING:
            return super().__array_function__(func, types, _to_host(args), _to_host(kwargs))
        raise TypeError(f"numpy.{func.__name__} was called on a device array: use the array module "
                        f"(backend.array_module(x).{func.__name__}); CuPy arrays are not NumPy arrays")

    def get(self) -> np.ndarray:
        """A host copy, like ``cupy.ndarray.get()``."""
        return np.array(self.view(np.ndarray))


def _to_host(value):
    """The same value with every device array seen as the NumPy array it wraps (lists, tuples, dicts too)."""
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    return value


def _to_device(value):
    """Results back on the device: arrays and NumPy scalars become DeviceArrays (a 0-d one for a scalar)."""
    if isinstance(value, np.ndarray):
        return value.view(DeviceArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    return value


def _host_arrays(value):
    """The plain NumPy arrays (host arrays) inside value."""
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _host_arrays(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _host_arrays(v)]
    return []


def _call_on_device(function, name, args, kwargs):
    """Run a NumPy function the way CuPy would run its own: host arrays are refused, results stay on the device."""
    calls[name] += 1
    host = _host_arrays((args, kwargs))
    if host:
        raise TypeError(f"cupy.{name} got a host array (numpy.ndarray of shape {host[0].shape}, "
                        f"dtype {host[0].dtype}); CuPy raises 'Unsupported type' here: move it with .to('cuda')")
    outs = kwargs.get("out")
    result = function(*_to_host(args), **_to_host(kwargs))
    if outs is not None:  # results written in place: hand back the caller's own device arrays
        return outs[0] if isinstance(outs, tuple) and len(outs) == 1 else outs
    return _to_device(result)


def _cupy_twin(path: str):
    """The object CuPy has under ``cupy.<path>``; None when CuPy cannot be imported here.

    AttributeError when CuPy lacks the name: NumPy has it, a GPU would not."""
    if real_cupy is None:
        return None
    twin = real_cupy
    for part in path.split("."):
        if not hasattr(twin, part):
            raise AttributeError(f"CuPy {real_cupy.__version__} has no cupy.{path}: NumPy has it, a GPU would not")
        twin = getattr(twin, part)
    return twin


def _check_signature(twin, path: str, args, kwargs):
    """The call must fit CuPy's signature, where CuPy's function has one (compiled ones often do not)."""
    try:
        signature = inspect.signature(twin)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"cupy.{path} does not take these arguments in CuPy {real_cupy.__version__}: {err}") from err


class _Function:
    """A NumPy function or ufunc as the device's module offers it."""

    def __init__(self, numpy_function, path: str):
        self._function, self._path, self._twin = numpy_function, path, _cupy_twin(path)

    def __call__(self, *args, **kwargs):
        if self._twin is not None:
            _check_signature(self._twin, self._path, args, kwargs)
        if self._path in TRANSFERS:
            return _to_device(self._function(*_to_host(args), **_to_host(kwargs)))
        return _call_on_device(self._function, self._path, args, kwargs)

    def __getattr__(self, method):  # a ufunc's methods: xp.add.at, xp.maximum.reduce
        return _Function(getattr(self._function, method), f"{self._path}.{method}")


class _Namespace:
    """NumPy's namespace (or a sub-namespace such as lib.stride_tricks) behind the device guard."""

    def __init__(self, numpy_namespace, path: str = ""):
        self._numpy, self._path = numpy_namespace, path

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        path = f"{self._path}.{name}" if self._path else name
        value = getattr(self._numpy, name)
        if isinstance(value, np.ufunc) or (callable(value) and not isinstance(value, type)):
            return _Function(value, path)  # which checks the name against CuPy's
        _cupy_twin(path)  # sub-namespaces, dtypes, constants, classes: the name must exist in CuPy too
        return _Namespace(value, path) if isinstance(value, types.ModuleType) else value


class _Device:
    """``cupy.cuda.Device()``: one device, always ready."""
    id = 0

    def synchronize(self):
        """Nothing is queued: NumPy has finished each call before it returns."""


class _MemoryPool:
    """``cupy.get_default_memory_pool()``, reporting no device memory (the stand-in's arrays live in host RAM)."""

    def free_all_blocks(self):
        """Nothing is held back."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0


class StandInCupy(_Namespace):
    """The module ``backend`` hands out for device arrays: NumPy behind the guard, plus CuPy's own extras."""

    ndarray = DeviceArray
    __version__ = "stand-in on NumPy " + np.__version__

    def __init__(self):
        super().__init__(np)
        self.cuda = types.SimpleNamespace(
            is_available=lambda: True,
            Device=_Device,
            runtime=types.SimpleNamespace(getDeviceProperties=lambda index: {"name": b"CuPy stand-in (NumPy)"}))

    @staticmethod
    def asnumpy(a) -> np.ndarray:
        """A host copy of a device array; host arrays pass through, as in CuPy."""
        return a.get() if isinstance(a, DeviceArray) else np.asarray(a)

    @staticmethod
    def get_default_memory_pool() -> _MemoryPool:
        return _MemoryPool()


cupy = StandInCupy()
"""The stand-in module; ``tests/conftest.py`` installs it as the backend's CuPy for the "stand-in" device cases."""


def install(set_attribute=setattr) -> StandInCupy:
    """Make the backend hand out the stand-in as its CuPy. Tests pass ``monkeypatch.setattr``, which undoes it
    when the test ends; a script keeps the default, for the rest of the process."""
    set_attribute(backend, "_cupy", cupy)
    set_attribute(backend, "_cupy_problem", None)
    return cupy
