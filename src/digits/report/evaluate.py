"""Predictions on held-out rows and the numbers a report shows: accuracy, the confusion
matrix, per-class precision and recall, the most confident mistakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from digits.predict.calibration import load_calibration
from digits.predict.predictor import for_inference, inference_precision, predict_proba
from digits.report.heldout import HeldOut
from digits.runs import load_model

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
    """Predict ``held_out`` with its models, each calibrated by its calibration.json; an
    ensemble averages its members' calibrated probabilities
    (out-of-bag: for each row, only those of the members that held it out). ``progress`` hears
    (images done, images in all, over every model) after each batch."""
    images, labels = held_out.data.images, held_out.data.require_labels()
    rows = held_out.member_rows or (None,) * len(held_out.model_dirs)
    total = np.zeros((len(images), CLASSES), np.float64)
    votes = np.zeros(len(images), np.int64)
    accuracies = []
    indexes = [np.arange(len(images)) if mine is None else mine for mine in rows]
    in_all, before = sum(len(i) for i in indexes), 0
    for model_dir, index in zip(held_out.model_dirs, indexes):
        model = for_inference(load_model(model_dir, device)[0])
        hear = None if progress is None else (lambda done, before=before: progress(before + done, in_all))
        proba = load_calibration(model_dir).apply(  # calibrated, as digits predict and the API answer
            predict_proba(model, images[index], tta=tta, precision=inference_precision(model_dir, device),
                          progress=hear))
        before += len(index)
        total[index] += proba
        votes[index] += 1
        accuracies.append(float(np.mean(proba.argmax(axis=1) == labels[index])))
    proba = (total / np.maximum(votes, 1)[:, None]).astype(np.float32)
    return Evaluation(held_out, proba, tuple(accuracies) if len(held_out.model_dirs) > 1 else ())


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
