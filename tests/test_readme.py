"""The README's library example runs as printed, from a checkout with its data/ folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from helpers import FIXTURES

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def test_the_readmes_library_snippet_runs_to_its_last_line(tmp_path, monkeypatch):
    (snippet,) = [block for block in python_blocks(README.read_text()) if "train_run(" in block]
    (tmp_path / "data").mkdir()
    for name in ("train.csv", "test.csv"):
        shutil.copy(FIXTURES / name, tmp_path / "data" / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert len(namespace["labels"]) == 500
    assert Path(namespace["page"]).is_file() and (tmp_path / "compare" / "compare.html").is_file()
