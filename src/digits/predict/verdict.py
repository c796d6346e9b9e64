"""Answered, unsure, or not a digit: what to say about one input, from its calibrated
probabilities and the 28x28 image itself.

- **not a digit**: a blank or near-blank picture (the preprocessing found no ink worth
  reading), or one whose features lie farther from every digit the run trained on than its
  rejector's threshold (:mod:`digits.predict.rejection`: letters, scribbles, noise), or whose
  two most probable digits hold less than the run's ``no_digit_below`` between them (a model
  trained with outlier exposure spreads what is no digit over many). A run without a rejector
  or that threshold says it only of blank pictures.
- **unsure**: a digit, but the calibrated top probability is under the run's threshold;
  the answer names the two most probable digits ("4 or 9?").
- **answered**: the digit and its calibrated probability.

The unsure threshold is chosen on the run's validation rows
(:func:`digits.predict.calibration.fit_calibration`), so that it flags about ``FLAG_RATE`` of
them: clean digits stay answered. numpy only: the ONNX server decides without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from digits.predict.calibration import Calibration
from digits.predict.rejection import Rejector

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
           found: np.ndarray | None = None, distance: np.ndarray | None = None,
           rejector: Rejector | None = None) -> list[Decision]:
    """The decision for each input: ``proba`` calibrated (N, 10); ``images`` uint8 (N, 28, 28),
    what the model saw; ``found`` False where preprocessing found no ink worth reading
    (default: any ink at all); ``distance`` from the training digits and the ``rejector`` that
    measured it (``Predictor.predict_with_distance``; a runtime's ``read``), when the run has one."""
    images = np.asarray(images).reshape(-1, 28, 28)
    found = images.reshape(len(images), 784).any(axis=1) if found is None else np.asarray(found, bool)
    rejected = ~found
    if rejector is not None and distance is not None:
        rejected = rejected | rejector.rejects(distance)
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    no_digit = calibration.no_digit_below
    out = []
    for i, row in enumerate(np.asarray(proba)):
        top, second = int(order[i, 0]), int(order[i, 1])
        confidence = round(float(row[top]), 6)
        if rejected[i] or (no_digit is not None and row[top] + row[second] < no_digit):
            out.append(Decision("not a digit", None, confidence if found[i] else None, ()))
        elif row[top] < calibration.unsure_below:
            out.append(Decision("unsure", top, confidence, (top, second)))
        else:
            out.append(Decision("answered", top, confidence, (top,)))
    return out
