"""The PyTorch runtime: the run's own weights through the library's predictor."""

from __future__ import annotations

import os

import numpy as np

from digits.predict.predictor import predict_proba
from digits.runs import load_model


class TorchRuntime:
    """The model of a run directory on the CPU, as ``digits predict`` runs it."""

    name = "torch"

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.model, self.card = load_model(run_dir, "cpu")

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, np.ascontiguousarray(images, dtype=np.uint8), device="cpu")
