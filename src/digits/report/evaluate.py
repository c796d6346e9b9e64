"""Predictions on held-out rows and the numbers a report shows: accuracy, the confusion
matrix, per-class precision and recall, the most confident mistakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from digits.predict.predictor import Predictor
from digits.report.heldout import HeldOut

CLASSES = 10


@dataclass(frozen=True)
class Evaluation:
    """The run's probabilities on ``held_out``; for an ensemble, each member's accuracy too."""

    held_out: HeldOut
    proba: np.ndarray                    # (N, 10)
    member_accuracy: tuple[float, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        return self.held_out.data.require_labels()

    @property
    def predicted(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the predicted digit."""
        return self.proba.max(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predicted == self.labels)) if len(self.labels) else float("nan")


def evaluate(held_out: HeldOut, tta: bool = False, device: torch.device | str = "cpu",
             progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Predict ``held_out`` with the run's Predictor, calibrated as ``digits predict`` and the
    API answer; an ensemble averages its members' probabilities (out-of-bag: for each row, only
    those of the members that held it out). ``progress`` hears (images done, images in all,
    over every model) after each batch."""
    images, labels = held_out.data.images, held_out.data.require_labels()
    predictor = Predictor.open(held_out.run_dir, device, tta=tta)
    rows = held_out.member_rows
    in_all = sum(len(r) for r in rows) if rows is not None else len(images) * len(predictor.members)
    hear = None if progress is None else (lambda done: progress(done, in_all))
    probas = predictor.member_proba(images, rows=rows, progress=hear)
    proba = predictor.combine(probas, rows, len(images))
    mine = rows if rows is not None else [slice(None)] * len(probas)
    accuracies = tuple(float(np.mean(p.argmax(axis=1) == labels[r])) for p, r in zip(probas, mine))
    return Evaluation(held_out, proba, accuracies if len(probas) > 1 else ())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts (10, 10): row = true digit, column = predicted digit."""
    return np.bincount(labels * CLASSES + predicted, minlength=CLASSES * CLASSES).reshape(CLASSES, CLASSES)


def precision_recall(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-digit precision (of the predictions of d, how many were d) and recall (of the d's,
    how many were found); NaN where a digit was never predicted or never present."""
    hits = np.diag(matrix).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / matrix.sum(axis=0), hits / matrix.sum(axis=1)


def confident_mistakes(evaluation: Evaluation, limit: int) -> np.ndarray:
    """Row numbers of up to ``limit`` misclassified digits, the most confident first."""
    wrong = np.flatnonzero(evaluation.predicted != evaluation.labels)
    order = np.argsort(-evaluation.confidence[wrong], kind="stable")
    return wrong[order][:limit]
