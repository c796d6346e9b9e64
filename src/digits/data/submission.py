"""Kaggle submissions (``ImageId,Label``): write them, check them as Kaggle does, score them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from digits.atomic import write_text
from digits.data.paths import not_a_file
from digits.errors import DataError, SubmissionError, visible

HEADER = "ImageId,Label"


def write_submission(target: str | os.PathLike[str], labels: np.ndarray) -> Path:
    """Write ``ImageId,Label`` rows, ImageId 1..N, atomically."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = "\n".join(f"{i},{label}" for i, label in enumerate(labels.tolist(), start=1))
    return write_text(target, f"{HEADER}\n{rows}\n")


def read_submission(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a submission as Kaggle would accept it; return labels ordered by ImageId.

    Raises SubmissionError naming the line for: a wrong header, a malformed row, a
    non-integer, a label outside 0-9, a duplicate ImageId, or ImageIds that are not 1..N.
    """
    path = Path(path)
    reason = not_a_file(path)  # "no such file", or what it is instead (a folder, a FIFO...)
    if reason:
        raise SubmissionError(f"{path}: {reason}")
    try:
        # utf-8-sig: a leading byte-order mark (Excel's "CSV UTF-8") is read past, as Kaggle does.
        lines = path.read_text("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not CSV text") from None
    if not lines or lines[0].strip().replace(" ", "") != HEADER:
        found = visible(lines[0][:40]) if lines else "an empty file"
        raise SubmissionError(f"{path}: line 1: expected the header '{HEADER}', found '{found}'")
    if len(lines) == 1:
        raise SubmissionError(f"{path}: no rows after the header; expected one row per test image")
    by_id: dict[int, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        image_id, label = _parse_row(line, number, path)
        if image_id in by_id:
            raise SubmissionError(f"{path}: line {number}: duplicate ImageId {image_id}")
        by_id[image_id] = label
    expected = set(range(1, len(by_id) + 1))
    if set(by_id) != expected:
        bad = min(set(by_id) - expected)
        raise SubmissionError(f"{path}: ImageId {bad} is out of range; ImageIds must be 1..{len(by_id)}")
    return np.array([by_id[i] for i in range(1, len(by_id) + 1)], dtype=np.int64)


def _parse_row(line: str, number: int, path: Path) -> tuple[int, int]:
    fields = line.strip().split(",")
    if len(fields) != 2:
        raise SubmissionError(f"{path}: line {number}: expected 2 values (ImageId,Label), found {len(fields)}")
    values = []
    for name, field in zip(("ImageId", "Label"), fields):
        field = field.strip()
        if not (field.isascii() and field.isdigit()):
            raise SubmissionError(f"{path}: line {number}, column {name}: '{field[:20]}' is not an integer")
        if len(field) > 18:  # no ImageId is this long; int() would refuse past 4,300 digits
            raise SubmissionError(f"{path}: line {number}, column {name}: '{field[:20]}...' ({len(field)} "
                                  "digits) is out of range")
        values.append(int(field))
    if not 0 <= values[1] <= 9:
        raise SubmissionError(f"{path}: line {number}, column Label: {values[1]} is outside 0-9")
    return values[0], values[1]


def count_correct(submission: str | os.PathLike[str], solution: str | os.PathLike[str]) -> tuple[int, int]:
    """(correct rows, rows) of ``submission`` against the answer key, checked as Kaggle checks it."""
    try:
        truth = read_submission(solution)
    except SubmissionError as exc:
        raise DataError(f"solution file: {exc}") from None
    predicted = read_submission(submission)
    if len(predicted) != len(truth):
        raise SubmissionError(f"{submission}: {len(predicted)} rows, expected {len(truth)} "
                              f"(one per test image)")
    return int(np.sum(predicted == truth)), len(truth)


def score_submission(submission: str | os.PathLike[str], solution: str | os.PathLike[str]) -> float:
    """Categorization accuracy of ``submission`` against the answer key, as Kaggle scores it."""
    correct, rows = count_correct(submission, solution)
    return correct / rows if rows else 0.0
