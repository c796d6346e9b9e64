"""The labelled rows a run's model did not train on, re-created from what the run recorded.

In order of preference: the scored test set (a recorded score with its answer key and test
file), else the validation rows: the last ``val_split`` of the recorded training file, or,
for a bagged ensemble, each member's own seeded hold-out (out-of-bag rows). The tutorial's
final model trained on every row, so without a scored test set its validation run stands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv
from digits.data.submission import read_submission
from digits.errors import DigitsError
from digits.report.record import RunRecord
from digits.train.ensemble import bagged_rows


@dataclass(frozen=True)
class HeldOut:
    """Labelled rows to evaluate on and the models that did not train on them."""

    kind: str                      # "test", "validation" or "out-of-bag"
    description: str               # what the page says about them
    data: DigitSet
    run_dir: Path                  # the run whose Predictor reads them: one model, or an ensemble
    member_rows: tuple[np.ndarray, ...] | None = None  # out-of-bag: the rows each member held out


def find_held_out(record: RunRecord) -> HeldOut | str:
    """The rows to evaluate ``record`` on, or the reason there are none."""
    test = _scored_test_set(record)
    if test is not None:
        return test
    if record.kind == "tutorial":
        found = find_held_out(record.explore)
        if isinstance(found, HeldOut):
            return HeldOut(found.kind, f"{found.description}, predicted by the tutorial's validation run "
                           "(its final model trained on these rows too)", found.data, found.run_dir)
        return found
    full = _training_file(record)
    if isinstance(full, str):
        return full
    if record.kind == "ensemble" and record.bagging:
        return _out_of_bag(record, full)
    own = _validation_rows(record, full)
    if isinstance(own, str):
        return own
    which = (f"a seeded random {record.bagging * 100:g}%" if record.bagging else
             f"the last {float(record.config.get('val_split', 0)) * 100:g}%")
    who = ", predicted by every member with their probabilities averaged" if record.members else ""
    return HeldOut("validation", f"validation rows: {which} of {full.origin} ({len(own):,} rows), "
                   f"held out from training{who}", own, record.path)


def _scored_test_set(record: RunRecord) -> HeldOut | None:
    score = record.score or {}
    if "solution" not in score:
        return None
    solution = Path(score["solution"])
    test_file = Path(score.get("test") or solution.parent / "test.csv")
    if not (solution.is_file() and test_file.is_file()):
        return None
    try:
        labels = read_submission(solution)
        images = load_kaggle_csv(test_file, kind="test").images
    except DigitsError:
        return None
    if len(labels) != len(images):
        return None
    return HeldOut("test", f"the scored test set: {test_file} ({len(images):,} rows), "
                   f"answers from {solution}", DigitSet(images, labels, str(test_file)), record.path)


def _training_file(record: RunRecord) -> DigitSet | str:
    source = record.data.get("source")
    if not source:
        return f"{record.path}: config.json records no training file, so no validation rows"
    try:
        return load_kaggle_csv(source, kind="train")
    except DigitsError as exc:
        return f"the run's training file cannot be read ({exc}), so no validation rows"


def _validation_rows(record: RunRecord, full: DigitSet) -> DigitSet | str:
    val_rows = int(record.data.get("val_rows", 0))
    if not val_rows:
        return "the model trained on every row (no validation split) and no scored test set is recorded"
    mismatch = _size_mismatch(record, full)
    if mismatch:
        return mismatch
    if record.bagging:  # one member of a bagged ensemble, on its own: its seeded hold-out
        val = full.subset(bagged_rows(len(full), record.bagging, int(record.config.get("seed", 0)))[1])
    else:
        _, val = full.split_last(float(record.config.get("val_split", 0.0)))
    if len(val) != val_rows:
        return f"{full.origin}: re-created {len(val):,} validation rows, the run recorded {val_rows:,}"
    return val


def _size_mismatch(record: RunRecord, full: DigitSet) -> str | None:
    # train_rows + val_rows: an ensemble member's "rows" counts only the rows it trained on.
    expected = int(record.data.get("train_rows", 0)) + int(record.data.get("val_rows", 0))
    if len(full) == expected:
        return None
    return f"{full.origin} now has {len(full):,} rows, the run split {expected:,}: not the same file"


def _out_of_bag(record: RunRecord, full: DigitSet) -> HeldOut | str:
    """Every row some member held out; each member's rows index into them."""
    member_rows = []
    for member in record.members:
        mismatch = _size_mismatch(member, full)
        if mismatch:
            return mismatch
        member_rows.append(bagged_rows(len(full), record.bagging, int(member.config.get("seed", 0)))[1])
    union = np.unique(np.concatenate(member_rows))
    positions = tuple(np.searchsorted(union, rows) for rows in member_rows)
    return HeldOut("out-of-bag", f"out-of-bag rows of {full.origin}: the {len(union):,} rows that at least "
                   f"one member held out ({record.bagging * 100:g}% each), every row predicted only by the "
                   "members that did not train on it", full.subset(union), record.path, positions)
