"""What a run directory recorded, read once for reports and comparisons.

Three kinds: one model (``digits train``), the tutorial (an exploration run with
validation in ``validation/``, then the final model retrained on every row) and an ensemble
(``ensemble.json`` and one complete run directory per member under ``members/``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digits.errors import RunError
from digits.jsonfile import CONFIG, ENSEMBLE, METRICS, read_json
from digits.predict.scores import read_score
from digits.runmodels import require_members
from digits.train.history import History


@dataclass(frozen=True)
class Curve:
    """One training history, and the epoch a reader should look at (and why)."""

    label: str
    history: History
    marked_epoch: int | None
    marked_as: str

    @property
    def has_validation(self) -> bool:
        return any(not math.isnan(v) for v in self.history.column("val_loss"))


@dataclass(frozen=True)
class RunRecord:
    """The facts of one run directory; an ensemble holds its members' records."""

    path: Path
    kind: str                        # "run", "tutorial" or "ensemble"
    model: str
    config: dict[str, Any]           # the training settings as recorded
    data: dict[str, Any]             # source, rows, train_rows, val_rows (a member's, for an ensemble)
    parameters: int                  # of all members together, for an ensemble
    epochs: int
    train_seconds: float
    metrics: dict[str, Any]
    curves: tuple[Curve, ...]        # one per member for an ensemble
    members: tuple[RunRecord, ...] = ()
    explore: RunRecord | None = None  # the tutorial's validation run
    bagging: float = 0.0
    tta: bool = False
    score: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # versions and machine

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best_val_accuracy(self) -> float | None:
        """The best epoch's validation accuracy (members' mean for an ensemble)."""
        return self._val_accuracy(max)

    @property
    def final_val_accuracy(self) -> float | None:
        """The last epoch's validation accuracy (members' mean for an ensemble)."""
        return self._val_accuracy(lambda values: values[-1])

    def _val_accuracy(self, pick) -> float | None:
        picked = []
        for curve in self.curves:
            values = [v for v in curve.history.column("val_accuracy") if not math.isnan(v)]
            if values:
                picked.append(pick(values))
        return sum(picked) / len(picked) if picked else None


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read ``run_dir``; a RunError says what is missing when it is not a finished run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if (path / "ensemble.json").is_file():
        return _read_ensemble(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path}: not a run directory (expected the config.json or ensemble.json "
                       "that `digits train` writes)")
    record = _read_single(path, _bagging_of_ensemble_around(path))
    if "chosen_epochs" in record.metrics and (path / "validation" / "config.json").is_file():
        return _as_tutorial(record, _read_single(path / "validation"))
    return record


def _bagging_of_ensemble_around(path: Path) -> float:
    """A member directory read on its own still needs its ensemble's bagging to find its rows."""
    ensemble = path.parent.parent / "ensemble.json"
    if path.parent.name == "members" and ensemble.is_file():
        return float(read_json(ensemble, ENSEMBLE).get("bagging") or 0.0)
    return 0.0


def _read_single(path: Path, bagging: float = 0.0) -> RunRecord:
    config = read_json(path / "config.json", CONFIG)
    metrics = _finished_metrics(path)
    history = History.load(path / "history.csv") if (path / "history.csv").is_file() else History()
    train = config["train"]
    epoch, why = _marked_epoch(train, history)
    return RunRecord(path, "run", str(train.get("model") or metrics.get("model") or "?"), train,
                     dict(config.get("data") or {}), metrics.get("parameters") or 0, len(history),
                     float(metrics.get("train_seconds") or 0.0), metrics,
                     (Curve(path.name, history, epoch, why),), bagging=bagging, score=read_score(path),
                     environment=dict(config.get("environment", {})))


def _finished_metrics(path: Path) -> dict[str, Any]:
    if not (path / "metrics.json").is_file():
        raise RunError(f"{path}: no metrics.json, so the run did not finish; "
                       f"continue it with `digits train --resume {path}`")
    return read_json(path / "metrics.json", METRICS)


def _marked_epoch(train: dict[str, Any], history: History) -> tuple[int | None, str]:
    """The epoch whose weights the run kept (early stopping), else the lowest validation loss."""
    if not any(not math.isnan(v) for v in history.column("val_loss")):
        return None, ""
    if train.get("early_stopping") and train.get("restore_best", True):
        monitor = train.get("monitor", "val_accuracy")
        mode = "max" if monitor == "val_accuracy" else "min"
        return history.best_epoch(monitor, mode), f"best {monitor}: the weights kept"
    return history.best_epoch("val_loss"), "lowest validation loss"


def _as_tutorial(final: RunRecord, explore: RunRecord) -> RunRecord:
    """The tutorial's final model, with the exploration run's curve and the epoch it chose."""
    chosen = int(final.metrics["chosen_epochs"])
    curve = Curve("validation run", explore.curves[0].history, chosen,
                  f"chosen by the tutorial: {final.metrics.get('chosen_by', 'lowest validation loss')}")
    return RunRecord(final.path, "tutorial", final.model, final.config, final.data, final.parameters,
                     final.epochs, final.train_seconds + explore.train_seconds, final.metrics, (curve,),
                     explore=explore, score=final.score, environment=final.environment)


def _read_ensemble(path: Path) -> RunRecord:
    spec = read_json(path / "ensemble.json", ENSEMBLE)  # lists at least one member
    require_members(path, spec["members"])  # a partial ensemble names the members it still lacks
    metrics = _finished_metrics(path)
    bagging = float(spec.get("bagging") or 0.0)
    members = tuple(_read_single(path / member, bagging) for member in spec["members"])
    curves = tuple(Curve(f"member {m.name}", m.curves[0].history, m.curves[0].marked_epoch,
                         m.curves[0].marked_as) for m in members)
    train = spec["train"]
    return RunRecord(path, "ensemble", str(train.get("model") or "?"), train, members[0].data,
                     sum(m.parameters for m in members), max(m.epochs for m in members),
                     float(metrics.get("train_seconds") or sum(m.train_seconds for m in members)), metrics,
                     curves, members=members, bagging=bagging,
                     tta=bool(spec.get("tta")), score=read_score(path),
                     environment=dict(spec.get("environment") or members[0].environment))
