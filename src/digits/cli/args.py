"""What every ``digits`` command shares on its command line: the parser, the help formatter, the argument
types (numbers checked with one message for both failures, ``KEY=VALUE``) and the flag groups
several commands take (``--train``/``--data``, ``--quiet``/``--json``, ``--no-report``).

Kept free of heavy imports: building the parser must not import torch."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from digits.errors import did_you_mean


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}{_suggestion(message)}\n")
        raise SystemExit(2)


def _suggestion(message: str) -> str:
    """For argparse's "invalid choice: 'trian' (choose from 'train', ...)": "; did you mean 'train'?"."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if not found:
        return ""
    return did_you_mean(found[1], re.findall(r"'([^']*)'", found[2]))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" only where it tells something: not for switches, None or empty
    defaults, nor where the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def number_type(kind: type, accept: Callable[[float], bool], expected: str) -> Callable[[str], Any]:
    """An argparse type: parse ``kind`` and check it, with one message for both failures."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = number_type(int, lambda v: v >= 0, "an integer >= 0")
fraction = number_type(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
positive_float = number_type(float, lambda v: v > 0, "a positive number")
non_negative_float = number_type(float, lambda v: v >= 0, "a number >= 0")
port = number_type(int, lambda v: 1 <= v <= 65535, "a port number 1-65535")
seconds = number_type(float, lambda v: 0 < v <= 3600, "seconds between 0 and 3600")
count = number_type(int, lambda v: 1 <= v <= 100_000, "a number from 1 to 100000")


def member_range(text: str) -> tuple[int, int]:
    """``START:END`` of ``--members``: only its form here; the range is checked against the
    ensemble's size once that is known."""
    start, sep, end = text.partition(":")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected START:END, two integers >= 0 (e.g. 0:5), got {text!r}")
    return int(start), int(end)


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``hidden=[512,256]``), or the raw text when it is not JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_data_flags(parser: argparse.ArgumentParser, kind: str, folder_help: str | None = None) -> None:
    """``--{kind} CSV`` or ``--data DIR`` (one of them): the file a command reads."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{kind}", metavar="CSV", help=f"{kind}.csv or Kaggle's zip")
    group.add_argument("--data", default="data", metavar="DIR", help=folder_help or f"folder holding {kind}.csv")


def data_path(args: argparse.Namespace, kind: str) -> Path:
    """The ``{kind}.csv`` those flags name: ``--{kind}`` when given, else the one in ``--data``."""
    from digits.data.paths import data_file

    return data_file(getattr(args, kind), args.data, kind)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--json`` for a command that supports them."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (the exit status is unchanged)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout (docs/json.md); "
                             "progress and messages go to stderr")


def add_no_report_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-report``: skip the HTML report a training command writes at its end."""
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip the HTML report written into RUN_DIR/report/ at the end")


def add_device_flag(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``: where to compute."""
    help_text = "auto, cpu, cuda, cuda:N or mps" + ("" if default else " (default auto)")
    parser.add_argument("--device", default=default, help=help_text)
