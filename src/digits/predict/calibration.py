"""Calibrated confidence: a temperature fitted on a run's validation rows, the expected
calibration error, reliability-diagram bins, and the confidence below which an answer is unsure.

A run's ``calibration.json`` holds what was fitted; :func:`load_calibration` reads it (a run
without one gets temperature 1 and :data:`DEFAULT_UNSURE_BELOW`, and says so). The
temperature acts on probabilities, not logits: ``softmax(log(p) / T)`` equals
``softmax(z / T)`` for one model (log-softmax only shifts the logits), and it applies as well
to what has no logits any more: an ensemble's average, test-time augmentation's average, the
ONNX export's softmax output. numpy only: the ONNX server calibrates without torch.

A run whose loss taught an even share over the ten digits (label smoothing's targets mix one in;
outlier exposure pulls letters and scribbles toward it) first takes that share out
(:func:`unmix`), then is tempered. Outlier exposure teaches a model to answer "none of them" by
spreading evenly, and a corrupted digit, half read as none, keeps its digit's lead but spreads
too: tempered alone, its confidence fell well under its accuracy (benchmarks/RESULTS.md). The
share taken out is the doubt outlier exposure taught; what is left says which digit it is, if
it is one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digits.errors import DataError, RunError
from digits.jsonfile import CALIBRATION, read_json, write_json

CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15                 # the standard choice (Guo et al. 2017; Naeini et al. 2015)
FLAG_RATE = 0.005             # share of validation digits flagged unsure; with the rejector's 0.5%
#                               rejected, clean test digits flagged stay under 1%
NO_DIGIT_RATE = 0.002         # share of validation digits whose two best digits hold less than
#                               ``no_digit_below``: mostly among the unsure ones already
DEFAULT_UNSURE_BELOW = 0.5    # an uncalibrated run: unsure only when no digit has half the probability
MIN_FIT_ROWS = 100            # fewer validation rows than this fit nothing worth keeping
FLOOR = 1e-12                 # log(0) guard: a probability that underflowed still orders the classes


@dataclass(frozen=True)
class Calibration:
    """How a run's probabilities are calibrated and when its answers are unsure.

    ``temperature`` divides the log-probabilities; ``unsure_below``: a calibrated top
    probability under it marks the answer unsure; ``source`` says where these came from
    ("validation", "default" for a run without calibration.json); ``measured`` holds what the
    fit measured on its rows (rows, ECE and NLL before and after, the share flagged);
    ``no_digit_below`` (a run trained with outlier exposure; else None): when the two most
    probable digits hold less than it between them, no digit is a fair reading (an ambiguous
    digit is two digits' worth; what outlier exposure taught to doubt spreads over many).
    ``unmix``: the even share over the digits is taken out before the temperature (a run
    trained with label smoothing or outlier exposure; False for one calibrated before).
    """

    temperature: float = 1.0
    unsure_below: float = DEFAULT_UNSURE_BELOW
    source: str = "default"
    measured: dict[str, Any] = field(default_factory=dict)
    no_digit_below: float | None = None  # the two most probable digits together under it: not a digit
    unmix: bool = False  # take the even share out (:func:`unmix`) before the temperature

    @property
    def fitted(self) -> bool:
        return self.source != "default"

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 10), float32, for probabilities (N, 10)."""
        return temper(unmix(proba) if self.unmix else proba, self.temperature)

    def describe(self) -> str:
        """One line for a model card: what calibrates this run's answers."""
        if not self.fitted:
            return (f"not calibrated (no {CALIBRATION_FILE}: an older run, or no validation rows); "
                    f"temperature 1, unsure below {self.unsure_below:.2f}")
        rows = self.measured.get("rows")
        ece = self.measured.get("ece")
        on = f" on {rows:,} {self.source} rows" if isinstance(rows, int) else f" on {self.source} rows"
        after = f", ECE {ece * 100:.2f}%" if isinstance(ece, (int, float)) else ""
        share = " after the even share is taken out" if self.unmix else ""
        return f"temperature {self.temperature:.3f}{share} fitted{on}{after}; unsure below {self.unsure_below:.3f}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self.temperature, "unsure_below": self.unsure_below,
                               "source": self.source, "measured": self.measured}
        if self.no_digit_below is not None:
            out["no_digit_below"] = self.no_digit_below
        if self.unmix:
            out["unmix"] = True
        return out


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)`` row by row, float32."""
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0:
        return proba.astype(np.float32)
    z = np.log(np.maximum(proba, FLOOR)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def unmix(proba: np.ndarray) -> np.ndarray:
    """``proba`` (N, K) with its even share taken out, float64: each row read as a mixture
    ``(1 - u) q + u / K`` with the largest even share ``u`` it holds (K times its smallest
    probability), and ``q`` returned. The order of the classes is kept; a row with a class at
    zero holds no even share and comes back as it was."""
    proba = np.asarray(proba, np.float64)
    classes = proba.shape[1]
    share = np.minimum(classes * proba.min(axis=1, keepdims=True), 1.0 - 1e-6)
    rest = np.maximum(proba - share / classes, 0.0) / (1.0 - share)
    return rest / np.maximum(rest.sum(axis=1, keepdims=True), FLOOR)


def fit_temperature(proba: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` under
    ``temper(proba, T)``, within [0.05, 20].

    The NLL is convex in beta = 1/T (a log-sum-exp of lines in beta, minus a line), so a
    golden-section search over beta finds its minimum to 1e-6 in about 40 evaluations:
    simpler and faster than a general optimiser, and it needs no torch (nor scipy)."""
    logp = np.log(np.maximum(np.asarray(proba, np.float64), FLOOR))
    picked = logp[np.arange(len(labels)), np.asarray(labels, np.int64)]

    def loss(beta: float) -> float:
        z = beta * logp
        top = z.max(axis=1)
        return float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - beta * picked))

    low, high = 1 / 20.0, 1 / 0.05  # clamped: a handful of rows all right would drive T to 0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    while high - low > 1e-6:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(1.0 / ((low + high) / 2))


