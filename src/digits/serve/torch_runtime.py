"""The PyTorch runtime: the run's own weights through the library's Predictor."""

from __future__ import annotations

import os

import numpy as np

from digits.predict.card import RunCard
from digits.predict.predictor import Predictor


class TorchRuntime:
    """The model (or ensemble) of a run directory on the CPU, as ``digits predict`` runs it:
    each member in the number format it trained in where the CPU computes it natively, with
    the test-time augmentation the run recorded."""

    name = "torch"

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.predictor = Predictor.open(run_dir, "cpu")
        self.calibration = self.predictor.calibration  # its probabilities are calibrated already
        self.rejector = self.predictor.rejector

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.predictor.predict_proba(np.ascontiguousarray(images, dtype=np.uint8))

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.predictor.predict_with_distance(np.ascontiguousarray(images, dtype=np.uint8))

    def card(self) -> RunCard:
        return self.predictor.card()
