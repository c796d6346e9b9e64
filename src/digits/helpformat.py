"""The help formatter and the number argument types of every ``digits`` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


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
