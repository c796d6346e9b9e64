"""The calibrated probabilities of a prediction as CSV: ``ImageId,p0,...,p9,label,verdict``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from digits.atomic import write_text
from digits.predict.verdict import Decision

HEADER = "ImageId," + ",".join(f"p{d}" for d in range(10)) + ",label,verdict"


def write_probabilities(target: str | os.PathLike[str], proba: np.ndarray,
                        decisions: Sequence[Decision]) -> Path:
    """One row per image, ImageId 1..N as in the submission: its calibrated probabilities
    (6 decimals), the label the submission gives it, and the verdict (``answered``,
    ``unsure`` or ``not a digit``); written atomically."""
    labels = np.asarray(proba).argmax(axis=1)
    rows = [",".join([str(i), *(f"{p:.6f}" for p in row), str(int(label)), decision.verdict])
            for i, (row, label, decision) in enumerate(zip(np.asarray(proba, np.float64), labels, decisions),
                                                       start=1)]
    return write_text(target, HEADER + "\n" + "".join(f"{row}\n" for row in rows))
