"""Shared fixtures and options.

Every device test runs once per device; CUDA cases skip with the reason. ``--exercises`` switches the library
to the learner's kernels in ``tinyxception/exercises/`` (``--exercises-dir=PATH``: another folder laid out the
same way), so the chapter tests check the learner's code (see docs/learning-with-tests.md).
"""
import pytest
from hypothesis import Phase, settings

from tinyxception import backend, exercise_mode

settings.register_profile("exercise-mode-check", phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""For tests/test_exercises.py, which only asks whether chapters fail: no time spent shrinking failures."""


def pytest_addoption(parser):
    group = parser.getgroup("tinyxception")
    group.addoption("--exercises", action="store_true",
                    help="run the library with the learner's kernels from tinyxception/exercises/")
    group.addoption("--exercises-dir", metavar="PATH", default=None,
                    help="like --exercises, with the kernels from PATH (write it with =: --exercises-dir=PATH)")


def pytest_configure(config):
    folder = config.getoption("--exercises-dir")
    if folder is None and config.getoption("--exercises"):
        folder = exercise_mode.PACKAGE_FOLDER
    if folder is not None:
        exercise_mode.use_exercises(folder)


def pytest_report_header(config):
    folder = exercise_mode.exercise_folder()
    return f"tinyxception: {'exercise mode, kernels from ' + str(folder) if folder else 'reference kernels'}"


def _device_params():
    reason = backend.cuda_problem() or ""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not backend.cuda_available(),
                                                                 reason=f"no CUDA device: {reason}")),
    ]


@pytest.fixture(params=_device_params())
def device(request):
    """"cpu", and "cuda" where a GPU is available."""
    return request.param
