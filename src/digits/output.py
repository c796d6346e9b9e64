"""How a command talks: ``--quiet`` and ``--json``, and the summary of what it wrote.

Human text goes through the shared rich console. ``--json`` moves it to stderr and keeps
stdout for exactly one JSON object, the command's result (``docs/json.md``); ``--quiet``
silences it, so that only errors are printed. Errors are never written to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from digits.console import console, line_width, progress_console
from digits.errors import DigitsWarning

JSON_FORMAT = 1  # bumped when a field changes meaning or goes away; new fields keep it

# Known run-directory files and the names they have in a summary and in ``files``.
FILE_LABELS = {
    "config.json": "config", "model.safetensors": "model", "model.json": "model_card",
    "history.csv": "history", "curves.png": "curves", "metrics.json": "metrics",
    "submission.csv": "submission", "ensemble.json": "ensemble", "samples.png": "samples",
    "report.html": "report", "training_rows.npy": "training_rows", "calibration.json": "calibration",
    "rejector.safetensors": "rejector",
}


@contextlib.contextmanager
def output_mode(quiet: bool = False, as_json: bool = False) -> Iterator[None]:
    """Route the console for one command: to stderr for ``--json``, nowhere for ``--quiet``."""
    saved = console.stderr, console.quiet, console.is_interactive
    saved_progress = progress_console.quiet
    console.stderr, console.quiet = as_json or saved[0], quiet or saved[1]
    progress_console.quiet = quiet or as_json or saved_progress  # bars: a person's, not a program's
    _fit_to_stream()
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, DigitsWarning):
            shown(message, category, filename, lineno, file, line)
        elif not quiet:  # ours: one line on stderr, never on stdout (--json keeps it clean)
            sys.stderr.write(f"digits: warning: {message}\n")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        console.stderr, console.quiet, console.is_interactive = saved
        progress_console.quiet = saved_progress
        _fit_to_stream()


def _fit_to_stream() -> None:
    # rich decides these once, for stdout; live bars need them for the stream now in use.
    console.width = line_width(console.file)
    console.is_interactive = console.is_terminal and not console.is_dumb_terminal


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit_json(command: str, result: Mapping[str, Any]) -> None:
    """Write ``result`` as the command's one JSON object on stdout (NaN is a bug: it raises)."""
    # Indented for a person at a terminal, one line for a pipe (as jq and gh do).
    indent = 2 if sys.stdout.isatty() else None
    text = json.dumps({"command": command, "format": JSON_FORMAT, **result}, indent=indent, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def finish(args: argparse.Namespace, command: str,
           result: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
           files: Mapping[str, str | os.PathLike[str]], headline: str) -> int:
    """End a command: its JSON object (``--json``; ``result`` may be a function that builds
    it, called only then), else the headline and the files written. Returns exit status 0."""
    if wants_json(args):
        emit_json(command, result() if callable(result) else result)
    else:
        print_summary(headline, files)
    return 0


def print_summary(headline: str, files: Mapping[str, str | os.PathLike[str]]) -> None:
    """The closing lines of a command: one headline, then ``label  path`` per file written."""
    console.print(headline)
    if not files:
        return
    width = max(len(label) for label in files)
    for label, path in files.items():
        console.print(f"  {label:<{width}}  {path}", soft_wrap=True)


def run_files(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Every file at the top of a run directory, labelled: known names first, in a fixed
    order, then the others under their own names (so new kinds of output show up too)."""
    run_dir = Path(run_dir)
    present = sorted(p for p in run_dir.iterdir() if p.is_file()) if run_dir.is_dir() else []
    by_name = {p.name: p for p in present}
    files = {FILE_LABELS[name]: by_name[name] for name in FILE_LABELS if name in by_name}
    files.update({p.name: p for p in present if p.name not in FILE_LABELS})
    if (run_dir / "report" / "report.html").is_file():  # `digits report` writes into its own folder
        files["report"] = run_dir / "report" / "report.html"
    return files


def absolute(files: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """``files`` with absolute path strings, as the JSON objects carry them."""
    return {label: str(Path(path).resolve()) for label, path in files.items()}
