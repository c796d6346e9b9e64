"""notebooks/tutorial.ipynb runs top to bottom on the fixture: every cell, as a reader would
run it (Jupyter and `jupyter execute` start the kernel in notebooks/, and the notebook finds
the repository's data/ from there), with a few epochs so that it takes seconds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from helpers import FIXTURES
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "tutorial.ipynb"


def with_parameters(notebook: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """The notebook with a cell setting ``values`` right after its "parameters" cell, as
    papermill injects parameters."""
    (index,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, injected)
    return notebook


def run_notebook(notebook: nbformat.NotebookNode, cwd: Path) -> str:
    """Execute every cell in a fresh kernel in ``cwd``; return all the text it printed."""
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []))


@pytest.fixture
def checkout(tmp_path):
    """A repository as a reader has it after `make data`: data/ (the fixture) and notebooks/."""
    (tmp_path / "data").mkdir()
    for name in ("train.csv", "test.csv", "solution.csv"):
        shutil.copy(FIXTURES / name, tmp_path / "data" / name)
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_tutorial_notebook_runs_from_its_own_folder_on_the_repositorys_data(checkout):
    # No DATA_DIR or RUNS_DIR: the notebook finds ../data as a reader's Jupyter would.
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), EPOCHS=3, CNN_EPOCHS=1)
    printed = run_notebook(notebook, checkout / "notebooks")
    assert "25,450 parameters" in printed
    assert 0.5 < float(re.search(r"^score: (\S+)", printed, re.MULTILINE).group(1)) <= 1
    runs = checkout / "runs" / "notebook"
    for name in ("samples.png", "validation/curves.png", "final/submission.csv",
                 "keras-convnet/submission.csv"):
        assert (runs / name).is_file(), name
    report = Path(re.search(r"^report: (.+)$", printed, re.MULTILINE).group(1))
    assert report.exists() and not (checkout / "notebooks" / "runs").exists()


def test_tutorial_notebook_without_data_says_make_data_and_leaves_no_runs_folder(tmp_path):
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), EPOCHS=1, CNN_EPOCHS=1)
    with pytest.raises(CellExecutionError, match="make data"):
        run_notebook(notebook, tmp_path)
    assert list(tmp_path.iterdir()) == []
