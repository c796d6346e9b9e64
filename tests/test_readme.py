"""The README's library example runs as printed, from a checkout with its data/ folder, and its
lists of models, presets and library names are the ones the code has now."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from helpers import FIXTURES

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def library_example() -> list[str]:
    return [block for block in python_blocks(README.read_text()) if "run_training(" in block]


def test_the_readmes_library_snippet_runs_to_its_last_line(tmp_path, monkeypatch):
    (snippet,) = library_example()
    (tmp_path / "data").mkdir()
    for name in ("train.csv", "test.csv", "solution.csv"):
        shutil.copy(FIXTURES / name, tmp_path / "data" / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert len(namespace["labels"]) == 500
    assert 0.5 < namespace["score"] <= 1
    assert Path(namespace["page"]).is_file() and (tmp_path / "compare" / "compare.html").is_file()


def test_the_readmes_generated_lists_are_what_the_code_lists_now():
    from digits.docs import stale_blocks

    text = README.read_text()
    for block in ("models", "presets", "api"):
        assert f"<!-- begin: digits {block} -->" in text, block
    assert stale_blocks(text) == [], "run `python -m digits.docs` to rewrite them"


def first_column(block: str) -> list[str]:
    """The first cell of each row of the README's generated table ``block``, without backquotes."""
    table = README.read_text().split(f"<!-- begin: digits {block} -->\n")[1].split("<!-- end:")[0]
    return [row.split("|")[1].strip().strip("`") for row in table.splitlines()[2:]]


def test_the_readmes_model_and_preset_tables_name_what_digits_models_and_digits_presets_list(cli):
    listed = {}
    for command in ("models", "presets"):
        result = cli(command)
        assert result.code == 0, result.err
        rows = result.out.split("\nhere: ")[0].splitlines()[1:]  # the table, less the machine's line
        # its first column; a wrapped description continues on a line that starts with spaces
        listed[command] = [row.split()[0] for row in rows if row[:1].strip()]
    assert first_column("models") == listed["models"]
    assert first_column("presets") == listed["presets"]


def test_a_stale_list_is_found_and_rewritten(tmp_path):
    from digits.docs import main, stale_blocks

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- begin: digits models -->\n| `softmax` | 1 |\n<!-- end: digits models -->\nend\n")
    assert stale_blocks(readme.read_text()) == ["models"]
    assert main(["--check", str(readme)]) == 1
    assert main([str(readme)]) == 0
    assert stale_blocks(readme.read_text()) == [] and main(["--check", str(readme)]) == 0
    assert "| `tutorial-mlp` | 25,450 |" in readme.read_text() and readme.read_text().endswith("end\n")


# A measured time or speed-up: "7.5 s", "64 ms", "16.9 minutes", "4x slower", "ten times faster".
TIMING = re.compile(r"\d\s?(ms|µs|us)\b|\d\s(s|seconds?|min|minutes?|hours?)\b"
                    r"|(\d|\b(two|three|four|five|ten|twenty|a hundred))\s?(x|times)\s(faster|slower)\b", re.IGNORECASE)


def test_no_docstring_carries_a_measured_timing():
    # Timings go stale in a docstring, where nobody re-measures them: benchmarks/RESULTS.md holds them.
    found = []
    for path in sorted((README.parent / "src" / "digits").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = re.sub(r"``.*?``", "", ast.get_docstring(node) or "", flags=re.DOTALL)  # literals: examples
                found += [f"{path.name}:{getattr(node, 'lineno', 1)}: {m[0]!r}" for m in TIMING.finditer(doc)]
    assert found == []
