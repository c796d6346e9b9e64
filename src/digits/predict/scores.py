"""Recorded scores: ``score.json`` in the run directory that a scored submission lies in, and
the check that comes first: the answer key's test rows were never trained on.

``digits score`` and the tutorial write it; reports and ``digits compare`` read it. Light on
purpose (no torch), since ``digits score`` should start fast.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from digits.errors import DataError, RunError
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


def check_not_trained_on(submission: str | os.PathLike[str], solution: str | os.PathLike[str],
                         test: str | os.PathLike[str] | None = None) -> str | None:
    """Refuse (DataError) to score a run's submission against an answer key whose test rows
    the run trained or validated on; return a warning when that cannot be checked, else None.

    The test rows are read from ``test`` (the file the submission predicts, when the caller
    knows it), else from the test.csv beside ``solution`` (as ``digits data prepare`` writes
    them); they are compared by content with each model's ``training_rows.npy``, so copied or
    renamed files are caught as well as a folder prepared with another seed. A submission
    outside a run directory has no training rows to compare with (None).
    """
    from digits.data.identity import describe_training_data, read_fingerprint, shared_rows
    from digits.data.kaggle import load_kaggle_csv

    run_dir = Path(submission).parent
    if not is_run_dir(run_dir):
        return None
    test_path = Path(test) if test is not None else Path(solution).parent / "test.csv"
    if not test_path.is_file():
        return (f"warning: cannot check that the rows of {solution} were not trained on: no {test_path.name} "
                "beside it")
    test_rows = load_kaggle_csv(test_path, kind="test")
    for model_dir, record in _trained_models(run_dir):
        fingerprint = model_dir / str(record.get("fingerprint", ""))
        if not record.get("fingerprint") or not fingerprint.is_file():
            return (f"warning: {model_dir} records no training rows; cannot check that {solution} "
                    "holds none of them")
        shared = shared_rows(read_fingerprint(fingerprint), test_rows.images)
        if shared:
            hint = (f"; score it against {Path(record['split']['folder']) / 'solution.csv'}, the answer key "
                    "of that split") if record.get("split") else ""
            raise DataError(f"{solution}: {shared:,} of its {len(test_rows):,} test rows ({test_path}) are rows "
                            f"{model_dir} trained on, from {describe_training_data(record)}: its score would "
                            f"not be a test score{hint}")
    return None


def _trained_models(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(model directory, its config.json ``data`` record) for a run or each ensemble member."""
    if (run_dir / "ensemble.json").is_file():
        dirs = [run_dir / str(m) for m in read_json(run_dir / "ensemble.json").get("members", [])]
    else:
        dirs = [run_dir]
    return [(d, dict(read_json(d / "config.json").get("data", {}))) for d in dirs]
