"""Calibrating a trained run on the rows it held out: the temperature of each model (and of an
ensemble's average) and the unsure threshold, written as calibration.json files; and its
not-a-digit rejector (rejector.safetensors: :mod:`digits.predict.rejection`), fitted on the
first model's training rows and thresholded on the rows it held out.

It runs once a run is complete (``digits.run_training`` calls it), through the run's own
:class:`~digits.predict.predictor.Predictor`: the probabilities it is fitted on are the ones
the run answers with (each model in its own number format, the ensemble's test-time
augmentation), and never a test row: only the validation (or out-of-bag) rows of the training
file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from digits.data.dataset import DigitSet
from digits.errors import RunError
from digits.predict.calibration import MIN_FIT_ROWS, Calibration, fit_calibration, save_calibration
from digits.predict.predictor import Predictor, average_members
from digits.predict.rejection import MIN_FIT_ROWS as MIN_REJECTOR_ROWS
from digits.predict.rejection import fit_rejector, save_rejector
from digits.runmodels import run_models
from digits.train.ensemble import EnsembleSpec, bagged_rows


def held_out_rows(rows: int, val_split: float, bagging: float = 0.0, seed: int = 0) -> np.ndarray:
    """Sorted row numbers one model validated on: its bagged hold-out (an ensemble member's
    seeded random one), or the last ``val_split`` of the rows, as ``DigitSet.split_last`` cuts."""
    if bagging:
        return bagged_rows(rows, bagging, seed)[1]
    return np.arange(int(rows * (1.0 - val_split)), rows)


def calibrate_run(run_dir: str | os.PathLike[str], data: DigitSet, spec: EnsembleSpec,
                  device: torch.device | str = "cpu") -> Calibration | None:
    """Fit and write the calibration of the complete run ``run_dir``, trained by ``spec`` on
    ``data`` (the whole training file, as ``digits.run_training`` was given it): each model's on
    the rows it held out; for an ensemble, its members' too, then a temperature for the average
    of their calibrated probabilities, each row predicted only by the members that held it out.

    Returns the calibration of the whole, or None when there are fewer than ``MIN_FIT_ROWS``
    held-out rows (or no labels): nothing is written, and the run answers at temperature 1 and
    says so (and has no rejector: "not a digit" only for blank pictures)."""
    if data.labels is None:
        return None
    ensemble = spec.members > 1
    configs = [spec.member_config(i) for i in range(spec.members)]  # a member's variant may differ
    rows = [held_out_rows(len(data), c.val_split, spec.bagging if ensemble else 0.0, c.seed) for c in configs]
    predictor = Predictor.open(run_dir, device)
    model_dirs = run_models(run_dir).model_dirs
    if len(model_dirs) != len(rows):
        raise RunError(f"{run_dir}: holds {len(model_dirs)} models, but the training plan has {len(rows)}")
    _fit_rejector(Path(run_dir), predictor, data, rows[0])
    # Each member on its own, as it predicts alone: no test-time augmentation.
    raw = predictor.member_proba(data.images, rows=rows, tta=False, calibrated=False)
    # Only a model taught to spread what is no digit (outlier exposure) says "not a digit" of a spread
    # reading; any other spreads its doubt between digits, and is unsure. A loss that taught an even
    # share over the digits (label smoothing, outlier exposure): each model's is taken out before its
    # temperature. The ensemble's average is of those already.
    members = [_fit(model_dir, proba, data.labels[mine], "validation", c.outlier_exposure > 0,
                    c.outlier_exposure > 0 or c.label_smoothing > 0)
               for model_dir, proba, mine, c in zip(model_dirs, raw, rows, configs)]
    no_digit = any(c.outlier_exposure > 0 for c in configs)
    if not ensemble:
        return members[0]
    union = np.unique(np.concatenate(rows))
    if len(union) < MIN_FIT_ROWS:
        return None
    if predictor.tta:  # the ensemble answers with shifted views averaged too: fit on what it answers
        raw = predictor.member_proba(data.images, rows=rows, calibrated=False)
    calibrated = [c.apply(p) if c is not None else p for c, p in zip(members, raw)]
    average = average_members(calibrated, [np.searchsorted(union, mine) for mine in rows], len(union))
    shared = all(len(mine) == len(union) for mine in rows)
    return _fit(Path(run_dir), average, data.labels[union], "validation" if shared else "out-of-bag", no_digit)


def _fit_rejector(run_dir: Path, predictor: Predictor, data: DigitSet, held_out: np.ndarray) -> None:
    """The run's rejector, from its first model's features: class means and covariance on the
    rows that model trained on, the threshold on the rows it held out. Nothing when too few."""
    if len(held_out) < MIN_REJECTOR_ROWS:
        return
    trained = np.setdiff1d(np.arange(len(data)), held_out, assume_unique=True)
    rejector = fit_rejector(predictor.features(data.images, trained), data.labels[trained],
                            predictor.features(data.images, held_out))
    save_rejector(run_dir, rejector)


def _fit(folder: Path, proba: np.ndarray, labels: np.ndarray, source: str, no_digit: bool,
         even_share: bool = False) -> Calibration | None:
    if len(labels) < MIN_FIT_ROWS:
        return None
    calibration = fit_calibration(proba, labels, source, no_digit=no_digit, even_share=even_share)
    save_calibration(folder, calibration)
    return calibration

