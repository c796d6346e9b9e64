"""notebooks/tutorial.ipynb runs top to bottom on the fixture: every cell, as a reader would
run it, with a few epochs so that it takes seconds."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

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


def test_tutorial_notebook_runs_top_to_bottom_on_the_fixture(tmp_path, kaggle_dir):
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), DATA_DIR=str(kaggle_dir),
                               RUNS_DIR=str(tmp_path / "runs"), EPOCHS=3, CNN_EPOCHS=1)
    printed = run_notebook(notebook, tmp_path)
    assert "25,450 parameters" in printed
    assert 0.5 < float(re.search(r"^score: (\S+)", printed, re.M).group(1)) <= 1
    runs = tmp_path / "runs"
    for name in ("samples.png", "validation/curves.png", "final/submission.csv",
                 "keras-convnet/submission.csv"):
        assert (runs / name).is_file(), name
    report = Path(re.search(r"^report: (.+)$", printed, re.M).group(1))
    assert report.exists()
