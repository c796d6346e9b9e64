"""Reading digits: preprocessing plus a runtime, the one path behind the page, the API and the CLI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from digits.errors import InputError, ModelError
from digits.predict.verdict import Decision, decide
from digits.serve.preprocess import SIZE, PreparedDigit, prepare_digit
from digits.serve.runtime import ModelSummary, Runtime, load_runtime, summarize


@dataclass(frozen=True)
class Reading:
    """What the model read in one picture: ``probabilities`` calibrated, ``decision`` answered,
    unsure or not a digit. ``label`` is None when it is not a digit; ``probabilities`` too when
    the picture is blank or near-blank (no guess is made then); a picture the run's rejector
    finds far from every training digit keeps its probabilities."""

    label: int | None
    probabilities: list[float] | None
    image: np.ndarray  # uint8 (28, 28): what the model saw
    decision: Decision | None = None

    @property
    def found(self) -> bool:
        return self.label is not None

    def to_dict(self, with_image: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "digit_found": self.found,
                               "probabilities": self.probabilities}
        if self.decision is not None:
            out.update(verdict=self.decision.verdict, candidates=list(self.decision.candidates),
                       confidence=self.decision.confidence)
        if self.probabilities is None:
            out["message"] = "no digit: the picture is blank or nearly blank"
        elif not self.found:
            out["message"] = "not a digit: it looks like none of the digits the model was trained on"
        if with_image:
            out["image"] = self.image.tolist()
        return out


class DigitReader:
    """A served model: its card and its runtime. Thread-safe: both runtimes are."""

    def __init__(self, runtime: Runtime, summary: ModelSummary) -> None:
        self.runtime = runtime
        self.summary = summary
        self.calibration = runtime.calibration  # the unsure threshold; the runtime calibrates

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], runtime: str = "torch") -> DigitReader:
        """Load the model (or ensemble) of ``run_dir`` on ``runtime`` ("torch" or "onnx")."""
        loaded = load_runtime(run_dir, runtime)  # a run that cannot predict is refused here, in one line
        return cls(loaded, summarize(loaded))

    def read(self, pictures: Sequence[np.ndarray], preprocess: bool = True) -> list[Reading]:
        """Read grayscale pictures (H, W) 0-255; with ``preprocess=False`` they must be
        28x28 model inputs already (light ink on black) and are used as they are."""
        prepared = [prepare_digit(p) if preprocess else _as_is(p) for p in pictures]
        found = [p for p in prepared if p.found]
        images = np.stack([p.image for p in found]) if found else np.zeros((0, SIZE, SIZE), np.uint8)
        probabilities, distance = (self.runtime.read(images) if found
                                   else (np.zeros((0, 10), np.float32), None))
        if not np.isfinite(probabilities).all():  # either runtime: never answer with NaN
            raise ModelError("the model computed NaN/inf probabilities; its weights are unusable")
        decisions = iter(decide(probabilities, images, self.calibration, distance=distance,
                                rejector=self.runtime.rejector))
        rows = iter(probabilities)
        readings = []
        for p in prepared:
            if p.found:
                row, decision = next(rows), next(decisions)
                readings.append(Reading(decision.label, [round(float(v), 6) for v in row], p.image, decision))
            else:
                readings.append(Reading(None, None, p.image, Decision("not a digit", None, None, ())))
        return readings


def _as_is(picture: np.ndarray) -> PreparedDigit:
    picture = np.asarray(picture, np.float32)
    if picture.shape != (SIZE, SIZE):
        height, width = picture.shape[0], picture.shape[-1]
        raise InputError(f"without preprocessing a picture must be 28x28, got {width}x{height}")
    image = np.rint(np.clip(picture, 0, 255)).astype(np.uint8)
    return PreparedDigit(image, bool(image.any()))
