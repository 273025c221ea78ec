"""Learner mode: the library runs the learner's own kernels, from ``tinyxception/exercises/`` or another folder.

Each exercise but those of chapter 4 (``middle_flow_block`` and ``down_block``, which assemble the library's layers
into blocks of the network and are checked as modules) is a kernel of the registry (``tinyxception.kernels``)
that a learner writes in ``<folder>/<module>.py`` with the same name and signature as in
``kernels/reference/<module>.py``. In learner mode the registry hands those kernels' arguments to the learner's
functions, so the chapter tests that check the library now check the learner's code:

    pytest --exercises -m ch2_conv                       # the stubs in tinyxception/exercises/
    pytest --exercises-dir=~/my_kernels -m ch2_conv      # a folder of your own, laid out the same way (note the =)
    TINYXCEPTION_EXERCISES=1 python my_script.py         # =1: the package's folder; or =/path/to/folder

A learner's file is theirs: it may import numpy or anything else. It is read again whenever it changes on disk,
so an edit shows at the next call, in a notebook too. The solutions are the reference tier's files.
"""
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_FOLDER = Path(__file__).resolve().parent.parent / "exercises"
STUBS_FOLDER = Path(__file__).resolve().parent / "stubs"
"""The pristine stubs, ``<module>.py.txt``: what ``exercises reset NAME`` restores (tinyxception/exercises/ holds
the same text until a learner edits it)."""
ENVIRONMENT_VARIABLE = "TINYXCEPTION_EXERCISES"
CHECK_VARIABLE = "TINYXCEPTION_CHECK_FOLDER"
"""The folder that check / solution / reset read when none is given, without switching learner mode on."""
OFF = ("", "0", "false", "off", "no")
ON = ("1", "true", "on", "yes")


@dataclass(frozen=True)
class Exercise:
    """One kernel a learner writes: where (``<folder>/<module>.py``), which notebook explains it, which tests."""

    name: str
    module: str
    chapter: str
    notebook: str

    def hint(self) -> str:
        """What the stub says: where to read up and how to check the work."""
        return (f"not implemented yet: {self.name} in exercises/{self.module}.py. "
                f"Read notebooks/{self.notebook}.ipynb, then check it with: tx.exercises.check({self.name!r}) "
                f"or python -m tinyxception exercises check {self.name} (all its tests: "
                f"pytest --exercises -m ex_{self.name}; the chapter: pytest --exercises -m {self.chapter})")


# (chapter, notebook that teaches it, module, its exercises): the path, each step needing only earlier ones
_PATH = (
    ("ch1_autograd", "01_tensors_and_autograd", "autograd", "topological_order linear_forward linear_backward"),
    ("ch2_conv", "02_depthwise_pointwise_regular_conv", "conv",
     "depthwise_conv2d_forward depthwise_conv2d_backward pointwise_conv2d_forward pointwise_conv2d_backward"),
    ("ch2_conv", "03_inception_hypothesis_spectrum", "conv", "conv2d_forward conv2d_backward"),
    ("ch3_norm_pool", "04_batchnorm_relu_pooling", "norm",
     "batch_norm_forward batch_norm_inference_forward batch_norm_backward"),
    ("ch3_norm_pool", "04_batchnorm_relu_pooling", "pool",
     "max_pool2d_forward max_pool2d_backward global_avg_pool2d_forward global_avg_pool2d_backward"),
    ("ch3_norm_pool", "04_batchnorm_relu_pooling", "norm", "relu_forward relu_backward"),
    ("ch4_xception", "05_building_xception", "network", "middle_flow_block down_block"),
    ("ch5_training", "01_tensors_and_autograd", "training",
     "softmax_cross_entropy_forward softmax_cross_entropy_backward"),
    ("ch5_training", "07_training_on_digits", "training", "sgd_momentum_step"),
)
EXERCISES: dict[str, Exercise] = {name: Exercise(name, module, chapter, notebook)
                                  for chapter, notebook, module, names in _PATH for name in names.split()}
"""name -> Exercise, in the order of the path."""

_loaded: dict[Path, tuple[tuple[int, int], object]] = {}


def check_folder(folder) -> Path:
    """folder as an absolute Path, or a ValueError naming it when it is not an existing directory."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"learner mode: the exercise folder must be an existing directory, got {str(folder)!r}")
    return path.resolve()


def folder_from_environment() -> Path | None:
    """The folder TINYXCEPTION_EXERCISES asks for: the package's for 1/true/on/yes, none for unset/0/false/off/no,
    otherwise the path it holds (which must exist)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value.lower() in OFF:
        return None
    return PACKAGE_FOLDER if value.lower() in ON else check_folder(value)


def learner_module(folder: Path, module: str, fresh: bool = False):
    """``<folder>/<module>.py`` imported as a fresh module, again whenever the file changed (always, when
    `fresh`); None when there is no such file."""
    path = Path(folder).resolve() / f"{module}.py"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    version = (stat.st_mtime_ns, stat.st_size)
    if fresh or path not in _loaded or _loaded[path][0] != version:
        spec = importlib.util.spec_from_file_location(f"tinyxception_exercises_{module}_{abs(hash(path))}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        _loaded[path] = version, loaded
    return _loaded[path][1]


def defined(name: str, folder, fresh: bool = False):
    """The learner's function `name` from `folder` (read again when `fresh`), or None when the folder has no such
    file or function: a folder written before that exercise existed."""
    function = getattr(learner_module(folder, EXERCISES[name].module, fresh), name, None)
    return function if callable(function) else None


def learner_function(name: str, folder, fresh: bool = False):
    """The learner's version of exercise `name` from `folder` (read again when `fresh`), or a clear error."""
    function = defined(name, folder, fresh)
    if function is None:
        module = EXERCISES[name].module
        path = Path(folder).resolve() / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(f"learner mode: no file {path} (copy tinyxception/exercises/{module}.py there)")
        raise AttributeError(f"learner mode: {path} defines no function {name}")
    return function


def dispatcher(folder: Path, name: str, fallback):
    """A kernel that calls the learner's `name` from `folder`, read at call time (so edits show at once). Where
    the folder has none (it predates that exercise) the reference's `fallback` runs, so older work keeps passing;
    the exercise's own check reports it as not started."""
    def learners_kernel(*args):
        return (defined(name, folder) or fallback)(*args)
    learners_kernel.__name__ = learners_kernel.__qualname__ = name
    return learners_kernel


def reference(name: str):
    """The reference solution of exercise `name`: ``kernels/reference/<module>.py``'s function of that name (for
    ``network``, which assembles layers rather than computing on arrays, the library's own block)."""
    return getattr(importlib.import_module(f"tinyxception.kernels.reference.{EXERCISES[name].module}"), name)


def todo(name: str) -> NotImplementedError:
    """The error a stub raises: ``raise todo("depthwise_conv2d_forward")``."""
    return NotImplementedError(EXERCISES[name].hint())
