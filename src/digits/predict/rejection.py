"""Not a digit: how far a picture lies from every digit the run trained on, and the distance
beyond which the run says so.

The score is the relative Mahalanobis distance of Ren et al. 2021 ("A simple fix to Mahalanobis
distance for improving near-OOD detection"), on the model's penultimate features (the input of
its last linear layer): the squared Mahalanobis distance to the nearest digit's mean, under one
covariance shared by the ten (Lee et al. 2018), minus the distance to one Gaussian fitted on all
the digits at once. The plain distance is dominated by directions in which every picture, digit
or not, varies little; the background's term takes them out, and letters and scribbles then lie
far beyond the clean digits where before they lay among them (benchmarks/RESULTS.md). Both
Gaussians are fitted on the run's own training rows; the threshold is chosen on its validation
rows, so that about ``REJECT_RATE`` of those clean digits lie beyond it. No other picture is ever
fitted on: no letters, no corruptions, no digits outside the training file.

For an ensemble the first member's features are used (one Gaussian, fitted on that member's own
training rows and thresholded on its held-out ones): simple, and the members are trained alike.

A run's ``rejector.safetensors`` (beside calibration.json) holds what was fitted; a run without
one says "not a digit" only of blank pictures, as before, and a rejector written before the
background Gaussian measures the plain distance it was thresholded on. numpy and safetensors'
numpy reader only: the ONNX server rejects without torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digits.atomic import write_bytes
from digits.errors import DataError, RunError
from digits.weightsfile import check_weights_file

REJECTOR_FILE = "rejector.safetensors"
REJECT_RATE = 0.005     # share of clean validation digits beyond the threshold: they are rejected
SHRINKAGE = 0.01        # covariance pulled this far toward its mean variance: dead ReLU units have none
MIN_FIT_ROWS = 100      # fewer validation rows than this choose no threshold worth keeping
MAX_FEATURES = 4096     # a rejector wider than any registered model's penultimate layer is refused
CLASSES = 10


@dataclass(frozen=True)
class Rejector:
    """What says "not a digit" for one run.

    ``means`` (10, D): each digit's mean feature vector on the training rows; ``whiten`` (D, D):
    a matrix W with W W^T the inverse of their shared covariance, so that a distance is
    ``|(f - mean) W|^2``; ``background_mean`` (D,) and ``background_whiten`` (D, D): the same
    of one Gaussian over all the training rows (None: a rejector from before it, which measures
    the plain distance); ``threshold``: the distance beyond which a picture is not a digit;
    ``source``: the rows it was fitted on; ``measured``: what the fit measured on them.
    """

    means: np.ndarray
    whiten: np.ndarray
    threshold: float
    source: str = "training and validation rows"
    measured: dict[str, Any] = field(default_factory=dict)
    background_mean: np.ndarray | None = None
    background_whiten: np.ndarray | None = None

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Each row's relative distance, float64 (N,): its squared Mahalanobis distance to the
        nearest digit's mean less its distance to the background Gaussian of all the digits
        (negative where a picture is nearer a digit than the digits' common centre)."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != self.means.shape[1]:
            raise RunError(f"features shaped {features.shape}, but the run's rejector was fitted on "
                           f"{self.means.shape[1]} per picture")
        white = features @ self.whiten                      # (N, D)
        centres = self.means @ self.whiten                  # (10, D)
        # |a - b|^2 = |a|^2 - 2ab + |b|^2 for every (row, digit) pair at once: (N, 10)
        squared = (white ** 2).sum(1)[:, None] - 2 * white @ centres.T + (centres ** 2).sum(1)[None, :]
        nearest = np.maximum(squared.min(axis=1), 0.0)
        if self.background_mean is None or self.background_whiten is None:
            return nearest
        return nearest - (((features - self.background_mean) @ self.background_whiten) ** 2).sum(1)

    def rejects(self, distance: np.ndarray) -> np.ndarray:
        """True where ``distance`` (from :meth:`distance`) is beyond the threshold: not a digit."""
        return np.asarray(distance, np.float64) > self.threshold

    def describe(self) -> str:
        """One line for a model card: when this run says "not a digit"."""
        rate = self.measured.get("rejected_rate")
        share = f" ({rate * 100:.1f}% of its validation digits)" if isinstance(rate, (int, float)) else ""
        kind = "relative distance" if self.background_mean is not None else "distance"
        return f"not a digit beyond {kind} {self.threshold:.1f} from the training digits' features{share}"


def fit_rejector(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
                 rate: float = REJECT_RATE, shrinkage: float = SHRINKAGE) -> Rejector:
    """Fit the class means and shared covariance on the training rows' features (N, D) and
    labels, and the threshold on the validation rows' features, so that about ``rate`` of them
    are rejected. DataError when there are too few rows, or a digit has no training row."""
    x = np.asarray(train_features, np.float64)
    labels = np.asarray(train_labels, np.int64)
    if len(val_features) < MIN_FIT_ROWS:
        raise DataError(f"{len(val_features)} validation rows: a not-a-digit threshold needs at least "
                        f"{MIN_FIT_ROWS}")
    counts = np.bincount(labels, minlength=CLASSES)
    if len(counts) > CLASSES or (counts == 0).any():
        raise DataError(f"training rows per digit {counts.tolist()}: the rejector needs every digit 0-9")
    means = np.stack([x[labels == c].mean(axis=0) for c in range(CLASSES)])
    background = x.mean(axis=0)
    unfitted = Rejector(means, _whitening(x - means[labels], shrinkage), math.inf,
                        background_mean=background, background_whiten=_whitening(x - background, shrinkage))
    val = unfitted.distance(val_features)
    k = math.floor(rate * len(val))  # reject the k farthest validation digits, no more
    ordered = np.sort(val)[::-1]
    threshold = float(ordered[k]) if k < len(ordered) else float(ordered[-1])
    measured = {"train_rows": int(len(x)), "val_rows": int(len(val)), "features": int(x.shape[1]),
                "rejected_rate": round(float(np.mean(val > threshold)), 6),
                "val_distance_median": round(float(np.median(val)), 4)}
    return dataclasses.replace(unfitted, threshold=threshold, source="training and validation rows",
                               measured=measured)


def _whitening(centred: np.ndarray, shrinkage: float) -> np.ndarray:
    """W with W W^T the inverse of the covariance of ``centred`` rows, shrunk toward its mean
    variance by ``shrinkage`` (dead ReLU units have none)."""
    covariance = centred.T @ centred / len(centred)
    spread = float(np.trace(covariance)) / len(covariance) or 1.0
    covariance = (1 - shrinkage) * covariance + shrinkage * spread * np.eye(len(covariance))
    values, vectors = np.linalg.eigh(covariance)
    return vectors / np.sqrt(np.maximum(values, spread * 1e-9))  # W = V diag(1/sqrt(lambda))


def save_rejector(folder: str | os.PathLike[str], rejector: Rejector) -> Path:
    """Write ``rejector`` as ``folder``/rejector.safetensors, atomically."""
    from safetensors.numpy import save

    metadata = {"threshold": repr(rejector.threshold), "source": rejector.source,
                "measured": json.dumps(rejector.measured, sort_keys=True)}
    tensors = {"means": np.ascontiguousarray(rejector.means, np.float32),
               "whiten": np.ascontiguousarray(rejector.whiten, np.float32)}
    if rejector.background_mean is not None and rejector.background_whiten is not None:
        tensors["background_mean"] = np.ascontiguousarray(rejector.background_mean, np.float32)
        tensors["background_whiten"] = np.ascontiguousarray(rejector.background_whiten, np.float32)
    return write_bytes(Path(folder) / REJECTOR_FILE, save(tensors, metadata=dict(sorted(metadata.items()))))


def load_rejector(folder: str | os.PathLike[str]) -> Rejector | None:
    """The rejector of ``folder`` (a run directory), checked; None when it has none."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(folder) / REJECTOR_FILE
    if not path.is_file() and not path.is_symlink():
        return None
    check_weights_file(path, 4 * (2 * MAX_FEATURES + CLASSES + 1) * MAX_FEATURES)
    try:
        raw = path.read_bytes()
        tensors = load(raw)
        metadata = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")]).get("__metadata__") or {}
        threshold = float(metadata["threshold"])
        measured = json.loads(metadata.get("measured", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: not a rejector file ({type(exc).__name__}: {exc}); train the run again") from None
    means, whiten = tensors.get("means"), tensors.get("whiten")
    if (means is None or whiten is None or means.ndim != 2 or means.shape[0] != CLASSES
            or whiten.shape != (means.shape[1], means.shape[1])):
        raise RunError(f"{path}: expected tensors 'means' (10, D) and 'whiten' (D, D)")
    background, background_whiten = tensors.get("background_mean"), tensors.get("background_whiten")
    if (background is None) != (background_whiten is None) or (
            background is not None and (background.shape != (means.shape[1],)
                                        or background_whiten.shape != whiten.shape)):
        raise RunError(f"{path}: expected tensors 'background_mean' (D,) and 'background_whiten' (D, D) "
                       f"together, or neither")
    found = [means, whiten] + ([background, background_whiten] if background is not None else [])
    # The plain distance is never negative, so neither is its threshold; the relative one may be.
    if not (math.isfinite(threshold) and (threshold >= 0 or background is not None)
            and all(np.isfinite(t).all() for t in found)):
        raise RunError(f"{path}: holds a threshold or tensors that are not finite numbers")
    return Rejector(means.astype(np.float64), whiten.astype(np.float64), threshold,
                    str(metadata.get("source", "")), measured if isinstance(measured, dict) else {},
                    None if background is None else background.astype(np.float64),
                    None if background_whiten is None else background_whiten.astype(np.float64))
