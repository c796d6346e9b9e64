"""Submissions: written as Kaggle wants them, rejected as Kaggle would, scored as Kaggle does."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES

from digits.data.submission import read_submission, score_submission, write_submission
from digits.errors import SubmissionError


def _solution_labels() -> np.ndarray:
    return read_submission(FIXTURES / "solution.csv")


def test_written_submission_has_kaggle_header_and_ids(tmp_path):
    path = write_submission(tmp_path / "sub.csv", np.array([7, 2, 1]))
    assert path.read_text() == "ImageId,Label\n1,7\n2,2\n3,1\n"


def test_perfect_submission_scores_one(tmp_path):
    sub = write_submission(tmp_path / "sub.csv", _solution_labels())
    assert score_submission(sub, FIXTURES / "solution.csv") == 1.0


def test_score_is_fraction_of_correct_labels(tmp_path):
    labels = _solution_labels().copy()
    labels[:50] = (labels[:50] + 1) % 10  # 50 of 500 wrong
    sub = write_submission(tmp_path / "sub.csv", labels)
    assert score_submission(sub, FIXTURES / "solution.csv") == pytest.approx(0.9)


def test_rows_in_any_order_are_matched_by_image_id(tmp_path):
    labels = _solution_labels()
    rows = [f"{i},{label}" for i, label in enumerate(labels, start=1)][::-1]
    sub = tmp_path / "sub.csv"
    sub.write_text("ImageId,Label\n" + "\n".join(rows) + "\n")
    assert score_submission(sub, FIXTURES / "solution.csv") == 1.0


def _rows(n: int = 500) -> list[str]:
    return [f"{i},0" for i in range(1, n + 1)]


REJECTED = {
    "wrong header": ("ImageID,Prediction\n" + "\n".join(_rows()), r"line 1: expected the header 'ImageId,Label'"),
    "too few rows": ("ImageId,Label\n" + "\n".join(_rows(499)), r"499 rows, expected 500"),
    "too many rows": ("ImageId,Label\n" + "\n".join(_rows(501)), r"501 rows, expected 500"),
    "duplicate ImageId": ("ImageId,Label\n" + "\n".join(_rows(499) + ["7,1"]), r"line 501: duplicate ImageId 7"),
    "missing ImageId": ("ImageId,Label\n" + "\n".join(_rows(499) + ["501,1"]),
                        r"ImageId 501 is out of range; ImageIds must be 1..500"),
    "label outside 0-9": ("ImageId,Label\n" + "\n".join(_rows(499) + ["500,12"]),
                          r"line 501, column Label: 12 is outside 0-9"),
    "non-integer label": ("ImageId,Label\n" + "\n".join(_rows(499) + ["500,seven"]),
                          r"line 501, column Label: 'seven' is not an integer"),
    "extra column": ("ImageId,Label\n" + "\n".join(_rows(499) + ["500,1,2"]),
                     r"line 501: expected 2 values \(ImageId,Label\), found 3"),
    "empty file": ("", r"line 1: expected the header 'ImageId,Label', found 'an empty file'"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_submission_kaggle_would_reject_is_rejected_with_reason(tmp_path, case):
    text, reason = REJECTED[case]
    sub = tmp_path / "sub.csv"
    sub.write_text(text)
    with pytest.raises(SubmissionError, match=reason):
        score_submission(sub, FIXTURES / "solution.csv")


@pytest.mark.parametrize("case", ["wrong header", "duplicate ImageId", "label outside 0-9", "too few rows"])
def test_score_command_rejects_with_one_line_and_status_2(tmp_path, cli, case):
    sub = tmp_path / "sub.csv"
    sub.write_text(REJECTED[case][0])
    result = cli("score", sub, "--solution", FIXTURES / "solution.csv")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("digits: error: ") and result.err.count("\n") == 1


def test_score_command_prints_kaggle_style_score(tmp_path, cli):
    sub = write_submission(tmp_path / "sub.csv", _solution_labels())
    result = cli("score", sub, "--solution", FIXTURES / "solution.csv")
    assert result.code == 0 and result.out.strip() == "score: 1.00000"


def test_a_fifo_given_as_a_submission_is_named_as_a_fifo_not_a_missing_file(tmp_path, cli):
    import os

    fifo = tmp_path / "submission.csv"
    os.mkfifo(fifo)
    result = cli("score", fifo, "--solution", FIXTURES / "solution.csv")
    assert result.code == 2 and "named pipe (FIFO)" in result.err and "no such file" not in result.err
