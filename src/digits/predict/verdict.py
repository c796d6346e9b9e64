"""Answered, unsure, or not a digit: what to say about one input, from its calibrated
probabilities and the 28x28 image itself.

- **not a digit**: a blank or near-blank picture: the preprocessing found no ink worth reading.
  (Letters and scribbles are not caught here yet: the classifier's calibrated confidence flags
  some as unsure, but a rejection signal that knows them needs fitting per run, from the run's
  own training rows; see benchmarks/RESULTS.md for the share caught.)
- **unsure**: a digit, but the calibrated top probability is under the run's threshold;
  the answer names the two most probable digits ("4 or 9?").
- **answered**: the digit and its calibrated probability.

The unsure threshold is chosen on the run's validation rows (:func:`fit_verdicts`), so that it
flags about ``FLAG_RATE`` of them: clean digits stay answered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from digits.predict.calibration import (
    FLAG_RATE,
    MIN_FIT_ROWS,
    Calibration,
    fit_calibration,
    save_calibration,
)

Verdict = Literal["answered", "unsure", "not a digit"]
VERDICTS: tuple[Verdict, ...] = ("answered", "unsure", "not a digit")


@dataclass(frozen=True)
class Decision:
    """What to say about one input. ``label``: the answer (answered), the most probable digit
    (unsure), or None (not a digit); ``candidates``: the digits worth naming, most probable first."""

    verdict: Verdict
    label: int | None
    confidence: float | None
    candidates: tuple[int, ...]

    def text(self) -> str:
        """As a person would say it: "4 (p=0.998)", "4 or 9? (unsure)", "not a digit"."""
        if self.verdict == "not a digit":
            return "not a digit"
        if self.verdict == "unsure":
            return f"{self.candidates[0]} or {self.candidates[1]}? (unsure)"
        return f"{self.label} (p={self.confidence:.3f})"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "label": self.label, "confidence": self.confidence,
                "candidates": list(self.candidates)}


def decide(proba: np.ndarray, images: np.ndarray, calibration: Calibration,
           found: np.ndarray | None = None) -> list[Decision]:
    """The decision for each input: ``proba`` calibrated (N, 10); ``images`` uint8 (N, 28, 28),
    what the model saw; ``found`` False where preprocessing found no ink worth reading
    (default: any ink at all)."""
    images = np.asarray(images).reshape(-1, 28, 28)
    found = images.reshape(len(images), 784).any(axis=1) if found is None else np.asarray(found, bool)
    rejected = ~found
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    out = []
    for i, row in enumerate(np.asarray(proba)):
        top, second = int(order[i, 0]), int(order[i, 1])
        confidence = round(float(row[top]), 6)
        if rejected[i]:
            out.append(Decision("not a digit", None, confidence if found[i] else None, ()))
        elif row[top] < calibration.unsure_below:
            out.append(Decision("unsure", top, confidence, (top, second)))
        else:
            out.append(Decision("answered", top, confidence, (top,)))
    return out


def fit_verdicts(calibration: Calibration, calibrated: np.ndarray, rate: float = FLAG_RATE) -> Calibration:
    """``calibration`` with its unsure threshold chosen on validation rows (their ``calibrated``
    probabilities): the calibrated top probability under which ``rate`` of them fall."""
    confidence = np.sort(np.asarray(calibrated).max(axis=1))
    budget = int(rate * len(confidence))
    below = float(confidence[budget]) if budget < len(confidence) else 0.5
    measured = {**calibration.measured, "flagged_rate": round(float(np.mean(confidence < below)), 6)}
    return replace(calibration, unsure_below=below, measured=measured)


def calibrate_held_out(run_dir: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray,
                       proba: np.ndarray, source: str = "validation") -> Calibration | None:
    """Fit and write ``run_dir``'s calibration.json from held-out rows and the run's
    uncalibrated probabilities on them; None (and nothing written) when there are fewer than
    ``MIN_FIT_ROWS`` rows: the run then answers uncalibrated, and says so."""
    if len(labels) < MIN_FIT_ROWS:
        return None
    calibration = fit_calibration(proba, labels, source)
    calibration = fit_verdicts(calibration, calibration.apply(proba))
    save_calibration(Path(run_dir), calibration)
    return calibration


def calibrate_run(run_dir: str | os.PathLike[str], model: Any, validation: Any) -> Calibration | None:
    """Calibrate a freshly trained run on its validation rows (a labelled DigitSet): the one
    call at the end of training. None when it has too few of them (see :func:`calibrate_held_out`)."""
    from digits.predict.predictor import inference_precision, predict_proba

    if validation.labels is None or len(validation) < MIN_FIT_ROWS:
        return None
    device = next(model.parameters()).device
    proba = predict_proba(model, validation.images, precision=inference_precision(run_dir, device))
    return calibrate_held_out(run_dir, validation.images, validation.labels, proba)


def calibrate_ensemble(run_dir: str | os.PathLike[str], data: Any, member_rows: list[np.ndarray]) -> \
        Calibration | None:
    """Calibrate an ensemble whose members are calibrated already: a temperature for the
    average of their calibrated probabilities (averaging, and test-time augmentation, make it
    less sure than its members), and its thresholds. ``member_rows``: the rows of ``data`` each
    member held out. Every row is predicted only by the members that held it out: all of them
    when they share one validation split; for a bagged ensemble, its out-of-bag members, a
    smaller committee than the whole (a conservative stand-in for it)."""
    from digits.predict.predictor import load_predictor, predict_proba

    union = np.unique(np.concatenate(member_rows)) if member_rows else np.zeros(0, np.int64)
    if data.labels is None or len(union) < MIN_FIT_ROWS:
        return None
    predictor = load_predictor(run_dir)
    total = np.zeros((len(union), 10), np.float64)
    votes = np.zeros(len(union), np.int64)
    for model, precision, calibration, rows in zip(predictor.models, predictor.precisions,
                                                   predictor.member_calibrations, member_rows):
        at = np.searchsorted(union, rows)
        total[at] += calibration.apply(predict_proba(model, data.images[rows], tta=predictor.tta,
                                                     precision=precision))
        votes[at] += 1
    shared = all(len(r) == len(union) for r in member_rows)
    return calibrate_held_out(run_dir, data.images[union], data.labels[union], total / votes[:, None],
                              "validation" if shared else "out-of-bag")
