"""The learner's switch, kept at this import path for the stubs (``from tinyxception.exercise_mode import todo``)
and for scripts: learner mode lives in ``tinyxception.kernels`` (``kernels/learner.py``)."""
from pathlib import Path

from . import kernels
from .kernels.learner import ENVIRONMENT_VARIABLE, EXERCISES, PACKAGE_FOLDER, learner_function, reference, todo

__all__ = ["ENVIRONMENT_VARIABLE", "EXERCISES", "PACKAGE_FOLDER", "exercise_folder", "learner_function",
           "reference", "todo", "use_exercises"]


def use_exercises(folder=PACKAGE_FOLDER) -> None:
    """Switch learner mode on with the learner's kernels in `folder`, or off (the fast tier) with ``folder=None``."""
    kernels.use("fast" if folder is None else folder)


def exercise_folder() -> Path | None:
    """The learner's folder in use, or None when a tier of the library runs."""
    choice = kernels.in_use()
    return choice if isinstance(choice, Path) else None

