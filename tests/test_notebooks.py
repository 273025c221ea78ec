"""The notebooks: each one runs top to bottom on its own, and is stored without outputs.

The notebooks are one of the three ways people use the package, so a notebook that no longer runs (an API
renamed, a number that changed, a cell that raises) is a bug like any other. Every notebook is executed in a
fresh kernel from the notebooks/ folder, as a learner would run it; any error in any cell fails the test.
"""
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """The notebook executes in a fresh python3 kernel, from notebooks/, without an error in any cell.

    Assertions inside the notebooks (parameter counts, gradient checks, output shapes) fail the run too, so
    this also checks the claims that the notebooks assert.
    """
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[test]')")
    for name, value in KERNEL_ENV.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    notebook = _read(path)
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
