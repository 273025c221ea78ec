"""Shared fixtures and options.

Every device test runs once per device: "cpu"; "cuda" on a real GPU, which skips with the reason where there is
none; and "stand-in", the cuda code path on the CPU through ``tests/cupy_stand_in.py``, which runs everywhere.

``--exercises`` switches the library to the learner's kernels in ``tinyxception/exercises/``
(``--exercises-dir=PATH``: another folder laid out the same way), so the chapter tests check the learner's code
(see docs/learning-with-tests.md). ``TINYXCEPTION_KERNELS=reference pytest`` runs every test on the reference tier
of the kernels instead of the fast one.
"""
import pytest
from hypothesis import Phase, settings

from tinyxception import backend, exercise_mode, kernels

import cupy_stand_in

settings.register_profile("exercise-mode-check", phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""For tests/test_exercises.py, which only asks whether chapters fail: no time spent shrinking failures."""


def pytest_addoption(parser):
    group = parser.getgroup("tinyxception")
    group.addoption("--exercises", action="store_true",
                    help="run the library with the learner's kernels from tinyxception/exercises/")
    group.addoption("--exercises-dir", metavar="PATH", default=None,
                    help="like --exercises, with the kernels from PATH (write it with =: --exercises-dir=PATH)")


def pytest_configure(config):
    for name, entry in exercise_mode.EXERCISES.items():  # one marker per exercise: pytest -m ex_<name>
        config.addinivalue_line("markers", f"ex_{name}: the tests of exercise {name} ({entry.chapter})")
    folder = config.getoption("--exercises-dir")
    if folder is None and config.getoption("--exercises"):
        folder = exercise_mode.PACKAGE_FOLDER
    if folder is not None:
        exercise_mode.use_exercises(folder)


def pytest_report_header(config):
    return f"tinyxception: {kernels.describe()}"


def _device_params():
    reason = backend.cuda_problem() or ""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not backend.cuda_available(),
                                                                 reason=f"no CUDA device: {reason}")),
        pytest.param("stand-in", id="stand-in"),
    ]


def _use(request) -> str:
    """The device name for the param; for the stand-in, swap the backend's CuPy while the test runs."""
    if request.param != "stand-in":
        return request.param
    if exercise_mode.exercise_folder() is not None:
        pytest.skip("exercise mode: your kernels may use NumPy directly (tinyxception/exercises/__init__.py), "
                    "so the CuPy stand-in checks only the library's own")
    cupy_stand_in.install(request.getfixturevalue("monkeypatch").setattr)
    return "cuda"


@pytest.fixture(params=_device_params())
def device(request):
    """The device name a test passes to the library: "cpu", or "cuda" for the GPU and for its stand-in."""
    return _use(request)


@pytest.fixture(params=_device_params()[1:])
def gpu(request):
    """"cuda", on a real GPU and on the stand-in: for tests that need a second device besides the CPU."""
    return _use(request)
