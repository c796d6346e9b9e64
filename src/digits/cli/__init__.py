"""The ``digits`` command: it parses, calls the library API (``import digits``) and prints.

One module per command family registers its sub-commands and runs them (``data``, ``train``,
``predict``, ``report``, ``info``, ``tutorial``, ``serve``, ``tune``); ``args`` holds what they share. Every
user error ends as one line on stderr and exit status 2, with no traceback and no partial
output left behind; with ``--json`` stdout then stays empty. Building the parser imports no
torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from digits import __version__
from digits.atomic import is_stdout
from digits.cli import data, info, predict, report, serve, train, tune, tutorial
from digits.cli.args import HelpFormatter, Parser
from digits.errors import DigitsError, OutputError
from digits.output import output_mode

# The families in the order `digits --help` lists their commands.
FAMILIES = (data, train, predict, report, info, tutorial, serve, tune)

Handler = Callable[[argparse.Namespace, list[Path]], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command."""
    parser = Parser(prog="digits", description="Recognise handwritten digits: from Kaggle's CSV "
                     "files to a scored submission.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in FAMILIES:
        family.add_commands(sub)
    return parser


# Commands whose --out names one file, which may be standard output (``-``, /dev/stdout).
_FILE_OUTPUTS = ("predict", "report", "export")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``digits`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    created: list[Path] = []
    # Output written to stdout moves every message to stderr, as --json does, so that
    # `digits predict RUN --out - > sub.csv` gets nothing but the CSV.
    to_stdout = args.command in _FILE_OUTPUTS and args.out is not None and is_stdout(args.out)
    try:
        if to_stdout and getattr(args, "json", False):
            raise OutputError("--out - and --json would both write to standard output; choose one")
        with output_mode(quiet=getattr(args, "quiet", False), as_json=getattr(args, "json", False) or to_stdout):
            return _dispatch(args, created)
    except KeyboardInterrupt:
        sys.stderr.write(f"digits: interrupted{_after_interrupt(args, created)}\n")
        return 130
    except (DigitsError, OSError) as exc:
        # One shared place for every command: a user error, an unreadable input, a full or
        # read-only disk all end as one line, and what the command created goes away.
        _remove(created)
        sys.stderr.write(f"digits: error: {_one_line(exc)}\n")
        return 2
    except BaseException:
        _remove(created)  # a bug still prints its traceback, but leaves nothing half-written
        raise
    finally:
        _release_claims()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    return str(exc).strip().replace("\n", " ")


def _remove(created: list[Path]) -> None:
    for path in created:  # a run that failed leaves nothing half-written behind
        shutil.rmtree(path, ignore_errors=True)


def _release_claims() -> None:
    if "digits.runs" in sys.modules:  # only training claims run directories; never import torch for it
        sys.modules["digits.runs"].release_run_dirs()


def _after_interrupt(args: argparse.Namespace, created: list[Path]) -> str:
    """What to say after ``digits: interrupted``: how to resume a run that can be resumed.
    A new run with nothing to resume yet is removed, so the same command can simply be rerun."""
    if args.command != "train" or not (args.resume or created):
        return ""
    from digits.runs import unfinished_run

    run_dir = Path(args.resume) if args.resume else created[0]
    if unfinished_run(run_dir):
        return f"; resume with: digits train --resume {run_dir}"
    if not args.resume:
        _remove(created)
    return ""


def _dispatch(args: argparse.Namespace, created: list[Path]) -> int:
    if args.command in ("train", "tune", "tutorial"):
        from digits.train.denormals import flush_denormals_from_now_on

        flush_denormals_from_now_on()  # before any tensor work, so OpenMP's threads flush too
    handlers: dict[str, Handler] = {}
    for family in FAMILIES:
        handlers.update(family.COMMANDS)
    return handlers[args.command](args, created)
