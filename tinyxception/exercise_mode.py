"""Learner mode: the library runs the learner's own kernels from ``tinyxception/exercises/`` instead of its own.

Each core kernel a learner can write (depthwise and pointwise conv forward and backward, batch-norm backward,
max-pool and global-average-pool backward, the autograd topological sort) is a plain function in the library,
marked ``@exercise(...)``. In reference mode (the default) the mark costs one flag check per call. In exercise
mode the marked function hands its arguments to the function of the same name in the learner's folder, so the
chapter tests that check the library now check the learner's code:

    pytest --exercises -m ch2_conv                       # the stubs in tinyxception/exercises/
    pytest --exercises-dir=~/my_kernels -m ch2_conv      # a folder of your own, laid out the same way (note the =)
    TINYXCEPTION_EXERCISES=1 python my_script.py         # =1: the package's folder; or =/path/to/folder

The reference solutions are the marked functions themselves (``reference(name)`` returns one, unmarked).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_FOLDER = Path(__file__).parent / "exercises"
ENVIRONMENT_VARIABLE = "TINYXCEPTION_EXERCISES"


@dataclass(frozen=True)
class Exercise:
    """One kernel a learner writes: where (``<folder>/<module>.py``), which notebook explains it, which tests."""

    name: str
    module: str
    chapter: str
    notebook: str
    reference: object

    def hint(self) -> str:
        """What the stub says: where to read up and how to check the work."""
        return (f"not implemented yet: {self.name} in exercises/{self.module}.py. "
                f"Read notebooks/{self.notebook}.ipynb, then check it with: pytest --exercises -m {self.chapter}")


EXERCISES: dict[str, Exercise] = {}
"""name -> Exercise, in the order the library defines them."""

_loaded: dict[tuple[Path, str], object] = {}


def _folder_from_environment() -> Path | None:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value in ("", "0"):
        return None
    return PACKAGE_FOLDER if value == "1" else Path(value).expanduser()


_folder = _folder_from_environment()


def use_exercises(folder=PACKAGE_FOLDER) -> None:
    """Switch exercise mode on with the learner's kernels in `folder`, or off with ``folder=None``."""
    global _folder
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise ValueError(f"use_exercises: folder must be an existing directory, got {str(folder)!r}")
    _folder = None if folder is None else Path(folder).expanduser()
    _loaded.clear()


def exercise_folder() -> Path | None:
    """The folder whose kernels are in use, or None in reference mode."""
    return _folder


def learner_module(folder: Path, module: str):
    """``<folder>/<module>.py`` imported as a fresh module (once per folder), or a clear error."""
    key = (Path(folder).resolve(), module)
    if key not in _loaded:
        path = key[0] / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(f"exercise mode: no file {path} (copy tinyxception/exercises/{module}.py there)")
        spec = importlib.util.spec_from_file_location(f"tinyxception_exercises_{module}_{abs(hash(key))}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        _loaded[key] = loaded
    return _loaded[key]


def learner_function(name: str, folder=None):
    """The learner's version of exercise `name` from `folder` (default: the folder in use)."""
    entry, folder = EXERCISES[name], folder or _folder
    function = getattr(learner_module(folder, entry.module), name, None)
    if not callable(function):
        raise AttributeError(f"exercise mode: {folder / (entry.module + '.py')} defines no function {name}")
    return function


def exercise(module: str, chapter: str, notebook: str):
    """Mark a reference kernel as exercise ``<module>.<its name>``, checked by the tests of `chapter`."""
    def mark(reference):
        name = reference.__name__
        EXERCISES[name] = Exercise(name, module, chapter, notebook, reference)

        @functools.wraps(reference)
        def dispatch(*args, **kwargs):
            if _folder is None:
                return reference(*args, **kwargs)
            return learner_function(name)(*args, **kwargs)
        return dispatch
    return mark


def reference(name: str):
    """The library's own solution of exercise `name`, whatever the mode."""
    return EXERCISES[name].reference


def todo(name: str) -> NotImplementedError:
    """The error a stub raises: ``raise todo("depthwise_conv2d_forward")``."""
    return NotImplementedError(EXERCISES[name].hint())
