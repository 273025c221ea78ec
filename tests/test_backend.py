"""Chapter 1, tensors and autograd: the backend, the one place that chooses NumPy or CuPy.

Exercise: read ``tinyxception/backend.py`` and explain why no other file may import NumPy or CuPy; then find, in
the ops, the one line each uses instead.

The rule that makes GPU support work: ops never call ``numpy.`` on arrays that
may live on the GPU. They ask ``backend.array_module(x)`` instead. These tests
check the switch itself and enforce the rule statically over the source tree.
"""
import ast
import pathlib

import numpy as np
import pytest

import tinyxception as tx
from tinyxception import backend

pytestmark = pytest.mark.ch1_autograd

PACKAGE = pathlib.Path(tx.__file__).parent


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_only_backend_imports_numpy_or_cupy():
    """No file of the library but backend.py imports numpy or cupy, so no op can call numpy on a GPU array.
    The learner's folder (tinyxception/exercises/) is theirs and is not checked: `import numpy as np` is
    what every student writes there."""
    exercises = PACKAGE / "exercises"
    offenders = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if p.name != "backend.py" and exercises not in p.parents
                       and {"numpy", "cupy"} & set(_imported_modules(p)))
    assert offenders == [], f"these files import numpy/cupy directly; use backend.array_module: {offenders}"


def test_array_module_of_numpy_arrays_is_numpy():
    """CPU arrays get NumPy, on every machine."""
    assert backend.array_module(np.zeros(2), np.ones(3)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_available_devices_always_lists_cpu():
    """cpu is always there; cuda appears exactly when CuPy sees a GPU."""
    devices = backend.available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == backend.cuda_available()


@pytest.mark.skipif(backend.cuda_available(), reason="this machine has a GPU; the error path cannot occur")
def test_cuda_without_a_gpu_says_why():
    """Asking for cuda without a usable GPU raises, naming the reason (not installed / no device)."""
    with pytest.raises(RuntimeError, match="cuda.*(not installed|is_available|GPU)"):
        tx.tensor(np.zeros(2), device="cuda")


def test_unknown_device_is_rejected():
    """A typo in the device name is an error that lists the valid names."""
    with pytest.raises(ValueError, match=r"\('cpu', 'cuda'\).*'gpu'"):
        backend.to_device(np.zeros(2), "gpu")


def test_mixing_devices_names_both(gpu):
    """An op on a CPU and a GPU tensor raises an error naming both devices."""
    a = tx.tensor(np.ones(2), device="cpu")
    b = tx.tensor(np.ones(2), device=gpu)
    with pytest.raises(ValueError, match="cpu.*cuda|cuda.*cpu"):
        a + b


def test_to_device_round_trip(device):
    """to(device) then .numpy() returns the same values as a numpy array."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tx.tensor(values).to(device)
    assert t.device == device
    np.testing.assert_array_equal(t.numpy(), values)
