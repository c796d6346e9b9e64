"""One error type per family, each carrying a message a user can act on.

The CLI prints ``str(error)`` on one line and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a mistyped ``word``, else ``""``:
    put after the name in an "unknown NAME" message."""
    close = difflib.get_close_matches(str(word), list(choices), n=2, cutoff=0.6)
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)" if close else ""


def visible(text: str) -> str:
    """``text`` with invisible characters written as escapes, for a message quoting what a
    file holds: a header that differs from the expected one only by a byte-order mark or a
    zero-width space must not look identical to it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class DigitsError(Exception):
    """Base of every error a user can cause and fix."""


class DataError(DigitsError):
    """A data file is missing, malformed or not what was expected."""


class ModelError(DigitsError):
    """A model name, its arguments or a checkpoint are wrong."""


class RunError(DigitsError):
    """A run directory is missing or incomplete."""


class OutputError(DigitsError):
    """An output cannot be written where it was asked: a folder, a path under a file, a full
    or read-only disk."""


class SubmissionError(DigitsError):
    """A submission would be rejected by Kaggle."""


class ServeError(DigitsError):
    """A model cannot be served or exported as asked (missing ONNX file, runtime absent)."""


class InputError(DigitsError):
    """An image or pixel array given for prediction is unreadable, too large or out of range.

    ``status`` is the HTTP status the API answers with: 413 too large, 415 wrong content
    type, 422 readable but invalid.
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class TuneError(DigitsError):
    """A tuning study, its storage or its search space is wrong."""


class DigitsWarning(UserWarning):
    """Something works but not as well as it could here (bf16 emulated on this CPU...).

    The CLI prints it as one line, ``digits: warning: ...``."""
