"""Checking the learner's exercises: one at a time (check), all at once (the progress report), the solution
after passing (solution) and a fresh stub (reset). In Python: ``tx.exercises.check("depthwise_conv2d_forward")``;
on the command line:

    python -m tinyxception exercises                          # progress: every exercise, "K of N pass"
    python -m tinyxception exercises check NAME               # that exercise's cases: pass, or the first failure
    python -m tinyxception exercises solution NAME [--yes]    # the reference tier's solution beside yours
    python -m tinyxception exercises reset NAME               # the stub back (your file kept as a backup)

Each takes ``--folder PATH`` (default: $TINYXCEPTION_CHECK_FOLDER, else the learner folder in use, else
tinyxception/exercises/). The learner's file is read again at every check, so an edit shows at once. The cases
are the small labelled problems of ``exercise_cases.py``; the chapter tests (``pytest --exercises -m ex_NAME``
or ``-m <chapter>``) try many more.
"""
import ast
import inspect
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from . import kernels
from .exercise_cases import CASES, case_failure
from .kernels.learner import CHECK_VARIABLE, EXERCISES, PACKAGE_FOLDER, STUBS_FOLDER, check_folder, \
    defined, reference

TODO_IMPORT = "from tinyxception.exercise_mode import todo"


def default_folder(folder=None) -> Path:
    """`folder`, else $TINYXCEPTION_CHECK_FOLDER, else the learner folder in use, else tinyxception/exercises/."""
    chosen = folder or os.environ.get(CHECK_VARIABLE, "").strip() or kernels.in_use()
    return check_folder(PACKAGE_FOLDER if chosen in kernels.TIERS else chosen)


def check_exercise(name: str, folder=None) -> tuple[str, str]:
    """("pass" | "fail" | "not started", detail) for the learner's `name` in `folder`, read afresh: the detail
    of a failure names the first failing case (its number, label and parameters) and what differs."""
    cases, folder = CASES[name], default_folder(folder)
    try:
        function = defined(name, folder, fresh=True)
    except Exception as err:  # a learner's file that does not load is a "fail" with its message, not a crash
        return "fail", f"{type(err).__name__}: {err}"
    if function is None:  # a folder from before this exercise existed: `exercises reset NAME` adds its stub
        return "not started", ""
    for number, case in enumerate(cases, 1):
        try:
            why = case_failure(name, function, case)
        except NotImplementedError as err:
            if number == 1:
                return "not started", ""
            why = f"NotImplementedError: {err}"
        except Exception as err:  # any bug of the learner's is reported with the case that shows it
            why = f"{type(err).__name__}: {err}"
        if why:
            return "fail", f"case {number} of {len(cases)}, {case.label}: {why}"
    return "pass", f"{len(cases)} cases"


def verdict(name: str, folder=None) -> str:
    """The one-line verdict that ``check`` prints."""
    _known(name)
    (status, detail), entry = check_exercise(name, folder), EXERCISES[name]
    if status == "pass":
        return (f"{name}: pass ({detail}). Compare with the solution: "
                f"python -m tinyxception exercises solution {name}")
    if status == "not started":
        return (f"{name}: not implemented yet (write it in {default_folder(folder) / entry.module}.py; "
                f"notebook {entry.notebook} explains it)")
    return f"{name}: FAIL on {detail}"


def check(name: str, folder=None) -> bool:
    """Check exercise `name` (e.g. "depthwise_conv2d_forward") on its cases and print the verdict: pass, not
    implemented yet, or the first failing case. True when it passes. Works in a notebook cell and a script."""
    print(text := verdict(name, folder))
    return text.startswith(f"{name}: pass")


def _known(name: str) -> None:
    if name not in EXERCISES:
        raise ValueError(f"exercises: no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")


def report(folder=None) -> list[tuple[str, str, str, str]]:
    """(chapter, exercise, status, detail) for every exercise, in the order of the path."""
    return [(e.chapter, name, *check_exercise(name, folder)) for name, e in EXERCISES.items()]


def _function_lines(text: str, name: str) -> tuple[int, int] | None:
    """(first, last) line, 1-based, of the top-level function `name` in `text` (decorators included): its last
    definition, the one Python uses."""
    spans = [(min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno)
             for node in ast.parse(text).body if isinstance(node, ast.FunctionDef) and node.name == name]
    return spans[-1] if spans else None


def solution(name: str, folder=None, yes: bool = False) -> bool:
    """Print the reference tier's solution of `name` and the learner's version. Before the learner's passes,
    ask first (refused where nobody can answer, e.g. in a notebook: pass ``yes=True``). True when shown."""
    _known(name)
    status, _ = check_exercise(name, folder)
    if status != "pass" and not yes and not _confirmed(name, status):
        return False
    module, folder = EXERCISES[name].module, default_folder(folder)
    print(f"--- the solution: {name} in tinyxception/kernels/reference/{module}.py ---\n")
    print(inspect.getsource(reference(name)))
    print(f"--- yours ({status}): {name} in {folder / module}.py ---\n")
    print(_function_source(folder / f"{module}.py", name))
    return True


