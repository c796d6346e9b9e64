"""``python -m digits.docs [--check] [README]``: the README's lists that the code itself knows,
the models (the registry), the presets (their TOML files) and the library API
(``digits.__all__`` with each name's first docstring line), written between marker lines::

    <!-- begin: digits models -->
    ...generated...
    <!-- end: digits models -->

so that they cannot go stale: ``--check`` (and a test) fails when one differs from what this
module writes. Run it after adding a model, a preset or a public name."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# A constant's docstring is its type's: what it is, in words, for the API table.
_CONSTANTS = {"TUTORIAL": "The 2017 tutorial's recipe, a `TrainConfig`: tutorial-mlp, RMSprop lr 0.001, "
                          "batch 64, 25 epochs, the last 5% of rows held out."}


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _first_sentence(doc: str) -> str:
    """A docstring's first sentence, its reST literals (````x````) as Markdown's (```x```)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]
    return sentence.replace("``", "`")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_table() -> str:
    """Every registered model, as ``digits models`` lists them."""
    import digits

    return _table(("model", "parameters", "description", "target"), [
        (f"`{info.name}`", f"{digits.count_parameters(digits.create_model(info.name)):,}", info.description,
         info.target) for info in digits.list_models()])


def preset_table() -> str:
    """Every shipped preset: what it trains, its per-hardware tables and its target, as
    ``digits presets`` lists them (less the column for this machine)."""
    import digits

    rows = []
    for name in digits.list_presets():
        preset = digits.load_preset(name)
        tables = "; ".join(f"`{line}`" for line in preset.device_tables()) or "none"
        rows.append((f"`{name}`", preset.trains(), tables, preset.target))
    return _table(("preset", "trains", "per hardware", "target"), rows)


def api_table() -> str:
    """Every name of ``import digits`` with the first sentence of its docstring."""
    import digits

    rows = []
    for name in digits._HOMES:  # in the order it groups them: data, models, training, ...
        value = getattr(digits, name)
        rows.append((f"`digits.{name}`", _CONSTANTS.get(name) or _first_sentence(value.__doc__ or "")))
    return _table(("name", "what it is"), rows)


BLOCKS: dict[str, Callable[[], str]] = {"models": model_table, "presets": preset_table, "api": api_table}
_BLOCK = re.compile(r"(<!-- begin: digits (\w+) -->\n)(.*?)(<!-- end: digits \2 -->)", re.DOTALL)


def rewrite(text: str) -> str:
    """``text`` with every marked block replaced by what its generator writes now."""

    def fill(found: re.Match[str]) -> str:
        make = BLOCKS.get(found[2])
        if make is None:
            raise ValueError(f"unknown generated block {found[2]!r}; known: {', '.join(BLOCKS)}")
        return f"{found[1]}{make()}\n{found[4]}"

    return _BLOCK.sub(fill, text)


def stale_blocks(text: str) -> list[str]:
    """The names of the marked blocks in ``text`` that differ from what they would be now."""
    fresh = {m[2]: m[3] for m in _BLOCK.finditer(rewrite(text))}
    return [m[2] for m in _BLOCK.finditer(text) if fresh.get(m[2]) != m[3]]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the README's generated blocks in place, or with ``--check`` say which are stale."""
    from digits.atomic import write_text

    parser = argparse.ArgumentParser(prog="python -m digits.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("readme", nargs="?", default="README.md", help="the file to rewrite (default: README.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    text = path.read_text(encoding="utf-8")
    if args.check:
        stale = stale_blocks(text)
        if stale:
            sys.stderr.write(f"{path}: stale generated block(s): {', '.join(stale)}; "
                             "run `python -m digits.docs` to rewrite them\n")
        return 1 if stale else 0
    fresh = rewrite(text)
    if fresh != text:
        write_text(path, fresh)
    print(f"{path}: {', '.join(m[2] for m in _BLOCK.finditer(fresh)) or 'no'} generated block(s) up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

