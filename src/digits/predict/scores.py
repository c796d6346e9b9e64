"""Recorded scores: ``score.json`` in the run directory that a scored submission lies in.

``digits score`` and the tutorial write it; reports and ``digits compare`` read it. Light on
purpose (no torch), since ``digits score`` should start fast.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from digits.errors import RunError
from digits.jsonfile import read_json, write_json

SCORE_FILE = "score.json"
RUN_MARKERS = ("config.json", "ensemble.json")  # what `digits train` writes first in a run directory


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a run directory (of one model or of an ensemble)."""
    return any((Path(path) / marker).is_file() for marker in RUN_MARKERS)


def record_score(submission: str | os.PathLike[str], solution: str | os.PathLike[str], score: float,
                 test: str | os.PathLike[str] | None = None) -> Path | None:
    """Write ``score.json`` beside ``submission`` when it lies in a run directory; return its path.

    ``test`` is the test file the submission predicts, when the caller knows it (a report
    otherwise looks for test.csv beside the solution). A submission anywhere else is left
    alone (None): there is no run to attach the score to.
    """
    submission = Path(submission)
    if not is_run_dir(submission.parent):
        return None
    solution = Path(solution).resolve()
    record = {"score": float(score), "submission": submission.name,
              "solution": str(solution), "scored_at": dt.datetime.now().isoformat(timespec="seconds")}
    if test is not None:
        record["test"] = str(Path(test).resolve())
    return write_json(submission.parent / SCORE_FILE, record)


def read_score(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recorded score of ``run_dir``, or None when it was never scored."""
    path = Path(run_dir) / SCORE_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record.get("score"), (int, float)):
        raise RunError(f"{path}: expected an object with a numeric 'score'")
    return record