def _function_source(path: Path, name: str) -> str:
    """The text of function `name` in the file at `path`, or a line saying why there is none."""
    try:
        text = path.read_text()
        first, last = _function_lines(text, name)
        return "\n".join(text.splitlines()[first - 1:last])
    except (OSError, SyntaxError, TypeError) as err:  # no file, one that does not parse, no such function
        return f"(no readable function {name} in {path}: {err})"


def _confirmed(name: str, status: str) -> bool:
    """Whether the learner wants the solution of an exercise that does not pass yet."""
    if sys.stdin is not None and sys.stdin.isatty():
        return input(f"{name} does not pass yet ({status}). Show the solution anyway? [y/N] ").lower() in ("y", "yes")
    print(f"{name} does not pass yet ({status}), so its solution stays hidden. To see it anyway: python -m "
          f"tinyxception exercises solution {name} --yes, or in Python: tx.exercises.solution({name!r}, yes=True)")
    return False


def reset(name: str, folder=None) -> Path | None:
    """Put the stub of `name` back into the learner's file, the rest of the file unchanged (all of it, when it
    does not parse); the file as it was is kept beside it as ``<module>.py.bak-<time>``, whose path is returned
    (None when there was no file)."""
    _known(name)
    module, folder = EXERCISES[name].module, default_folder(folder)
    pristine, path = (STUBS_FOLDER / f"{module}.py.txt").read_text(), folder / f"{module}.py"
    backup = path.with_name(f"{path.name}.bak-{datetime.now():%Y%m%d-%H%M%S-%f}") if path.exists() else None
    backup and shutil.copy2(path, backup)
    path.write_text(_with_stub(path.read_text() if backup else None, pristine, name))
    print(f"{name}: the stub is back in {path}" + (f"; your file as it was: {backup}" if backup else ""))
    return backup


def _with_stub(text: str | None, pristine: str, name: str) -> str:
    """`text` with function `name` replaced by (or, when missing, followed by) its stub from `pristine`."""
    try:
        span = _function_lines(text, name)
    except (SyntaxError, TypeError):  # a file that does not parse, or no file (text None): all the stubs
        return pristine
    first, last = _function_lines(pristine, name)
    stub = pristine.splitlines()[first - 1:last]
    if TODO_IMPORT not in text:  # the stub raises todo(...): a file of the learner's own may lack the import
        stub = [TODO_IMPORT, "", ""] + stub
    lines = text.splitlines()
    lines = lines[:span[0] - 1] + stub + lines[span[1]:] if span else lines + ["", ""] + stub
    return "\n".join(lines).rstrip("\n") + "\n"


def add_exercise_arguments(parser) -> None:
    """Options of ``python -m tinyxception exercises``."""
    parser.add_argument("action", nargs="?", choices=("check", "solution", "reset"),
                        help="check one exercise, show its solution, or reset it to the stub (default: the report)")
    parser.add_argument("name", nargs="?", choices=EXERCISES, metavar="NAME", help=f"one of: {', '.join(EXERCISES)}")
    parser.add_argument("--folder", default=None, metavar="PATH",
                        help="the folder of your kernels (default: the package's tinyxception/exercises/)")
    parser.add_argument("--yes", action="store_true", help="solution: show it even before your kernel passes")


def run_exercises(args) -> int:
    """The report (exit 0), or an action: check exits 0 on pass and 1 otherwise, solution 1 when held back. A
    folder that does not exist and a missing NAME raise ValueError (the command line's exit 2)."""
    if args.action and args.name is None:
        raise ValueError(f"{args.action} needs the NAME of an exercise: one of {', '.join(EXERCISES)}")
    if args.action:
        actions = {"check": check, "solution": lambda *a: solution(*a, yes=args.yes),
                   "reset": lambda *a: [reset(*a)]}
        return 0 if actions[args.action](args.name, args.folder) else 1
    return _print_report(default_folder(args.folder))


def _print_report(folder: Path) -> int:
    rows = report(folder)
    done = sum(status == "pass" for _, _, status, _ in rows)
    print(f"exercises in {folder}: {done} of {len(rows)} pass\n")
    width = max(map(len, EXERCISES)) + 2
    print(f"  {'chapter':<15}{'exercise':<{width}}status")
    for chapter, name, status, detail in rows:
        print(f"  {chapter:<15}{name:<{width}}{status}" + (f": {detail}" if status == "fail" else ""))
    todo = next((name for _, name, status, _ in rows if status != "pass"), None)
    if todo:
        option = "--exercises" if folder == PACKAGE_FOLDER else f"--exercises-dir={folder}"
        print(f"\nnext: {todo}: read its stub's docstring, then run  python -m tinyxception exercises check "
              f"{todo}  (its tests: pytest {option} -m ex_{todo})")
    return 0