def nll(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels``."""
    picked = np.asarray(proba, np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(picked, FLOOR)))) if len(labels) else float("nan")


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: rows whose top probability lies in [low, high)."""

    low: float
    high: float
    count: int
    confidence: float  # mean top probability of the bin's rows (NaN when empty)
    accuracy: float    # share of them answered right (NaN when empty)


def reliability_bins(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Equal-width bins of the top probability over [0, 1] (the last one closed)."""
    proba = np.asarray(proba, np.float64)
    confidence, right = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mine = which == b
        n = int(mine.sum())
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n,
                                  float(confidence[mine].mean()) if n else float("nan"),
                                  float(right[mine].mean()) if n else float("nan")))
    return out


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean over bins of |accuracy - confidence|, weighted by the bin's share of rows."""
    found = reliability_bins(proba, labels, bins)
    total = sum(b.count for b in found)
    if not total:
        return float("nan")
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in found if b.count))


def unsure_threshold(proba: np.ndarray, rate: float = FLAG_RATE) -> float:
    """The calibrated top probability below which about ``rate`` of these rows fall."""
    return _threshold(np.asarray(proba, np.float64).max(axis=1), rate)


def top_two(proba: np.ndarray) -> np.ndarray:
    """The probability of the two most probable classes together, row by row."""
    proba = np.asarray(proba, np.float64)
    return np.sort(proba, axis=1)[:, -2:].sum(axis=1) if proba.shape[1] > 1 else proba.max(axis=1)


def _threshold(values: np.ndarray, rate: float) -> float:
    confidence = np.sort(values)
    if not len(confidence):
        return DEFAULT_UNSURE_BELOW
    k = math.floor(rate * len(confidence))  # flag the k least confident rows, no more
    # Between the k-th and (k+1)-th lowest: rows tied at the cut are answered, never flagged.
    return float(confidence[k]) if k < len(confidence) else float(confidence[-1]) + 1e-9


