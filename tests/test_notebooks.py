"""The notebooks: each one runs top to bottom on its own, and is stored without outputs.

The notebooks are one of the three ways people use the package, so a notebook that no longer runs (an API
renamed, a number that changed, a cell that raises) is a bug like any other. Every notebook is executed in a
fresh kernel from the notebooks/ folder, as a learner would run it; any error in any cell fails the test. The
"your turn" cells (``tx.exercises.check(NAME)``) are run against a learner's folder of untouched stubs (they must
say "not implemented yet", and the notebook must go on) and, for the notebooks that have them, once more against
the reference solutions (they must say "pass"); ``TINYXCEPTION_CHECK_FOLDER`` points the checks at the folder.
"""
import shutil
from pathlib import Path

import pytest

from tinyxception.kernels.learner import CHECK_VARIABLE, EXERCISES, STUBS_FOLDER

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
REFERENCE = Path(__file__).resolve().parents[1] / "tinyxception" / "kernels" / "reference"
CELL_TIMEOUT_S = 600  # generous: the slowest cell (training in 07) takes well under this; it only stops a hang
# One BLAS thread per kernel: on a busy 2-core machine, OpenBLAS threads that spin-wait for a core slowed the
# training notebooks down four- to sevenfold; the notebooks' matrices are small enough that one thread loses little.
KERNEL_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _read(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[test]')")
    return nbformat.read(path, as_version=4)


def test_the_chapters_are_numbered_notebooks():
    """notebooks/ holds the nine chapters 01 ... 09, and every notebook's file name starts with its own two-digit
    number (later topics, such as 10 on a photo and 11 on many workers, continue the numbering).

    The README and the docs refer to the notebooks by number; a missing, renumbered or doubled one breaks that order.
    """
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert all(n.isdigit() for n in numbers) and len(set(numbers)) == len(numbers), f"found {numbers}"
    assert {f"{i:02d}" for i in range(1, 10)} <= set(numbers), f"found {[p.name for p in NOTEBOOKS]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    """Code cells carry no outputs and no execution counts.

    Every number a notebook states must come from running it; a stored output could contradict the code and
    would make diffs unreadable.
    """
    stale = [i for i, cell in enumerate(_read(path).cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not stale, f"{path.name}: cells {stale} hold outputs or execution counts; clear them before committing"


def check_cells(notebook) -> list:
    """The notebook's "your turn" cells: the code cells that call tx.exercises.check."""
    return [cell for cell in notebook.cells if cell.cell_type == "code" and "tx.exercises.check(" in cell.source]


def checked_exercises(path) -> list[str]:
    """The exercise names the notebook's "your turn" cells check."""
    return [cell.source.split('check("')[1].split('"')[0] for cell in check_cells(_read(path))]


def test_every_exercise_is_checked_in_its_notebook():
    """Each exercise ends the notebook that teaches it with a "your turn" cell calling tx.exercises.check(NAME),
    so a learner checks it where it was taught; and every such cell names a real exercise."""
    by_notebook = {path.stem: checked_exercises(path) for path in NOTEBOOKS}
    for name, entry in EXERCISES.items():
        assert name in by_notebook[entry.notebook], f"{entry.notebook} has no check cell for {name}"
    assert set(sum(by_notebook.values(), [])) <= set(EXERCISES)


def learner_folder(folder: Path, solutions: bool) -> Path:
    """A learner's folder holding the untouched stubs, or (solutions=True) the reference tier's files."""
    folder.mkdir()
    for module in {entry.module for entry in EXERCISES.values()}:
        source = REFERENCE / f"{module}.py" if solutions else STUBS_FOLDER / f"{module}.py.txt"
        shutil.copy(source, folder / f"{module}.py")
    return folder


def execute(path, monkeypatch, folder: Path):
    """The notebook run in a fresh python3 kernel from notebooks/, its checks reading `folder`."""
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[test]')")
    for name, value in {**KERNEL_ENV, CHECK_VARIABLE: str(folder)}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    monkeypatch.delenv("TINYXCEPTION_EXERCISES", raising=False)
    notebook = _read(path)
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    return notebook


def printed(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    """The notebook executes in a fresh python3 kernel, from notebooks/, without an error in any cell, with a
    learner's folder holding the untouched stubs: every "your turn" check says "not implemented yet" and the
    notebook still runs to its end.

    Assertions inside the notebooks (parameter counts, gradient checks, output shapes) fail the run too, so
    this also checks the claims that the notebooks assert.
    """
    notebook = execute(path, monkeypatch, learner_folder(tmp_path / "stubs", solutions=False))
    for cell in check_cells(notebook):
        assert "not implemented yet" in printed(cell), f"{cell.source}: {printed(cell)!r}"


WITH_CHECKS = [path for path in NOTEBOOKS if checked_exercises(path)]


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_CHECKS, ids=[p.stem for p in WITH_CHECKS])
def test_your_turn_checks_pass_on_the_reference_solutions(path, monkeypatch, tmp_path):
    """The same notebook with the reference tier's files as the learner's folder: every "your turn" check
    says "pass" (run a second time only for the notebooks that have such cells)."""
    notebook = execute(path, monkeypatch, learner_folder(tmp_path / "solutions", solutions=True))
    for cell in check_cells(notebook):
        assert ": pass (" in printed(cell), f"{cell.source}: {printed(cell)!r}"