def fit_calibration(proba: np.ndarray, labels: np.ndarray, source: str = "validation",
                    rate: float = FLAG_RATE, no_digit: bool = False, even_share: bool = False) -> Calibration:
    """Fit a temperature and the unsure threshold on held-out ``proba`` (N, 10) and their ``labels``.

    The threshold flags about ``rate`` of the rows as unsure; with ``no_digit`` (a model trained
    with outlier exposure), ``no_digit_below`` too, under the two likeliest digits' mass of
    ``NO_DIGIT_RATE`` of the rows; with ``even_share`` (a model whose loss taught an even share:
    label smoothing, outlier exposure) the temperature is fitted, and applies, after
    :func:`unmix`. DataError when there are too few rows to fit on."""
    labels = np.asarray(labels, np.int64)
    if len(labels) < MIN_FIT_ROWS:
        raise DataError(f"{len(labels)} {source} rows: calibration needs at least {MIN_FIT_ROWS}")
    fitted_on = unmix(proba) if even_share else proba  # what Calibration.apply tempers
    temperature = fit_temperature(fitted_on, labels)
    calibrated = temper(fitted_on, temperature)
    measured = {"rows": len(labels), "accuracy": round(float(np.mean(calibrated.argmax(1) == labels)), 6),
                "ece_before": _round(expected_calibration_error(proba, labels)),
                "ece": _round(expected_calibration_error(calibrated, labels)),
                "nll_before": _round(nll(proba, labels)), "nll": _round(nll(calibrated, labels))}
    threshold = unsure_threshold(calibrated, rate)
    measured["unsure_rate"] = _round(float(np.mean(calibrated.max(1) < threshold)))
    below = None
    if no_digit:
        two = top_two(calibrated)
        below = _threshold(two, NO_DIGIT_RATE)
        measured["no_digit_rate"] = _round(float(np.mean(two < below)))
    return Calibration(temperature, threshold, source, measured, below, even_share)


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def load_calibration(run_dir: str | os.PathLike[str]) -> Calibration:
    """The run's calibration.json, checked; the default (temperature 1) when it has none."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file() and not path.is_symlink():
        return Calibration()
    data = read_json(path, CALIBRATION)
    temperature, below = float(data["temperature"]), float(data["unsure_below"])
    if not (math.isfinite(temperature) and temperature > 0):
        raise RunError(f"{path}: field 'temperature' should be a positive number, "
                       f"found {data['temperature']!r}")
    if not 0.0 <= below <= 1.0 + 1e-6:
        raise RunError(f"{path}: field 'unsure_below' should be a probability in [0, 1], "
                       f"found {data['unsure_below']!r}")
    no_digit = data.get("no_digit_below")
    if no_digit is not None and not (isinstance(no_digit, (int, float)) and 0.0 <= no_digit <= 1.0 + 1e-6):
        raise RunError(f"{path}: field 'no_digit_below' should be a probability in [0, 1], found {no_digit!r}")
    return Calibration(temperature, below, data["source"], dict(data.get("measured") or {}),
                       None if no_digit is None else float(no_digit), bool(data.get("unmix") or False))


def save_calibration(run_dir: str | os.PathLike[str], calibration: Calibration) -> Path:
    """Write ``calibration`` as the run's calibration.json, atomically."""
    return write_json(Path(run_dir) / CALIBRATION_FILE, calibration.to_dict())


def temperature_record(members: Sequence[Calibration], ensemble: Calibration | None = None) -> str:
    """The temperatures a prediction applies, as one line ("1.234" for one model; "1.1,0.9;1.3"
    for two members and their average): what an ONNX export bakes in, and records, so that
    the ONNX server can refuse an export that the run's calibration.json files no longer match.
    A temperature applied after :func:`unmix` is marked "u" ("0.5u")."""
    line = ",".join(_record(c) for c in members)
    return line if ensemble is None else f"{line};{_record(ensemble)}"


def _record(calibration: Calibration) -> str:
    return f"{calibration.temperature:.9g}" + ("u" if calibration.unmix else "")
